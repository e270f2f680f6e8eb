//! The pinholes and connections the kernel thread follows, indexed for
//! what each event needs: a pinhole by the gateway address it holds, a
//! connection by its original tuple, unused pinholes by deadline and
//! running transfers by their next idle check. Pure bookkeeping: no
//! netlink here, so every step costs the same with one transfer or fifty
//! thousand.

use super::conntrack::{Entry, TcpState};
use super::elements::Elements;
use super::{ByteCounts, FailReason, FlowEvent};
use super::{Owner, PinholeId, Terms, Withdraw};
use crate::dataplane::PinholeFlow;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One pinhole, and once used, its connection.
#[derive(Debug)]
pub(super) struct Live {
    pub flow: PinholeFlow,
    /// Its set elements while the pinhole is in the table; `None` once
    /// withdrawn (its connection may still be followed).
    pub elements: Option<Elements>,
    pub deadline: Instant,
    /// The peer's address and source port, once the pinhole was used.
    pub dialer: Option<SocketAddr>,
    /// Its session has let go of it: nobody hears its events but the log.
    pub detached: bool,
    /// Who holds it, until it is detached.
    owner: Option<Owner>,
    /// What releasing it does to its connection.
    pub release: Withdraw,
    established: bool,
    first: Option<Instant>,
    last: Option<Instant>,
    counts: ByteCounts,
    /// Cut after this long without a byte in either direction.
    pub idle: Option<Duration>,
    progress_at: Instant,
    /// When its next idle check is scheduled, so removal finds it at once.
    check_at: Option<Instant>,
}

/// What a new conntrack entry of ftpalg's mark is to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arrival {
    /// The first connection through pinhole `id`: now learned.
    Learned(PinholeId),
    /// Already followed (a repeated or late event).
    Known,
    /// Nobody's: no live pinhole admitted it, or its pinhole already has
    /// its connection. It is to be cut.
    Stray,
}

/// What became of a followed connection after an event.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Step {
    pub events: Vec<FlowEvent>,
    /// It has closed: its final counts are to be read, then it ends.
    pub closed: bool,
}

/// Every pinhole and connection followed, with its indexes.
#[derive(Debug, Default)]
pub(super) struct Flows {
    live: HashMap<PinholeId, Live>,
    by_session: HashMap<u64, BTreeSet<PinholeId>>,
    by_gateway: HashMap<SocketAddr, PinholeId>,
    by_conn: HashMap<(SocketAddr, SocketAddr), PinholeId>,
    deadlines: BTreeSet<(Instant, PinholeId)>,
    checks: BTreeSet<(Instant, PinholeId)>,
}

/// Idle checks of a transfer come this often at the most (a quarter of
/// its idle timeout, or this), so a cut comes at most a quarter late.
const MIN_CHECK_EVERY: Duration = Duration::from_millis(250);

fn check_every(idle: Duration) -> Duration {
    (idle / 4).max(MIN_CHECK_EVERY)
}

impl Flows {
    pub fn len(&self) -> usize {
        self.live.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    pub fn get(&self, id: PinholeId) -> Option<&Live> {
        self.live.get(&id)
    }

    pub fn ids(&self) -> Vec<PinholeId> {
        let mut v: Vec<PinholeId> = self.live.keys().copied().collect();
        v.sort();
        v
    }

    /// The pinhole that holds `gateway` in the table, if any.
    pub fn holder_of(&self, gateway: SocketAddr) -> Option<PinholeId> {
        self.by_gateway.get(&gateway).copied()
    }

    /// The pinholes session `session` holds.
    pub fn of_session(&self, session: u64) -> Vec<PinholeId> {
        self.by_session
            .get(&session)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Follows a pinhole just added.
    pub fn insert(
        &mut self,
        id: PinholeId,
        flow: PinholeFlow,
        elements: Elements,
        now: Instant,
        terms: Terms,
    ) {
        let deadline = now + flow.timeout;
        self.by_gateway.insert(*flow.gateway, id);
        self.deadlines.insert((deadline, id));
        if let Some(o) = terms.owner {
            self.by_session.entry(o.session).or_default().insert(id);
        }
        self.live.insert(
            id,
            Live {
                flow,
                elements: Some(elements),
                deadline,
                dialer: None,
                detached: false,
                owner: terms.owner,
                release: terms.release,
                established: false,
                first: None,
                last: None,
                counts: ByteCounts::default(),
                idle: terms.idle,
                progress_at: now,
                check_at: None,
            },
        );
    }

    /// A new entry with ftpalg's mark: the connection a pinhole admitted.
    pub fn arrive(&mut self, e: &Entry) -> Arrival {
        if self.by_conn.contains_key(&(e.src, e.dst)) {
            return Arrival::Known;
        }
        let Some(&id) = self.by_gateway.get(&e.dst) else {
            return Arrival::Stray;
        };
        let Some(l) = self.live.get_mut(&id) else {
            return Arrival::Stray;
        };
        if l.dialer.is_some() || *l.flow.peer != e.src.ip() {
            return Arrival::Stray;
        }
        l.dialer = Some(e.src);
        self.deadlines.remove(&(l.deadline, id));
        self.by_conn.insert((e.src, e.dst), id);
        Arrival::Learned(id)
    }

    /// The connection `e` is, if followed.
    pub fn of_conn(&self, e: &Entry) -> Option<PinholeId> {
        self.by_conn.get(&(e.src, e.dst)).copied()
    }

    /// What conntrack shows now of pinhole `id`'s connection.
    pub fn update(&mut self, id: PinholeId, e: &Entry, now: Instant) -> Step {
        let mut step = Step::default();
        let Some(l) = self.live.get_mut(&id) else {
            return step;
        };
        let Some(dialer) = l.dialer else {
            return step;
        };
        l.first.get_or_insert(now);
        l.last = Some(now);
        if e.counted {
            if e.counts != l.counts {
                l.progress_at = now;
            }
            l.counts = e.counts;
        }
        // A reset says nothing of what came before it; every other state
        // from ESTABLISHED on does.
        if !l.established
            && matches!(
                e.state,
                TcpState::Established | TcpState::Closing | TcpState::Closed
            )
        {
            l.established = true;
            l.progress_at = now;
            step.events.push(FlowEvent::Established { dialer });
            if let Some(idle) = l.idle {
                let at = now + check_every(idle);
                l.check_at = Some(at);
                self.checks.insert((at, id));
            }
        }
        step.closed = matches!(e.state, TcpState::Closed | TcpState::Reset);
        step
    }

    /// The terminal event of pinhole `id`'s connection, which has ended.
    pub fn finish(&self, id: PinholeId) -> Option<FlowEvent> {
        let l = self.live.get(&id)?;
        Some(match (l.established, l.first, l.last) {
            (true, Some(first), Some(last)) => FlowEvent::Finished {
                counts: l.counts,
                duration: last.saturating_duration_since(first),
            },
            _ => FlowEvent::Failed(FailReason::NotEstablished),
        })
    }

    /// Unused pinholes whose deadline has passed.
    pub fn expired(&self, now: Instant) -> Vec<PinholeId> {
        self.deadlines
            .range(..=(now, PinholeId(u64::MAX)))
            .map(|(_, id)| *id)
            .collect()
    }

    /// The next moment something is due: a deadline or an idle check.
    pub fn next_due(&self) -> Option<Instant> {
        let d = self.deadlines.first().map(|(t, _)| *t);
        let c = self.checks.first().map(|(t, _)| *t);
        match (d, c) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Up to `max` transfers whose idle check is due, taken off the
    /// schedule (see [`checked`](Self::checked)).
    pub fn due_checks(&mut self, now: Instant, max: usize) -> Vec<PinholeId> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.checks.first() {
                Some(&(t, id)) if t <= now => {
                    self.checks.remove(&(t, id));
                    if let Some(l) = self.live.get_mut(&id) {
                        l.check_at = None;
                    }
                    out.push(id);
                }
                _ => break,
            }
        }
        out
    }

    /// After an idle check read the counts: true if the transfer has been
    /// idle past its bound (to be cut); otherwise it is checked again.
    pub fn checked(&mut self, id: PinholeId, now: Instant) -> bool {
        let Some(l) = self.live.get_mut(&id) else {
            return false;
        };
        let Some(idle) = l.idle else {
            return false;
        };
        if now.saturating_duration_since(l.progress_at) >= idle {
            return true;
        }
        let at = now + check_every(idle);
        l.check_at = Some(at);
        self.checks.insert((at, id));
        false
    }

    /// Takes pinhole `id` out of the table's indexes: its elements are
    /// to be withdrawn. Its connection, if any, is still followed.
    pub fn withdraw(&mut self, id: PinholeId) -> Option<Elements> {
        let l = self.live.get_mut(&id)?;
        if self.by_gateway.get(&*l.flow.gateway) == Some(&id) {
            self.by_gateway.remove(&*l.flow.gateway);
        }
        self.deadlines.remove(&(l.deadline, id));
        l.elements.take()
    }

    /// Marks pinhole `id` as let go by its session: it is the session's no
    /// more.
    pub fn detach(&mut self, id: PinholeId) {
        if let Some(l) = self.live.get_mut(&id) {
            l.detached = true;
            if let Some(o) = l.owner.take() {
                unindex(&mut self.by_session, o.session, id);
            }
        }
    }

    /// Pinhole `id`'s connection is to go on when it is released, unless it
    /// is someone else's.
    pub fn leave(&mut self, id: PinholeId) {
        if let Some(l) = self.live.get_mut(&id) {
            if l.release == Withdraw::Cut {
                l.release = Withdraw::Detach;
            }
        }
    }

    /// Forgets pinhole `id` and its connection.
    pub fn remove(&mut self, id: PinholeId) -> Option<Live> {
        let l = self.live.remove(&id)?;
        if let Some(o) = l.owner {
            unindex(&mut self.by_session, o.session, id);
        }
        if self.by_gateway.get(&*l.flow.gateway) == Some(&id) {
            self.by_gateway.remove(&*l.flow.gateway);
        }
        if let Some(d) = l.dialer {
            self.by_conn.remove(&(d, *l.flow.gateway));
        }
        self.deadlines.remove(&(l.deadline, id));
        if let Some(at) = l.check_at {
            self.checks.remove(&(at, id));
        }
        Some(l)
    }

    /// Forgets everything (the table went).
    pub fn clear(&mut self) -> Vec<PinholeId> {
        let ids = self.ids();
        *self = Flows::default();
        ids
    }
}

/// Takes `id` out of `session`'s entry, and the entry when it empties.
fn unindex(by_session: &mut HashMap<u64, BTreeSet<PinholeId>>, session: u64, id: PinholeId) {
    if let Some(ids) = by_session.get_mut(&session) {
        ids.remove(&id);
        if ids.is_empty() {
            by_session.remove(&session);
        }
    }
}

#[cfg(test)]
mod tests;

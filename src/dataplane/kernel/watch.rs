//! Following the connections pinholes admit: conntrack events in, flow
//! events out. Who dialed, when the connection is established and when it
//! closes come as events, filtered by mark in the kernel; conntrack is
//! asked directly only for a connection's final counts, for a transfer's
//! idle check when it is due, and, if the kernel dropped events, once for
//! the whole state. So a call costs what happened since the last one, not
//! what is live.

use super::conntrack::{self, Entry};
use super::events::CtEvent;
use super::track::Arrival;
use super::{FailReason, FlowEvent};
use super::{KernelTable, PinholeId};
use std::time::Instant;

/// Idle checks made per call at the most, so a call stays short however
/// many transfers are due (the rest wait for the next call).
const CHECKS_PER_CALL: usize = 64;

/// Turned-away attempts kept between two takes.
pub const MAX_STRANGERS: usize = 1024;

impl KernelTable {
    /// Reports what changed since the last call: each pinhole's
    /// `Established` once, then one terminal event, after which it is gone
    /// (its remaining elements removed): on its connection's close, when
    /// unused past its deadline, or when idle past its bound (cut). Also
    /// what was decided elsewhere (a lost table). Cheap when nothing
    /// happened; call it often (every few milliseconds while pinholes
    /// live): it is how late an end is noticed.
    pub fn service(&mut self, now: Instant) -> Vec<(PinholeId, FlowEvent)> {
        self.read_events();
        for id in self.flows.expired(now) {
            self.pending.push((id, FlowEvent::Expired));
            self.end(id, now);
        }
        for id in self.flows.due_checks(now, CHECKS_PER_CALL) {
            self.idle_check(id, now);
        }
        if let Some(log) = self.strangers.as_mut() {
            self.turned_away.extend(log.drain());
            // Bounded: a flood keeps its latest.
            let over = self.turned_away.len().saturating_sub(MAX_STRANGERS);
            self.turned_away.drain(..over);
        }
        std::mem::take(&mut self.pending)
    }

    /// Connection attempts the `guard` chain dropped at a pinhole's port
    /// (a stranger, or the expected peer's second attempt) since the last
    /// call, each attempt once, the latest [`MAX_STRANGERS`] of them.
    pub fn take_strangers(&mut self) -> Vec<super::Stranger> {
        std::mem::take(&mut self.turned_away)
    }

    /// The next moment [`service`](Self::service) has something to do
    /// besides events (a deadline or an idle check).
    pub fn next_due(&self) -> Option<Instant> {
        self.flows.next_due()
    }

    /// Applies every conntrack event queued now; the flow events it
    /// decides wait in `pending`.
    pub(super) fn read_events(&mut self) {
        let mut got = Vec::new();
        let lost = self.events.drain(|e| got.push(e)).is_err();
        let now = Instant::now();
        for e in got {
            self.apply(e, now);
        }
        if lost {
            tracing::warn!(
                "conntrack events were dropped by the kernel; reading ftpalg's connections again"
            );
            if let Err(e) = self.resync(now) {
                tracing::warn!(error = %e, "could not read ftpalg's connections again; ends may be reported late");
            }
        }
    }

    fn apply(&mut self, ev: CtEvent, now: Instant) {
        match ev {
            CtEvent::New(e) => {
                if e.mark & self.layout.mask != self.layout.mark {
                    return;
                }
                match self.flows.arrive(&e) {
                    Arrival::Learned(id) => self.observe(id, &e, now),
                    Arrival::Known => {}
                    Arrival::Stray => self.cut_stray(&e),
                }
            }
            CtEvent::Changed(e) => {
                if let Some(id) = self.flows.of_conn(&e) {
                    self.observe(id, &e, now);
                }
            }
            CtEvent::Destroyed(e) => {
                if let Some(id) = self.flows.of_conn(&e) {
                    self.flows.update(id, &e, now);
                    self.finish(id, now);
                }
            }
        }
    }

    /// What an entry shows of pinhole `id`'s connection; a close reads its
    /// final counts and ends it.
    fn observe(&mut self, id: PinholeId, e: &Entry, now: Instant) {
        let step = self.flows.update(id, e, now);
        self.pending
            .extend(step.events.into_iter().map(|ev| (id, ev)));
        if step.closed {
            if let Some(src) = self.flows.get(id).and_then(|l| l.dialer) {
                let gw = e.dst;
                match conntrack::get(&mut self.sock, src, gw) {
                    Ok(Some(last)) => {
                        self.flows.update(id, &last, now);
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "could not read a closed kernel transfer's counts")
                    }
                }
            }
            self.finish(id, now);
        }
    }

    /// A marked connection no live pinhole accounts for: a second one
    /// through a spent pinhole, or one whose pinhole was withdrawn while
    /// its first packet was on its way. Nobody follows it, so it must not
    /// run: it is cut.
    fn cut_stray(&mut self, e: &Entry) {
        tracing::warn!(src = %e.src, dst = %e.dst, "a connection through ftpalg's table that no pinhole accounts for; cut");
        if let Err(err) = self.cut_conn(e.src, e.dst) {
            tracing::warn!(error = %err, src = %e.src, dst = %e.dst, "could not cut a stray kernel connection");
        }
    }

    /// Reads `id`'s counts; cuts it if it has been idle past its bound.
    fn idle_check(&mut self, id: PinholeId, now: Instant) {
        let Some((src, gw)) = self
            .flows
            .get(id)
            .and_then(|l| Some((l.dialer?, *l.flow.gateway)))
        else {
            return;
        };
        match conntrack::get(&mut self.sock, src, gw) {
            Ok(Some(e)) => {
                self.flows.update(id, &e, now);
            }
            Ok(None) => {
                self.finish(id, now);
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not read a kernel transfer's counts");
            }
        }
        if self.flows.checked(id, now) {
            let idle = self.flows.get(id).and_then(|l| l.idle).unwrap_or_default();
            if let Err(err) = self.cut_conn(src, gw) {
                tracing::warn!(error = %err, dialer = %src, "could not cut an idle kernel transfer");
            }
            self.pending
                .push((id, FlowEvent::Failed(FailReason::Idle { after: idle })));
            self.end(id, now);
        }
    }

    /// `id`'s connection has ended: its terminal event, then it goes.
    fn finish(&mut self, id: PinholeId, now: Instant) {
        if let Some(ev) = self.flows.finish(id) {
            self.pending.push((id, ev));
        }
        self.end(id, now);
    }

    /// Forgets `id`, removing whatever of it is left in the table. Its
    /// events stand even if that fails: what is left expires with its
    /// timeout.
    pub(super) fn end(&mut self, id: PinholeId, _now: Instant) {
        if let Err(e) = self.withdraw(id) {
            tracing::warn!(error = %e, "could not remove a finished pinhole's elements");
        }
        self.flows.remove(id);
    }

    /// Reads every connection of ftpalg's mark at once, after events were
    /// lost: learns the ones not yet learned, updates the others, and ends
    /// those that are gone.
    fn resync(&mut self, now: Instant) -> Result<(), super::KernelError> {
        let entries = conntrack::dump_marked(&mut self.sock, self.layout.mark, self.layout.mask)?;
        let mut seen = std::collections::HashSet::new();
        for e in &entries {
            let id = match self.flows.arrive(e) {
                Arrival::Learned(id) => Some(id),
                Arrival::Known => self.flows.of_conn(e),
                // Its pinhole may be gone: left alone, as before the loss.
                Arrival::Stray => None,
            };
            if let Some(id) = id {
                seen.insert(id);
                self.observe(id, e, now);
            }
        }
        for id in self.flows.ids() {
            if self.flows.get(id).is_some_and(|l| l.dialer.is_some()) && !seen.contains(&id) {
                self.finish(id, now);
            }
        }
        Ok(())
    }
}

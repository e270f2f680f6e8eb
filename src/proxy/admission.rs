//! Admission: the session limits, the little each session tells them about
//! itself, and making room at a limit by dropping a silent connection that
//! never logged in.
//!
//! Behind carrier-grade NAT many users share one address. A per-address
//! limit alone lets one host's silent connections refuse everyone else
//! behind it, so a limit first takes a slot from the longest-silent session
//! that has not logged in, and refuses the newcomer only when every session
//! has logged in. The per-session state is a handful of atomics written by
//! the session itself; the registry (a sharded map) is touched only when a
//! session starts or ends.

use super::Gateway;
use crate::ftp::refusal::Refusal;
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const LIVE: u8 = 0;
/// Dropped to admit a newcomer, which took over its place in the counts.
const EVICTED: u8 = 1;
/// Ended by itself; its place was given back.
const DONE: u8 = 2;
/// Being admitted: counted in its address's list, not yet claimable, so a
/// concurrent newcomer cannot take a place that is not settled in the
/// counts.
const ADMITTING: u8 = 3;

/// What the limits know about one session.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The session id, for logs.
    pub(crate) id: u64,
    client: IpAddr,
    started: Instant,
    /// Milliseconds from `started` to the last client input.
    last_input: AtomicU64,
    /// Logged in (or past the point where the gateway can tell): never
    /// evicted, no login deadline.
    settled: AtomicBool,
    state: AtomicU8,
    evict: Notify,
}

/// Why a session is being closed by admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Dropped to make room for a newcomer.
    Evicted,
    /// Did not log in within `limits.login_timeout`.
    LoginTimeout,
}

impl Closing {
    /// The reply the client gets.
    pub(crate) fn reply(self) -> Vec<u8> {
        match self {
            Closing::Evicted => Refusal::Evicted,
            Closing::LoginTimeout => Refusal::LoginTimeout,
        }
        .reply()
    }

    /// The reason logged.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Closing::Evicted => {
                "evicted: silent and not logged in while a newcomer needed the place"
            }
            Closing::LoginTimeout => "login timeout",
        }
    }
}

impl Slot {
    fn new(id: u64, client: IpAddr) -> Slot {
        Slot {
            id,
            client,
            started: Instant::now(),
            last_input: AtomicU64::new(0),
            settled: AtomicBool::new(false),
            state: AtomicU8::new(ADMITTING),
            evict: Notify::new(),
        }
    }

    /// Notes client input: the session is not silent.
    pub(crate) fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_input.store(ms, Ordering::Relaxed);
    }

    /// The session logged in (or its login can no longer be seen, as after
    /// AUTH TLS passes through): it is never evicted and the login deadline
    /// no longer applies.
    pub(crate) fn settle(&self) {
        self.settled.store(true, Ordering::Release);
    }

    fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    /// How long since the last client input (or since it connected).
    fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_input.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Resolves when admission closes the session: it was evicted, or it
    /// did not log in within `login_timeout` of connecting.
    pub(crate) async fn closing(&self, login_timeout: Duration) -> Closing {
        let notified = self.evict.notified();
        if self.state.load(Ordering::Acquire) == EVICTED {
            return Closing::Evicted;
        }
        if self.is_settled() {
            notified.await;
            return Closing::Evicted;
        }
        let deadline = tokio::time::Instant::from_std(self.started + login_timeout);
        tokio::select! {
            _ = notified => Closing::Evicted,
            _ = tokio::time::sleep_until(deadline) => Closing::LoginTimeout,
        }
    }

    /// Takes the slot from a live, unsettled session; false if it ended or
    /// was taken first.
    fn claim(&self) -> bool {
        !self.is_settled()
            && self
                .state
                .compare_exchange(LIVE, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

/// Sessions alive, in total and per client address.
#[derive(Default)]
pub(crate) struct Registry {
    active: AtomicU32,
    per_client: DashMap<IpAddr, Vec<Arc<Slot>>>,
}

/// Why a newcomer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `limits.sessions_per_client`, every session of the address logged in.
    PerClient,
    /// `limits.sessions`, every session logged in.
    Global,
}

impl Limit {
    /// The reason, for the log and the `421`.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Limit::PerClient => "too many sessions from this address",
            Limit::Global => "too many sessions",
        }
    }
}

/// Held by a session for as long as it lives; counts it against limits.
pub(crate) struct SessionGuard {
    gw: Arc<Gateway>,
    slot: Arc<Slot>,
}

impl SessionGuard {
    /// The session's slot, for the driver to report input and login.
    pub(crate) fn slot(&self) -> Arc<Slot> {
        self.slot.clone()
    }

    /// The session id.
    pub(crate) fn id(&self) -> u64 {
        self.slot.id
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let r = &self.gw.registry;
        // An evicted session's place went to the newcomer already.
        if self
            .slot
            .state
            .compare_exchange(LIVE, DONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            r.active.fetch_sub(1, Ordering::AcqRel);
            r.unlist(&self.slot);
        }
    }
}

/// Claims the longest-silent unsettled slot among `slots`, skipping `not`.
fn claim_most_silent<'a>(
    slots: impl Iterator<Item = &'a Arc<Slot>>,
    not: &Arc<Slot>,
) -> Option<Arc<Slot>> {
    let mut candidates: Vec<(Duration, &Arc<Slot>)> = slots
        .filter(|s| !Arc::ptr_eq(s, not) && !s.is_settled())
        .map(|s| (s.silent_for(), s))
        .collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    candidates
        .into_iter()
        .find(|(_, s)| s.claim())
        .map(|(_, s)| s.clone())
}

impl Registry {
    /// Sessions alive now.
    pub(crate) fn active(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    fn unlist(&self, slot: &Arc<Slot>) {
        if let dashmap::Entry::Occupied(mut e) = self.per_client.entry(slot.client) {
            e.get_mut().retain(|s| !Arc::ptr_eq(s, slot));
            if e.get().is_empty() {
                e.remove();
            }
        }
    }

    /// The longest-silent unsettled session of any address, claimed.
    fn claim_anywhere(&self, not: &Arc<Slot>) -> Option<Arc<Slot>> {
        // Collected first: no shard stays locked while claiming.
        let all: Vec<Arc<Slot>> = self
            .per_client
            .iter()
            .flat_map(|e| e.value().clone())
            .collect();
        claim_most_silent(all.iter(), not)
    }
}

impl Gateway {
    /// Counts a new session against the limits. At a limit, the
    /// longest-silent session that has not logged in is evicted to make
    /// room; only when there is none is the newcomer refused.
    pub(crate) fn admit(self: &Arc<Self>, client: IpAddr) -> Result<SessionGuard, Limit> {
        let (sessions, per_client) = {
            let r = self.rules();
            (r.limits.sessions, r.limits.sessions_per_client)
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::new(id, client));
        let reg = &self.registry;
        let guard = SessionGuard {
            gw: self.clone(),
            slot: slot.clone(),
        };
        {
            let mut list = reg.per_client.entry(client).or_default();
            list.retain(|s| matches!(s.state.load(Ordering::Acquire), LIVE | ADMITTING));
            if list.len() as u32 >= per_client {
                let Some(victim) = claim_most_silent(list.iter(), &slot) else {
                    drop(list);
                    // Never counted: nothing to give back.
                    slot.state.store(DONE, Ordering::Release);
                    return Err(Limit::PerClient);
                };
                // The newcomer takes the victim's place in both counts.
                for s in list.iter_mut() {
                    if Arc::ptr_eq(s, &victim) {
                        *s = slot.clone();
                    }
                }
                drop(list);
                self.evicted(&victim, id, Limit::PerClient);
                slot.state.store(LIVE, Ordering::Release);
                return Ok(guard);
            }
            list.push(slot.clone());
        }
        if reg.active.fetch_add(1, Ordering::AcqRel) >= sessions {
            reg.active.fetch_sub(1, Ordering::AcqRel);
            match reg.claim_anywhere(&slot) {
                // The victim's count in `active` passes to the newcomer.
                Some(victim) => {
                    reg.unlist(&victim);
                    self.evicted(&victim, id, Limit::Global);
                }
                None => {
                    slot.state.store(DONE, Ordering::Release);
                    reg.unlist(&slot);
                    return Err(Limit::Global);
                }
            }
        }
        // Only now may another newcomer claim it: until here its place in
        // the counts was not settled.
        slot.state.store(LIVE, Ordering::Release);
        Ok(guard)
    }

    fn evicted(&self, victim: &Slot, newcomer: u64, limit: Limit) {
        self.telemetry.evicted(
            victim.id,
            victim.client,
            victim.silent_for(),
            newcomer,
            limit.reason(),
        );
        victim.evict.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(id: u64) -> Arc<Slot> {
        let s = Arc::new(Slot::new(id, "100.64.0.2".parse().unwrap()));
        s.state.store(LIVE, Ordering::Release);
        s
    }

    #[test]
    fn the_most_silent_unsettled_slot_is_claimed_once() {
        let (a, b, c) = (live(1), live(2), live(3));
        std::thread::sleep(Duration::from_millis(20));
        b.touch();
        c.settle();
        let all = [a.clone(), b.clone(), c.clone()];
        let newcomer = live(4);
        let first = claim_most_silent(all.iter(), &newcomer).unwrap();
        assert_eq!(first.id, 1, "the silent one goes first");
        let second = claim_most_silent(all.iter(), &newcomer).unwrap();
        assert_eq!(second.id, 2, "a claimed slot is not claimed again");
        assert!(
            claim_most_silent(all.iter(), &newcomer).is_none(),
            "a settled slot is never claimed"
        );
    }

    #[test]
    fn a_slot_still_being_admitted_is_not_claimed() {
        let admitting = Arc::new(Slot::new(1, "100.64.0.2".parse().unwrap()));
        let newcomer = live(2);
        assert!(claim_most_silent([admitting].iter(), &newcomer).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_return_to_zero_after_concurrent_admissions_evictions_and_ends() {
        let rules = crate::rules::from_str(
            "listeners:\n  - name: a\n    listen: 127.0.0.1:0\n    kind: explicit\n    upstream: 198.51.100.10:21\nlimits:\n  sessions: 8\n  sessions_per_client: 3\n",
        )
        .rules
        .unwrap();
        let gw = Gateway::new(rules, tokio::runtime::Handle::current(), None);
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let gw = gw.clone();
                std::thread::spawn(move || {
                    let mut held = std::collections::VecDeque::new();
                    for i in 0..5000u32 {
                        let ip = IpAddr::from([100, 64, 0, (i % 5) as u8 + 1]);
                        if let Ok(g) = gw.admit(ip) {
                            if (i + u32::from(t)) % 3 == 0 {
                                g.slot().settle();
                            }
                            held.push_back(g);
                        }
                        if held.len() > 4 {
                            held.pop_front();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = gw.telemetry.encode();
        let evicted = crate::proxy::events::tests::value(&text, "ftpalg_sessions_evicted_total ");
        assert!(evicted > Some(0.0), "{text}");
        assert_eq!(gw.registry.active(), 0);
        assert!(gw.registry.per_client.is_empty());
    }
}

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

pub(super) mod slot;

use super::events::Telemetry;
use crate::rules::Limits;
use dashmap::DashMap;
use slot::{claim_most_silent, ADMITTING, DONE, LIVE};
pub(crate) use slot::{Dismissal, Slot};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// The session limits: the sessions alive, the ids they are given, and
/// where evictions are reported.
pub(crate) struct Admission {
    registry: Registry,
    next_id: AtomicU64,
    telemetry: Arc<Telemetry>,
}

/// Sessions alive, in total and per client address.
#[derive(Default)]
struct Registry {
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
    admission: Arc<Admission>,
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
        let r = &self.admission.registry;
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

impl Registry {
    fn active(&self) -> u32 {
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

impl Admission {
    /// No session yet; evictions are reported to `telemetry`.
    pub(crate) fn new(telemetry: Arc<Telemetry>) -> Admission {
        Admission {
            registry: Registry::default(),
            next_id: AtomicU64::new(1),
            telemetry,
        }
    }

    /// Sessions alive now.
    pub(crate) fn active(&self) -> u32 {
        self.registry.active()
    }

    /// Counts a new session against `limits` (those of the rules it is
    /// accepted under). At a limit, the longest-silent session that has not
    /// logged in is evicted to make room; only when there is none is the
    /// newcomer refused.
    pub(crate) fn admit(
        self: &Arc<Self>,
        client: IpAddr,
        limits: &Limits,
    ) -> Result<SessionGuard, Limit> {
        let (sessions, per_client) = (limits.sessions, limits.sessions_per_client);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::new(id, client));
        let reg = &self.registry;
        let guard = SessionGuard {
            admission: self.clone(),
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

    #[test]
    fn counts_return_to_zero_after_concurrent_admissions_evictions_and_ends() {
        let rules = crate::rules::from_str(
            "listeners:\n  - name: a\n    listen: 127.0.0.1:0\n    kind: explicit\n    upstream: 198.51.100.10:21\nlimits:\n  sessions: 8\n  sessions_per_client: 3\n",
        )
        .rules
        .unwrap();
        let admission = Arc::new(Admission::new(Arc::new(Telemetry::new())));
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let (admission, limits) = (admission.clone(), rules.limits.clone());
                std::thread::spawn(move || {
                    let mut held = std::collections::VecDeque::new();
                    for i in 0..5000u32 {
                        let ip = IpAddr::from([100, 64, 0, (i % 5) as u8 + 1]);
                        if let Ok(g) = admission.admit(ip, &limits) {
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
        let text = admission.telemetry.encode();
        let evicted = crate::proxy::events::tests::value(&text, "ftpalg_sessions_evicted_total ");
        assert!(evicted > Some(0.0), "{text}");
        assert_eq!(admission.registry.active(), 0);
        assert!(admission.registry.per_client.is_empty());
    }
}

//! One session as the limits see it: its input, its login, and whether it
//! must make room for a newcomer. The state is a handful of atomics
//! written by the session itself. (The login deadline is the session's
//! own, timed by the engine.)

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub(super) const LIVE: u8 = 0;
/// Dropped to admit a newcomer, which took over its place in the counts.
const EVICTED: u8 = 1;
/// Ended by itself; its place was given back.
pub(super) const DONE: u8 = 2;
/// Being admitted: counted in its address's list, not yet claimable, so a
/// concurrent newcomer cannot take a place that is not settled in the
/// counts.
pub(super) const ADMITTING: u8 = 3;

/// What the limits know about one session.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The session id, for logs.
    pub(crate) id: u64,
    pub(super) client: IpAddr,
    started: Instant,
    /// Milliseconds from `started` to the last client input.
    last_input: AtomicU64,
    /// Logged in (or past the point where the gateway can tell): never
    /// evicted.
    settled: AtomicBool,
    pub(super) state: AtomicU8,
    pub(super) evict: Notify,
}

/// Why a session is being closed for the limits' sake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dismissal {
    /// Dropped to make room for a newcomer.
    Evicted,
    /// Did not log in within `limits.login_timeout`.
    LoginTimeout,
}

impl Dismissal {
    /// The reason logged.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Dismissal::Evicted => {
                "evicted: silent and not logged in while a newcomer needed the place"
            }
            Dismissal::LoginTimeout => "login timeout",
        }
    }
}

impl Slot {
    pub(super) fn new(id: u64, client: IpAddr) -> Slot {
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
    /// AUTH TLS passes through): it is never evicted.
    pub(crate) fn settle(&self) {
        self.settled.store(true, Ordering::Release);
    }

    pub(super) fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    /// How long since the last client input (or since it connected).
    pub(super) fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_input.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Resolves when admission closes the session to make room for a
    /// newcomer.
    pub(crate) async fn evicted(&self) {
        let notified = self.evict.notified();
        if self.state.load(Ordering::Acquire) == EVICTED {
            return;
        }
        notified.await;
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

/// Claims the longest-silent unsettled slot among `slots`, skipping `not`.
pub(super) fn claim_most_silent<'a>(
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
}

//! Following one pinhole from its use to its end, from what the `used` set
//! and conntrack show at each poll. Pure bookkeeping: no netlink here.

use super::conntrack::{Entry, TcpState};
use super::elements::Elements;
use crate::dataplane::{FailReason, FlowEvent, PinholeFlow};
use std::net::SocketAddr;
use std::time::Instant;

impl Live {
    /// A pinhole just added, not used yet.
    pub fn new(flow: PinholeFlow, elements: Elements, deadline: Instant) -> Live {
        Live {
            flow,
            elements,
            deadline,
            dialer: None,
            seen: None,
            misses: 0,
        }
    }
}

#[derive(Debug)]
pub(super) struct Live {
    pub flow: PinholeFlow,
    pub elements: Elements,
    pub deadline: Instant,
    /// The peer's address and source port, once the pinhole was used.
    pub dialer: Option<SocketAddr>,
    pub seen: Option<Seen>,
    /// Polls in a row that found a used pinhole without its conntrack
    /// entry (it may not be confirmed yet).
    pub misses: u8,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    first: Instant,
    last: Instant,
    established: bool,
    counts: crate::dataplane::ByteCounts,
}

/// Polls a used pinhole may go without a conntrack entry before it counts
/// as failed: the entry is confirmed only when the first packet has
/// passed every hook, a moment after the pinhole's element is written.
const MISS_LIMIT: u8 = 2;

/// One pinhole's next events given what conntrack shows now for its
/// connection (looked up by the dialer's exact tuple, once known).
pub(super) fn step(l: &mut Live, entry: Option<&Entry>, now: Instant) -> Vec<FlowEvent> {
    let mut out = Vec::new();
    let Some(dialer) = l.dialer else {
        if now >= l.deadline {
            out.push(FlowEvent::Expired);
        }
        return out;
    };
    match (entry, l.seen.as_mut()) {
        (None, None) => {
            l.misses += 1;
            if l.misses >= MISS_LIMIT {
                out.push(FlowEvent::Failed(FailReason::NotEstablished));
            }
        }
        (None, Some(s)) => {
            // The entry is gone (closed and timed out, or deleted).
            out.push(finish(s));
        }
        (Some(e), seen) => {
            let s = match seen {
                Some(s) => s,
                None => l.seen.insert(Seen {
                    first: now,
                    last: now,
                    established: false,
                    counts: e.counts,
                }),
            };
            s.last = now;
            s.counts = e.counts;
            if !s.established && e.state >= TcpState::Established && e.state != TcpState::Other {
                s.established = true;
                out.push(FlowEvent::Established { dialer });
            }
            if e.state == TcpState::Closed {
                out.push(finish(s));
            }
        }
    }
    out
}

fn finish(s: &Seen) -> FlowEvent {
    if s.established {
        FlowEvent::Finished {
            counts: s.counts,
            duration: s.last.saturating_duration_since(s.first),
        }
    } else {
        FlowEvent::Failed(FailReason::NotEstablished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{ByteCounts, ClientAddr, GatewayAddr, ServerAddr, SourceNat};
    use std::time::Duration;

    const DIALER: &str = "100.64.0.2:33000";

    fn live(timeout: Duration, used: bool) -> Live {
        let flow = PinholeFlow::passive(
            ClientAddr("100.64.0.2:0".parse().unwrap()),
            GatewayAddr("100.64.0.1:40000".parse().unwrap()),
            ServerAddr("198.51.100.2:5000".parse().unwrap()),
            SourceNat("198.51.100.1".parse().unwrap()),
            timeout,
        );
        Live {
            elements: Elements::of(&flow),
            flow,
            deadline: Instant::now() + timeout,
            dialer: used.then(|| DIALER.parse().unwrap()),
            seen: None,
            misses: 0,
        }
    }

    fn entry(state: TcpState, bytes: u64) -> Entry {
        Entry {
            src: DIALER.parse().unwrap(),
            dst: "100.64.0.1:40000".parse().unwrap(),
            state,
            counts: ByteCounts {
                from_dialer: 100,
                to_dialer: bytes,
                packets_from_dialer: 1,
                packets_to_dialer: 2,
            },
        }
    }

    #[test]
    fn established_then_finished_with_the_last_counts() {
        let mut l = live(Duration::from_secs(5), true);
        let t = Instant::now();
        let e = entry(TcpState::Established, 10);
        assert_eq!(
            step(&mut l, Some(&e), t),
            vec![FlowEvent::Established { dialer: e.src }]
        );
        assert_eq!(
            step(
                &mut l,
                Some(&entry(TcpState::Established, 500)),
                t + Duration::from_secs(1)
            ),
            vec![]
        );
        let ev = step(&mut l, None, t + Duration::from_secs(2));
        assert!(
            matches!(ev.as_slice(), [FlowEvent::Finished { counts, duration }] if counts.to_dialer == 500 && *duration == Duration::from_secs(1)),
            "{ev:?}"
        );
    }

    #[test]
    fn a_short_connection_seen_only_closed_is_established_and_finished() {
        let mut l = live(Duration::from_secs(5), true);
        let ev = step(&mut l, Some(&entry(TcpState::Closed, 7)), Instant::now());
        assert_eq!(ev.len(), 2);
        assert!(matches!(ev[1], FlowEvent::Finished { counts, .. } if counts.to_dialer == 7));
    }

    #[test]
    fn refused_connection_fails_and_unused_pinhole_expires() {
        let mut l = live(Duration::from_secs(5), true);
        let t = Instant::now();
        assert_eq!(step(&mut l, Some(&entry(TcpState::SynSent, 0)), t), vec![]);
        assert_eq!(
            step(&mut l, None, t),
            vec![FlowEvent::Failed(FailReason::NotEstablished)]
        );

        let mut l = live(Duration::ZERO, false);
        assert_eq!(step(&mut l, None, Instant::now()), vec![FlowEvent::Expired]);
        let mut l = live(Duration::from_secs(60), false);
        assert_eq!(step(&mut l, None, Instant::now()), vec![]);
    }

    #[test]
    fn a_used_pinhole_gets_a_grace_poll_before_its_entry_counts_as_missing() {
        let mut l = live(Duration::from_secs(5), true);
        let t = Instant::now();
        assert_eq!(
            step(&mut l, None, t),
            vec![],
            "entry may not be confirmed yet"
        );
        assert_eq!(
            step(&mut l, None, t),
            vec![FlowEvent::Failed(FailReason::NotEstablished)]
        );
    }
}

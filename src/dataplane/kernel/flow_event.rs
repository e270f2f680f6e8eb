//! What the table reports of a pinhole and its connection, in the kernel's
//! terms: conntrack's counts (on the wire, headers included) and the ways
//! a pinhole fails here (a lost table, a connection never established, an
//! idle cut). The driver's kernel path turns these into what any data path
//! reports to its session.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Bytes and packets of one forwarded connection, as conntrack counted
/// them: on the wire, IP and TCP headers included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteCounts {
    /// From the peer that dialed towards the target.
    pub from_dialer: u64,
    /// From the target back to the dialer.
    pub to_dialer: u64,
    /// Packets from the dialer.
    pub packets_from_dialer: u64,
    /// Packets to the dialer.
    pub packets_to_dialer: u64,
}

/// Why a pinhole's connection did not carry a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// The connection was admitted but never became established (the target
    /// refused or did not answer).
    NotEstablished,
    /// ftpalg's table disappeared under the pinhole (someone deleted or
    /// flushed it).
    TableLost,
    /// The transfer moved no byte for this long and was cut.
    Idle {
        /// The bound that passed (`transfer_idle_timeout`).
        after: Duration,
    },
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::NotEstablished => f.write_str("admitted connection was never established"),
            FailReason::TableLost => {
                f.write_str("ftpalg's nftables table was removed by someone else")
            }
            FailReason::Idle { after } => {
                write!(f, "no byte moved for {after:?}; cut")
            }
        }
    }
}

/// What a backend reports about a flow, in order: `Established` then
/// `Finished`, or one of `Expired` / `Failed`. After a terminal event the
/// flow is forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEvent {
    /// The expected peer's connection went through and is established.
    Established {
        /// The dialer's address including its source port.
        dialer: SocketAddr,
    },
    /// The connection has closed.
    Finished {
        /// What it carried.
        counts: ByteCounts,
        /// From first seen to last seen (the backend's polling granularity).
        duration: Duration,
    },
    /// Nobody allowed came before the deadline.
    Expired,
    /// The pinhole cannot produce a transfer.
    Failed(FailReason),
}

impl FlowEvent {
    /// True for events after which the flow is gone.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, FlowEvent::Established { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_established_is_not_terminal() {
        assert!(!FlowEvent::Established {
            dialer: "100.64.0.2:1".parse().unwrap()
        }
        .is_terminal());
        assert!(FlowEvent::Expired.is_terminal());
        assert!(FlowEvent::Failed(FailReason::TableLost).is_terminal());
    }
}

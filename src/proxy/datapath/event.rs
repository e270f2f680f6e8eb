//! What a path tells its session, in words every path shares: a side
//! prepared (or not), the bytes towards the client delivered, the transfer
//! over with what it moved or why it failed. Each path supplies its own
//! reasons ([`Reason`]); the session only shows them.

use crate::ftp::session::{DataId, Side};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Bytes moved, per direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Moved {
    /// Client to server (uploads).
    pub up: u64,
    /// Server to client (downloads, listings).
    pub down: u64,
}

/// Bytes moved so far, each direction, readable while the transfer runs
/// (for `/status`).
#[derive(Debug, Default)]
pub struct Progress {
    /// Client to server.
    pub up: AtomicU64,
    /// Server to client.
    pub down: AtomicU64,
}

/// Why a path did not carry its transfer, or could not prepare a side, in
/// the words of the path that failed.
#[derive(Clone)]
pub(crate) struct Reason {
    why: Arc<dyn fmt::Display + Send + Sync>,
    client_left: bool,
}

impl Reason {
    /// A reason as `why` says it.
    pub(crate) fn new(why: impl fmt::Display + Send + Sync + 'static) -> Reason {
        Reason {
            why: Arc::new(why),
            client_left: false,
        }
    }

    /// The reason a relay failed: the client left when it was the
    /// client's connection that broke.
    pub(crate) fn of_relay(e: std::io::Error) -> Reason {
        let client_left = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<super::relay::PeerBroke>())
            .is_some_and(|p| p.client);
        Reason {
            why: Arc::new(e),
            client_left,
        }
    }

    /// The client broke its data connection (a reset, or a close in the
    /// middle): it went away, the gateway did not fail.
    pub(crate) fn client_left(&self) -> bool {
        self.client_left
    }
}

/// Plain words: an OS error's number, which a reason may be made of,
/// reaches neither a client's reply nor the log.
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::proxy::plain::without_os_error(
            &self.why.to_string(),
        ))
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reason({self})")
    }
}

/// What a path reports to its session about its channel.
#[derive(Debug)]
pub(crate) enum PathEvent {
    /// A side asked for earlier is ready: the peer is to dial `at`, or the
    /// connection was made from it.
    Prepared {
        /// Which side.
        side: Side,
        /// The gateway's address for it.
        at: SocketAddr,
    },
    /// A side asked for earlier cannot be had.
    NotPrepared {
        /// Which side.
        side: Side,
        /// Why.
        reason: Reason,
    },
    /// The bytes towards the client have all been handed on (`Ok`), or
    /// that direction failed.
    Delivered(Result<(), Reason>),
    /// The transfer is over: what it moved, or why it failed, and how long
    /// it ran when the path knows (otherwise since its start).
    Ended {
        /// What it moved, or why it failed.
        result: Result<Moved, Reason>,
        /// How long it ran, if the path measured it.
        elapsed: Option<Duration>,
    },
}

/// Tells one path from another that had the same channel before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PathKey(pub(super) u32);

/// A path's event, with whose it is.
#[derive(Debug)]
pub(crate) struct PathReport {
    /// The channel.
    pub id: DataId,
    /// The path that reports.
    pub key: PathKey,
    /// What it reports.
    pub event: PathEvent,
}

/// Where a session takes its paths' reports (its event queue, as the
/// session wraps it).
pub(crate) type Sink = Arc<dyn Fn(PathReport) + Send + Sync>;

/// How one path reports to its session; a report after the session ended
/// goes nowhere.
#[derive(Clone)]
pub(crate) struct Reports {
    pub(super) id: DataId,
    pub(super) key: PathKey,
    pub(super) sink: Sink,
}

impl Reports {
    /// Reports `event`.
    pub(crate) fn send(&self, event: PathEvent) {
        (self.sink)(PathReport {
            id: self.id,
            key: self.key,
            event,
        });
    }

    /// The channel the reports are about.
    pub(crate) fn channel(&self) -> DataId {
        self.id
    }
}

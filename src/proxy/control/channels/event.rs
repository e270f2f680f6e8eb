//! What reaches a session's driver about its data channels (from their
//! paths, from the upstream's connection, from its timers), and why the
//! driver closes one early.

use crate::ftp::session::DataId;
use crate::proxy::datapath::PathReport;
use tokio::net::TcpStream;

/// An event of one of the session's data channels.
pub(in crate::proxy::control) enum DataEvent {
    Upstream(Result<TcpStream, String>),
    /// What a channel's path reports.
    Path(PathReport),
    /// This channel's `DELIVERED_LINGER` passed.
    Lingered {
        id: DataId,
    },
    /// The deadline of `Action::ReplyDeadline` for this channel passed.
    ReplyOverdue {
        id: DataId,
    },
}

/// Why the driver closes a data channel before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy::control) enum Cancel {
    /// The engine no longer needs it.
    Released,
    /// The client aborted the transfer.
    Cut,
    /// Another channel is being prepared (one at a time per session).
    AnotherPrepared,
    /// A newer channel started running (one at a time per session).
    Superseded,
    /// The control connection was idle too long.
    IdleTimeout,
    /// The gateway is stopping and its grace is over.
    Shutdown,
}

impl Cancel {
    /// The reason, for logs and the transfer's result.
    pub(in crate::proxy::control) fn as_str(self) -> &'static str {
        match self {
            Cancel::Released => "released",
            Cancel::Cut => "cut: the client aborted the transfer",
            Cancel::AnotherPrepared => "another data channel is being prepared",
            Cancel::Superseded => "superseded by a newer data channel",
            Cancel::IdleTimeout => "control idle timeout",
            Cancel::Shutdown => "the gateway is shutting down",
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every session's event channel allocates room for 32 events at
    /// once: a large variant costs each idle session its size 32 times.
    #[test]
    fn data_events_stay_small() {
        assert!(std::mem::size_of::<super::DataEvent>() <= 64);
    }
}

//! What reaches a session's driver about its data channels (from sockets,
//! relays and the kernel thread), and why the driver closes one early.

use super::super::forward::{Forwarded, KernelChannel};
use crate::dataplane::kernel::FlowEvent;
use crate::ftp::session::{DataId, Side};
use crate::proxy::relay::Moved;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// An event of one of the session's data channels.
pub(in crate::proxy::control) enum DataEvent {
    Upstream(Result<TcpStream, String>),
    Connected {
        id: DataId,
        side: Side,
        result: io::Result<TcpStream>,
    },
    Delivered {
        id: DataId,
        result: Result<(), String>,
    },
    Finished {
        id: DataId,
        result: Result<Moved, String>,
        elapsed: Duration,
    },
    /// This channel's `DELIVERED_LINGER` passed.
    Lingered {
        id: DataId,
    },
    /// The deadline of `Action::ReplyDeadline` for this channel passed.
    ReplyOverdue {
        id: DataId,
    },
    /// The kernel thread answered a forward request. Boxed, like the
    /// filter's answer: every session's event channel allocates room for
    /// 32 events up front, so the largest variant sets what an idle
    /// session costs.
    Forwarded {
        id: DataId,
        forwarded: Box<Forwarded>,
    },
    /// An event of a kernel-forwarded channel's pinhole.
    Kernel {
        id: DataId,
        event: FlowEvent,
    },
    /// The kernel thread answered a relay filter request.
    Filtered {
        id: DataId,
        side: Side,
        local: SocketAddr,
        result: Box<Result<KernelChannel, String>>,
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

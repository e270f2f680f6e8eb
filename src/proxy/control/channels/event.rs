//! What reaches a session's driver about its data channels (from sockets,
//! relays and the kernel thread).

use super::super::forward::{Forwarded, KernelChannel};
use crate::dataplane::FlowEvent;
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

#[cfg(test)]
mod tests {
    /// Every session's event channel allocates room for 32 events at
    /// once: a large variant costs each idle session its size 32 times.
    #[test]
    fn data_events_stay_small() {
        assert!(std::mem::size_of::<super::DataEvent>() <= 64);
    }
}

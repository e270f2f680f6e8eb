//! IP_TRANSPARENT sockets: TPROXY listeners, their pinholes, and the
//! connections made from an address that is not the gateway's.
//!
//! The kernel checks CAP_NET_ADMIN (or CAP_NET_RAW) when the option is set,
//! and only then: the socket keeps the option, and binding it to an address
//! that is not the host's needs nothing more. So once [`start_thread`] has
//! run, one small thread that keeps the capability makes these sockets, bare,
//! and the runtime's workers, which hold no capability, do the rest (their
//! options, bind, listen or connect). The thread does nothing else: a worker
//! that is made to misbehave can get transparent sockets from it, which the
//! rules give it anyway, and nothing more. Before [`start_thread`] (library
//! use, tests) the calling thread sets the option itself.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

/// The thread's name, as `/proc/PID/task/*/comm` shows it.
pub(crate) const THREAD_NAME: &str = "ftpalg-tproxy";

/// Requests waiting at most; past that a request is refused at once, not
/// queued. Making a socket takes microseconds.
const QUEUE: usize = 256;

/// Longest wait for the thread's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

struct Request {
    v6: bool,
    reply: mpsc::SyncSender<io::Result<Socket>>,
}

/// The thread that makes transparent sockets; it ends when this is
/// dropped.
pub(crate) struct SocketMaker {
    tx: mpsc::SyncSender<Request>,
}

impl SocketMaker {
    /// Starts the thread. It has the capabilities of the calling thread, so
    /// the caller must hold CAP_NET_ADMIN now.
    pub(crate) fn start() -> io::Result<SocketMaker> {
        let (tx, rx) = mpsc::sync_channel::<Request>(QUEUE);
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                // It binds nothing: the capability for low ports is the
                // workers' business, not its own.
                for set in [caps::CapSet::Effective, caps::CapSet::Permitted] {
                    let _ = caps::drop(None, set, caps::Capability::CAP_NET_BIND_SERVICE);
                }
                for req in rx {
                    // The asker may have given up waiting: the socket closes.
                    let _ = req.reply.send(make(req.v6));
                }
            })?;
        Ok(SocketMaker { tx })
    }

    /// A TCP socket of the family (`v6` or not) with IP_TRANSPARENT set,
    /// made on the thread; blocking, not yet bound.
    pub(crate) fn socket(&self, v6: bool) -> io::Result<Socket> {
        let (reply, answer) = mpsc::sync_channel(1);
        match self.tx.try_send(Request { v6, reply }) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("more than {QUEUE} transparent sockets asked for at once"),
                ))
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                return Err(io::Error::other(
                    "the thread making transparent sockets has stopped",
                ))
            }
        }
        match answer.recv_timeout(ANSWER_WITHIN) {
            Ok(made) => made,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no transparent socket within {ANSWER_WITHIN:?}"),
            )),
        }
    }
}

/// Makes a transparent socket on the calling thread.
fn make(v6: bool) -> io::Result<Socket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let sock = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    let set = if v6 {
        sock.set_ip_transparent_v6(true)
    } else {
        sock.set_ip_transparent_v4(true)
    };
    match set {
        Ok(()) => Ok(sock),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "IP_TRANSPARENT needs CAP_NET_ADMIN, which ftpalg keeps only when a listener has tproxy at start (a reload cannot add it)",
        )),
        Err(e) => Err(e),
    }
}

static MAKER: OnceLock<SocketMaker> = OnceLock::new();

/// From now on every transparent socket of the process is made by a
/// [`SocketMaker`] started here, with the calling thread's capabilities:
/// call it while holding CAP_NET_ADMIN, before dropping it. A second call
/// does nothing.
pub(crate) fn start_thread() -> io::Result<()> {
    if MAKER.get().is_none() {
        // A maker that lost a race is dropped, and its thread ends.
        let _ = MAKER.set(SocketMaker::start()?);
    }
    Ok(())
}

/// Whether [`start_thread`] has run.
pub(crate) fn thread_started() -> bool {
    MAKER.get().is_some()
}

/// A TCP socket of the family (`v6` or not) with IP_TRANSPARENT set,
/// blocking and unbound: made by the thread once it is started, on the
/// calling thread before.
pub(crate) fn socket(v6: bool) -> io::Result<Socket> {
    match MAKER.get() {
        Some(maker) => maker.socket(v6),
        None => make(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::kernel::testing::in_fresh_netns;
    use caps::{CapSet, Capability};
    use std::net::SocketAddr;

    /// Drops the capabilities that allow IP_TRANSPARENT from the calling
    /// thread, as `ftpalg run` does on its workers.
    fn drop_transparent_caps() {
        for cap in [Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW] {
            for set in [CapSet::Effective, CapSet::Permitted] {
                caps::drop(None, set, cap).expect("drop");
            }
        }
    }

    #[test]
    fn a_thread_without_the_capability_binds_the_makers_sockets_anywhere() {
        in_fresh_netns(|| {
            let maker = SocketMaker::start().expect("start");
            std::thread::spawn(move || {
                drop_transparent_caps();
                // Not an address of this namespace: it binds only with
                // IP_TRANSPARENT.
                for (v6, at) in [(false, "198.51.100.7:2121"), (true, "[2001:db8::7]:2121")] {
                    let at: SocketAddr = at.parse().unwrap();
                    let own = make(v6).expect_err("IP_TRANSPARENT without the capability");
                    assert_eq!(own.kind(), io::ErrorKind::PermissionDenied, "{own}");
                    let sock = maker.socket(v6).expect("a socket from the maker");
                    sock.bind(&at.into()).expect("non-local bind");
                    sock.listen(1).expect("listen");
                    assert_eq!(sock.local_addr().unwrap().as_socket(), Some(at));
                }
            })
            .join()
            .expect("unprivileged thread");
        });
    }

    #[test]
    fn every_wait_for_the_maker_is_bounded() {
        // A maker whose thread never answers: the request times out, and
        // once the queue is full the next is refused at once.
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let stuck = SocketMaker { tx };
        let t = std::time::Instant::now();
        let e = stuck.socket(false).expect_err("no answer");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(t.elapsed() < ANSWER_WITHIN * 3, "{:?}", t.elapsed());
        for _ in 1..QUEUE {
            let (reply, _) = mpsc::sync_channel(1);
            assert!(
                stuck.tx.try_send(Request { v6: false, reply }).is_ok(),
                "room"
            );
        }
        let t = std::time::Instant::now();
        let e = stuck.socket(false).expect_err("queue full");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert!(t.elapsed() < ANSWER_WITHIN, "{:?}", t.elapsed());
        // A maker whose thread has ended says so.
        drop(rx);
        let e = stuck.socket(false).expect_err("no thread");
        assert!(e.to_string().contains("stopped"), "{e}");
    }
}

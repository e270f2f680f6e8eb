//! Data-channel pinholes: a listening port that accepts exactly one
//! connection, from the expected peer, before a deadline.
//!
//! The session code asks a [`Pinholes`] backend for a pinhole and gets back
//! something to accept on; the userspace backend binds a socket from the
//! configured range. A kernel backend (nftables sets with timeouts) can be
//! put behind the same trait.

use crate::addrs::PeerIp;
use crate::rules::PortRange;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use thiserror::Error;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Why a pinhole produced no connection.
#[derive(Debug, Error)]
pub enum PinholeError {
    /// Nobody (allowed) connected in time.
    #[error("no connection from {expected} within {timeout:?}")]
    Expired {
        /// Who was expected.
        expected: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// accept() failed.
    #[error("accept failed: {0}")]
    Io(#[from] io::Error),
}

/// What a pinhole is for.
#[derive(Debug, Clone, Copy)]
pub struct PinholeRequest {
    /// Local address to bind (may be unspecified).
    pub bind: IpAddr,
    /// Ports to choose from.
    pub range: PortRange,
    /// The only peer allowed to connect; `None` accepts anyone (only when
    /// the operator switched peer checking off).
    pub expect_peer: Option<PeerIp>,
    /// Bind with IP_TRANSPARENT (TPROXY deployments).
    pub transparent: bool,
}

/// Hands out pinholes.
pub trait Pinholes: Send + Sync {
    /// Opens a pinhole; it listens at once and is reported by its address.
    fn open(&self, req: PinholeRequest) -> io::Result<Pinhole>;
}

/// Pinholes relayed in userspace: a listening socket per pinhole.
#[derive(Debug, Default)]
pub struct UserspacePinholes;

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish()
}

impl Pinholes for UserspacePinholes {
    fn open(&self, req: PinholeRequest) -> io::Result<Pinhole> {
        let n = req.range.len();
        // Start at a random port so that the next pinhole is not guessable
        // from the last one, then walk the range once.
        let start = (random_u64() % u64::from(n)) as u32;
        let mut last_err = io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no free port in {}", req.range),
        );
        for i in 0..n {
            let port = req.range.first as u32 + (start + i) % n;
            let addr = SocketAddr::new(req.bind, port as u16);
            // A pinhole takes one connection; a short queue is plenty.
            match bind_listener(addr, req.transparent, 4) {
                Ok(listener) => {
                    let local = listener.local_addr()?;
                    return Ok(Pinhole {
                        listener,
                        local,
                        expect_peer: req.expect_peer,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_err = e,
                Err(e) => return Err(e),
            }
        }
        Err(last_err)
    }
}

/// Binds a listening socket, optionally IP_TRANSPARENT.
pub fn bind_listener(addr: SocketAddr, transparent: bool, backlog: i32) -> io::Result<TcpListener> {
    let sock = if transparent {
        super::tproxy::socket(addr.is_ipv6())?
    } else {
        socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?
    };
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // A v6 wildcard listener also takes v4-mapped peers unless told not
        // to; keep the families apart so peer checks compare like with like.
        sock.set_only_v6(!addr.ip().is_unspecified())?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    TcpListener::from_std(sock.into())
}

/// Connects to `to` from `from` (port chosen by the kernel), within `timeout`.
pub async fn connect_from(
    from: Option<IpAddr>,
    to: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    connect_as(from, to, timeout, false).await
}

/// Like [`connect_from`]; with `transparent`, `from` may be an address
/// that is not the gateway's own (TPROXY: the client sees the server's
/// address).
pub async fn connect_as(
    from: Option<IpAddr>,
    to: SocketAddr,
    timeout: Duration,
    transparent: bool,
) -> io::Result<TcpStream> {
    let sock = if transparent {
        let sock = super::tproxy::socket(to.is_ipv6())?;
        sock.set_nonblocking(true)?;
        TcpSocket::from_std_stream(sock.into())
    } else if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = from.filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == to.is_ipv4()) {
        // Choose the port at connect time, from the whole 4-tuple: a plain
        // bind to port 0 searches for a port free of every connection and
        // costs more than the rest of the session under load.
        set_bind_address_no_port(&sock);
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    match tokio::time::timeout(timeout, sock.connect(to)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer from {to} within {timeout:?}"),
        )),
    }
}

/// One open pinhole.
#[derive(Debug)]
pub struct Pinhole {
    listener: TcpListener,
    local: SocketAddr,
    expect_peer: Option<PeerIp>,
}

impl Pinhole {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits for the expected peer; strangers are reset and reported through
    /// `on_stranger`, and waiting goes on. The listener closes on return, so
    /// the pinhole is used at most once.
    pub async fn accept(
        self,
        timeout: Duration,
        mut on_stranger: impl FnMut(SocketAddr),
    ) -> Result<TcpStream, PinholeError> {
        let expected = self
            .expect_peer
            .map(|p| p.to_string())
            .unwrap_or_else(|| "anyone".into());
        let wait = async {
            loop {
                let (stream, peer) = self.listener.accept().await?;
                let ok = self
                    .expect_peer
                    .is_none_or(|want| PeerIp::new(peer.ip()) == want);
                if ok {
                    // Until the relay takes it, dropping it must reset.
                    reset_on_close(&stream);
                    return Ok::<_, PinholeError>(stream);
                }
                on_stranger(peer);
                reset_on_close(&stream);
                drop(stream);
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(PinholeError::Expired { expected, timeout }),
        }
    }
}

/// Makes closing `stream` send a reset instead of a FIN, so the peer cannot
/// take a cut-off connection for a complete one. With a zero timeout the
/// close does not block.
pub fn reset_on_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Restores the normal close (FIN after the data) once a relay owns `stream`.
pub fn normal_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(None);
}

/// IP_BIND_ADDRESS_NO_PORT: bind() fixes the address only; connect() picks
/// the port. Failure only costs speed.
fn set_bind_address_no_port(sock: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a live socket descriptor and a pointer to an int with its size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::kernel::testing::in_fresh_netns;

    #[test]
    fn a_transparent_connection_is_made_and_comes_from_the_address_asked() {
        in_fresh_netns(|| {
            let up = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .expect("ip");
            assert!(up.success(), "ip link set lo up");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let to = server.local_addr().unwrap();
                let from: IpAddr = "127.0.0.2".parse().unwrap();
                let (made, accepted) = tokio::join!(
                    connect_as(Some(from), to, Duration::from_secs(2), true),
                    server.accept()
                );
                let made = made.expect("connect");
                let (_, peer) = accepted.expect("accept");
                assert_eq!(made.local_addr().unwrap().ip(), from);
                assert_eq!(peer.ip(), from);
            });
        });
    }
}

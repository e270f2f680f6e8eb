//! Sockets as the gateway makes them: listeners (IP_TRANSPARENT if asked,
//! on a free port of a range if asked), outgoing connections from a chosen
//! address, and how a socket closes (a reset for a cut transfer). The
//! listeners' room, the sessions' control connections and both data paths
//! use them; they decide nothing.

use crate::rules::PortRange;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish()
}

/// Binds with `bind_one` at a port of `range` on `bind`: starts at a
/// random port, so that the next one is not guessable from the last, then
/// walks the range once, past ports in use.
pub(crate) fn in_range<T>(
    bind: IpAddr,
    range: PortRange,
    mut bind_one: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let n = range.len();
    let start = (random_u64() % u64::from(n)) as u32;
    let mut last_err = io::Error::new(io::ErrorKind::AddrInUse, format!("no free port in {range}"));
    for i in 0..n {
        let port = range.first as u32 + (start + i) % n;
        match bind_one(SocketAddr::new(bind, port as u16)) {
            Ok(bound) => return Ok(bound),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_err = e,
            Err(e) => return Err(e),
        }
    }
    Err(last_err)
}

/// A listening socket on `addr`, optionally IP_TRANSPARENT, not yet
/// handed to the runtime.
pub(crate) fn listening_socket(
    addr: SocketAddr,
    transparent: bool,
    backlog: i32,
) -> io::Result<socket2::Socket> {
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
    Ok(sock)
}

/// Binds a listening socket, optionally IP_TRANSPARENT.
pub(crate) fn bind_listener(
    addr: SocketAddr,
    transparent: bool,
    backlog: i32,
) -> io::Result<TcpListener> {
    TcpListener::from_std(listening_socket(addr, transparent, backlog)?.into())
}

/// Connects to `to` from `from` (port chosen by the kernel), within `timeout`.
pub(crate) async fn connect_from(
    from: Option<IpAddr>,
    to: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    connect_as(from, to, timeout, false).await
}

/// Like [`connect_from`]; with `transparent`, `from` may be an address
/// that is not the gateway's own (TPROXY: the client sees the server's
/// address).
pub(crate) async fn connect_as(
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

/// Makes closing `stream` send a reset instead of a FIN, so the peer cannot
/// take a cut-off connection for a complete one. With a zero timeout the
/// close does not block.
pub(crate) fn reset_on_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Restores the normal close (FIN after the data) once a relay owns `stream`.
pub(crate) fn normal_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(None);
}

/// The unspecified address of `ip`'s family.
pub(crate) fn unspecified_like(ip: IpAddr) -> IpAddr {
    if ip.is_ipv4() {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    }
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

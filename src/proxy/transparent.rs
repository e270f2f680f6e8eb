//! The original destination of a connection redirected by nftables.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use tokio::net::TcpStream;

/// `SO_ORIGINAL_DST` and `IP6T_SO_ORIGINAL_DST` from linux/netfilter_ipv4.h
/// and linux/netfilter_ipv6/ip6_tables.h.
const SO_ORIGINAL_DST: libc::c_int = 80;

/// Reads where the client was going before nftables `redirect` (or DNAT)
/// sent the connection here.
pub fn original_destination(stream: &TcpStream) -> io::Result<SocketAddr> {
    let fd = stream.as_raw_fd();
    let local = stream.local_addr()?;
    if local.is_ipv4() || local.ip().to_canonical().is_ipv4() {
        let mut addr: libc::sockaddr_in = unsafe_zeroed_in();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: fd is a live socket owned by `stream`; addr and len point
        // to a sockaddr_in and its size, as the option requires.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_IP,
                SO_ORIGINAL_DST,
                (&mut addr as *mut libc::sockaddr_in).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
        Ok(SocketAddr::V4(SocketAddrV4::new(
            ip,
            u16::from_be(addr.sin_port),
        )))
    } else {
        let mut addr: libc::sockaddr_in6 = unsafe_zeroed_in6();
        let mut len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        // SAFETY: as above, with a sockaddr_in6.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_IPV6,
                SO_ORIGINAL_DST,
                (&mut addr as *mut libc::sockaddr_in6).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let ip = Ipv6Addr::from(addr.sin6_addr.s6_addr);
        Ok(SocketAddr::V6(SocketAddrV6::new(
            ip,
            u16::from_be(addr.sin6_port),
            0,
            0,
        )))
    }
}

/// The original destination, or `local` when the connection has no NAT
/// record (`ENOENT`): it was not redirected, so it was made to this address
/// itself. The caller then refuses it as aimed at the gateway.
pub fn original_destination_or_local(
    stream: &TcpStream,
    local: SocketAddr,
) -> io::Result<SocketAddr> {
    match original_destination(stream) {
        Ok(a) => Ok(SocketAddr::new(a.ip().to_canonical(), a.port())),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(local),
        Err(e) => Err(e),
    }
}

fn unsafe_zeroed_in() -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

fn unsafe_zeroed_in6() -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

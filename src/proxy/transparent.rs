//! The original destination of a connection redirected by nftables.

use crate::addrs::canonical;
use nix::sys::socket::{getsockopt, sockopt};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use tokio::net::TcpStream;

/// Reads where the client was going before nftables `redirect` (or DNAT)
/// sent the connection here.
pub fn original_destination(stream: &TcpStream) -> io::Result<SocketAddr> {
    let local = stream.local_addr()?;
    // The kernel answers with exactly a sockaddr_in (sockaddr_in6) and leaves
    // the length as given, so nix's check of the returned size holds.
    if local.is_ipv4() || local.ip().to_canonical().is_ipv4() {
        let addr = getsockopt(stream, sockopt::OriginalDst)?;
        let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
        Ok(SocketAddr::V4(SocketAddrV4::new(
            ip,
            u16::from_be(addr.sin_port),
        )))
    } else {
        let addr = getsockopt(stream, sockopt::Ip6tOriginalDst)?;
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
        Ok(a) => Ok(canonical(a)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(local),
        Err(e) => Err(e),
    }
}

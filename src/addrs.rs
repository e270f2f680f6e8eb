//! Addresses in canonical form.
//!
//! A dual-stack socket reports an IPv4 peer as a v4-mapped IPv6 address
//! (`::ffff:100.64.0.2`); the rules, the pinholes and the kernel's tables
//! speak of it as `100.64.0.2`. Every address is put in canonical form
//! where it is learned, by one of two functions, which differ in what
//! they keep of an IPv6 address:
//!
//! - [`canonical`], for a peer's address (a client or a server): only a
//!   v4-mapped address changes; an IPv6 address keeps its scope id, since a
//!   link-local peer is reachable only through its interface.
//! - [`host_and_port`], for the gateway's own addresses (a listener's, a
//!   control connection's local end): host and port only, compared and
//!   bound by those two.
//!
//! A leaf: it uses nothing but `std`, so every layer may import it.

use std::net::SocketAddr;

/// A peer's address in canonical form: a v4-mapped IPv6 address as plain
/// IPv4; any other address exactly as it is, scope id and flow info of an
/// IPv6 address included.
pub fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

/// One of the gateway's own addresses by host and port alone: a v4-mapped
/// IPv6 host as plain IPv4, and no scope id or flow info.
pub fn host_and_port(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV6;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn scoped(ip: &str, port: u16, scope: u32) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(ip.parse().unwrap(), port, 7, scope))
    }

    #[test]
    fn a_v4_mapped_address_becomes_v4_in_both_forms() {
        let mapped = sa("[::ffff:100.64.0.2]:40000");
        assert_eq!(canonical(mapped), sa("100.64.0.2:40000"));
        assert_eq!(host_and_port(mapped), sa("100.64.0.2:40000"));
        assert_eq!(canonical(sa("100.64.0.2:1")), sa("100.64.0.2:1"));
    }

    #[test]
    fn only_a_peer_keeps_its_scope_and_flow_info() {
        let link_local = scoped("fe80::2", 21, 3);
        assert_eq!(canonical(link_local), link_local);
        assert_eq!(host_and_port(link_local), sa("[fe80::2]:21"));
        let SocketAddr::V6(v6) = host_and_port(link_local) else {
            panic!("an IPv6 address stays IPv6");
        };
        assert_eq!((v6.scope_id(), v6.flowinfo()), (0, 0));
    }
}

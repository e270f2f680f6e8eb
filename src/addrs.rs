//! Addresses by role, in canonical form.
//!
//! An address is wrapped where it is learned (an accepted connection, a
//! socket's local address, a parsed PORT/EPRT, a 227/229) and carried
//! typed from there, as linkerd2-proxy does in its `addrs.rs`: a client's
//! address cannot be passed where the gateway's is meant. A role's
//! constructor is the only way to one, and it puts the address in
//! canonical form, once.
//!
//! A dual-stack socket reports an IPv4 peer as a v4-mapped IPv6 address
//! (`::ffff:100.64.0.2`); the rules, the pinholes and the kernel's tables
//! speak of it as `100.64.0.2`. The canonical form comes in two kinds,
//! which differ in what they keep of an IPv6 address:
//!
//! - [`canonical`], for a peer's address (a client or a server): only a
//!   v4-mapped address changes; an IPv6 address keeps its scope id, since a
//!   link-local peer is reachable only through its interface.
//! - [`host_and_port`], for the gateway's own addresses (a listener's, a
//!   control connection's local end): host and port only, compared and
//!   bound by those two.
//!
//! A leaf: it uses nothing but `std`, so every layer may import it.

use std::fmt;
use std::net::{AddrParseError, IpAddr, SocketAddr};
use std::ops::Deref;
use std::str::FromStr;

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

/// An IP address in canonical form: a v4-mapped IPv6 address as plain
/// IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// A role: a newtype whose one constructor puts the address in canonical
/// form with `$canon`. It reads as the address it wraps (`Deref`), and
/// parses and compares as one, so a test can state what it expects.
macro_rules! role {
    ($(#[$m:meta])* $name:ident($inner:ty) by $canon:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name($inner);

        impl $name {
            /// Wraps `a`, in canonical form.
            pub fn new(a: $inner) -> Self {
                $name($canon(a))
            }
        }

        impl Deref for $name {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.0
            }
        }

        impl From<$inner> for $name {
            fn from(a: $inner) -> Self {
                $name::new(a)
            }
        }

        impl From<$name> for $inner {
            fn from(a: $name) -> $inner {
                a.0
            }
        }

        impl FromStr for $name {
            type Err = AddrParseError;
            fn from_str(s: &str) -> Result<Self, AddrParseError> {
                s.parse().map($name::new)
            }
        }

        impl PartialEq<$inner> for $name {
            fn eq(&self, other: &$inner) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

role!(
    /// An FTP client's address (host and port of its data socket when it
    /// is active; its host alone otherwise).
    ClientAddr(SocketAddr) by canonical
);
role!(
    /// An FTP server's address (its passive data port, or its host when it
    /// dials out in active mode).
    ServerAddr(SocketAddr) by canonical
);
role!(
    /// An address and port of the gateway itself that a peer will dial.
    GatewayAddr(SocketAddr) by host_and_port
);
role!(
    /// The only host allowed through a pinhole: the one expected to dial.
    PeerIp(IpAddr) by canonical_ip
);
role!(
    /// Where an admitted connection is sent (destination NAT).
    TargetAddr(SocketAddr) by canonical
);
role!(
    /// The gateway address an admitted connection leaves from (source NAT).
    SourceNat(IpAddr) by canonical_ip
);

/// `to` with the scope id of `control` when `to` is link-local and names
/// no scope itself.
fn with_scope(to: SocketAddr, control: SocketAddr) -> SocketAddr {
    match (to, control) {
        (SocketAddr::V6(mut t), SocketAddr::V6(c))
            if t.scope_id() == 0 && t.ip().is_unicast_link_local() =>
        {
            t.set_scope_id(c.scope_id());
            SocketAddr::V6(t)
        }
        _ => to,
    }
}

impl ClientAddr {
    /// This address with the scope id of the client's control connection
    /// when it is link-local and names no scope itself: a data connection
    /// to `fe80::` leaves through the interface the control connection
    /// came in on.
    pub fn scoped_like(self, control: ClientAddr) -> ClientAddr {
        ClientAddr(with_scope(self.0, control.0))
    }
}

impl ServerAddr {
    /// This address with the scope id of the server's control connection
    /// when it is link-local and names no scope itself (as
    /// [`ClientAddr::scoped_like`]).
    pub fn scoped_like(self, control: ServerAddr) -> ServerAddr {
        ServerAddr(with_scope(self.0, control.0))
    }

    /// The same host (scope included) at `port`.
    pub fn with_port(self, port: u16) -> ServerAddr {
        let mut a = self.0;
        a.set_port(port);
        ServerAddr(a)
    }
}

// A role's host, or the far end of a flow, taken from an address already
// in canonical form: nothing to redo.

impl From<ClientAddr> for PeerIp {
    fn from(a: ClientAddr) -> PeerIp {
        PeerIp(a.0.ip())
    }
}

impl From<ServerAddr> for PeerIp {
    fn from(a: ServerAddr) -> PeerIp {
        PeerIp(a.0.ip())
    }
}

impl From<ClientAddr> for TargetAddr {
    fn from(a: ClientAddr) -> TargetAddr {
        TargetAddr(a.0)
    }
}

impl From<ServerAddr> for TargetAddr {
    fn from(a: ServerAddr) -> TargetAddr {
        TargetAddr(a.0)
    }
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

    #[test]
    fn a_role_is_made_canonical_by_its_constructor() {
        let mapped = sa("[::ffff:100.64.0.2]:40000");
        assert_eq!(ClientAddr::new(mapped), sa("100.64.0.2:40000"));
        assert_eq!(ClientAddr::from(mapped), sa("100.64.0.2:40000"));
        assert_eq!(
            "[::ffff:100.64.0.2]:40000".parse::<ServerAddr>().unwrap(),
            sa("100.64.0.2:40000")
        );
        assert_eq!(
            PeerIp::new("::ffff:100.64.0.2".parse().unwrap()),
            "100.64.0.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            "::ffff:198.51.100.1"
                .parse::<SourceNat>()
                .unwrap()
                .to_string(),
            "198.51.100.1"
        );
        let link_local = scoped("fe80::2", 21, 3);
        assert_eq!(ClientAddr::new(link_local), link_local);
        assert_eq!(GatewayAddr::new(link_local), sa("[fe80::2]:21"));
    }

    #[test]
    fn only_a_link_local_address_without_a_scope_takes_the_control_connections() {
        let control = ClientAddr::new(scoped("fe80::2", 40000, 3));
        let unscoped: ClientAddr = "[fe80::2]:40001".parse().unwrap();
        let SocketAddr::V6(v6) = *unscoped.scoped_like(control) else {
            panic!("an IPv6 address stays IPv6");
        };
        assert_eq!(v6.scope_id(), 3);
        let own = ClientAddr::new(scoped("fe80::2", 40001, 5));
        assert_eq!(own.scoped_like(control), own);
        let global: ClientAddr = "[2001:db8::2]:40001".parse().unwrap();
        assert_eq!(global.scoped_like(control), global);
        let server = ServerAddr::new(scoped("fe80::10", 21, 3));
        assert_eq!(server.with_port(50000), scoped("fe80::10", 50000, 3));
    }
}

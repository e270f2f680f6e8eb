//! The data plane: what a transfer needs from the network, in flows.
//!
//! The engine decides *that* a transfer needs a data path; a backend makes
//! it exist. A backend below the driver is told about one [`PinholeFlow`]
//! at a time: who will dial, which gateway address and port they will
//! dial, where that connection goes, until when, and always for one
//! connection only. How it reports back is its own: the [`kernel`] backend
//! puts the flow into ftpalg's own nftables table, so the bytes never
//! enter userspace, and reports what conntrack saw of it
//! ([`kernel::FlowEvent`]); the driver's kernel path turns that into what
//! any data path reports to a session.
//!
//! A flow's addresses are typed by role ([`crate::addrs`]), so a client's
//! address cannot be passed where the gateway's is meant, and each is in
//! canonical form.

pub mod kernel;

pub use crate::addrs::{ClientAddr, GatewayAddr, PeerIp, ServerAddr, SourceNat, TargetAddr};
use std::time::Duration;

/// What happens to the one connection a pinhole admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Let it through unchanged: to a userspace relay listening on the
    /// gateway address (mode conversion), or in transparent mode, where the
    /// peer dials the far end's own address.
    Only,
    /// Send it on to `to`, optionally leaving from `source_nat`.
    Forward {
        /// The destination after NAT.
        to: TargetAddr,
        /// The source after NAT, if the far end must see the gateway.
        source_nat: Option<SourceNat>,
    },
}

/// One data-channel pinhole: exactly one TCP connection from `peer` to
/// `gateway`, before `timeout` has passed, handled as `admit` says. A
/// pinhole is always one-shot: the first matching connection uses it up.
/// A flow is made by one of its constructors, each a way a transfer can
/// go, from addresses typed by role; the backend reads its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinholeFlow {
    /// Who may dial.
    peer: PeerIp,
    /// What they dial.
    gateway: GatewayAddr,
    /// What becomes of the connection.
    admit: Admit,
    /// How long the pinhole waits for its connection.
    timeout: Duration,
}

impl PinholeFlow {
    /// Client passive, server passive: the client dials the gateway, which
    /// forwards to the server's passive port, leaving from `outside` (the
    /// gateway's address towards the server) when it is known.
    pub fn passive(
        client: PeerIp,
        gateway: GatewayAddr,
        server: ServerAddr,
        outside: Option<SourceNat>,
        timeout: Duration,
    ) -> Self {
        PinholeFlow {
            peer: client,
            gateway,
            admit: Admit::Forward {
                to: server.into(),
                source_nat: outside,
            },
            timeout,
        }
    }

    /// Client active, server active: the server dials the gateway (the
    /// address ftpalg sent in PORT/EPRT), which forwards to the client's
    /// own PORT address, leaving from `inside` (the gateway's address
    /// towards the client) if the client is to see the gateway.
    pub fn active(
        server: PeerIp,
        gateway: GatewayAddr,
        client: ClientAddr,
        inside: Option<SourceNat>,
        timeout: Duration,
    ) -> Self {
        PinholeFlow {
            peer: server,
            gateway,
            admit: Admit::Forward {
                to: client.into(),
                source_nat: inside,
            },
            timeout,
        }
    }

    /// Transparent mode, client passive: the client dials the server's
    /// own passive port (the firewall brings it to the gateway), and that
    /// one flow is admitted as it is, untranslated.
    pub fn exact(client: PeerIp, server: ServerAddr, timeout: Duration) -> Self {
        PinholeFlow {
            peer: client,
            gateway: GatewayAddr::new(*server),
            admit: Admit::Only,
            timeout,
        }
    }

    /// Mode conversion: admit only `peer` to ftpalg's own relay listener.
    pub fn relay(peer: PeerIp, relay: GatewayAddr, timeout: Duration) -> Self {
        PinholeFlow {
            peer,
            gateway: relay,
            admit: Admit::Only,
            timeout,
        }
    }

    /// Who may dial.
    pub fn peer(&self) -> PeerIp {
        self.peer
    }

    /// What they dial.
    pub fn gateway(&self) -> GatewayAddr {
        self.gateway
    }

    /// What becomes of the connection.
    pub fn admit(&self) -> Admit {
        self.admit
    }

    /// How long the pinhole waits for its connection.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// True when every address in the flow is IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.peer.is_ipv4()
    }

    /// True when all addresses are of one family (NAT cannot translate
    /// between IPv4 and IPv6).
    pub fn same_family(&self) -> bool {
        let v4 = self.is_ipv4();
        let gw = self.gateway.is_ipv4() == v4;
        match self.admit {
            Admit::Only => gw,
            Admit::Forward { to, source_nat } => {
                gw && to.is_ipv4() == v4 && source_nat.is_none_or(|s| s.is_ipv4() == v4)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, SocketAddr};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn passive_flow_admits_the_client_towards_the_server() {
        let f = PinholeFlow::passive(
            PeerIp::new("100.64.0.2".parse().unwrap()),
            GatewayAddr::new(sa("100.64.0.1:40000")),
            ServerAddr::new(sa("198.51.100.2:5000")),
            Some(SourceNat::new("198.51.100.1".parse().unwrap())),
            Duration::from_secs(5),
        );
        assert_eq!(*f.peer, "100.64.0.2".parse::<IpAddr>().unwrap());
        assert!(
            matches!(f.admit, Admit::Forward { to, source_nat: Some(_) } if *to == sa("198.51.100.2:5000"))
        );
        assert!(f.same_family());
    }

    #[test]
    fn active_flow_admits_the_server_towards_the_client() {
        let f = PinholeFlow::active(
            PeerIp::new("198.51.100.2".parse().unwrap()),
            GatewayAddr::new(sa("198.51.100.1:40001")),
            ClientAddr::new(sa("100.64.0.2:6000")),
            None,
            Duration::from_secs(5),
        );
        assert_eq!(*f.peer, "198.51.100.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            f.admit,
            Admit::Forward {
                to: TargetAddr::new(sa("100.64.0.2:6000")),
                source_nat: None
            }
        );
    }

    #[test]
    fn an_active_flow_may_leave_from_the_gateways_inside_address() {
        let inside = SourceNat::new("100.64.0.1".parse().unwrap());
        let f = PinholeFlow::active(
            PeerIp::new("198.51.100.2".parse().unwrap()),
            GatewayAddr::new(sa("198.51.100.1:40001")),
            ClientAddr::new(sa("100.64.0.2:6000")),
            Some(inside),
            Duration::from_secs(5),
        );
        assert_eq!(
            f.admit(),
            Admit::Forward {
                to: TargetAddr::new(sa("100.64.0.2:6000")),
                source_nat: Some(inside)
            }
        );
    }

    #[test]
    fn an_exact_flow_admits_the_client_to_the_servers_own_port_untranslated() {
        let f = PinholeFlow::exact(
            PeerIp::new("::ffff:100.64.0.2".parse().unwrap()),
            ServerAddr::new(sa("[::ffff:198.51.100.2]:5000")),
            Duration::from_secs(5),
        );
        assert_eq!(f.peer(), "100.64.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(f.gateway(), sa("198.51.100.2:5000"));
        assert_eq!(f.admit(), Admit::Only);
        assert_eq!(f.timeout(), Duration::from_secs(5));
        assert!(f.same_family());
    }

    #[test]
    fn mixed_families_are_detected() {
        let mut f = PinholeFlow::relay(
            PeerIp::new("2001:db8::2".parse().unwrap()),
            GatewayAddr::new(sa("[2001:db8::1]:40000")),
            Duration::from_secs(1),
        );
        assert!(f.same_family());
        f.admit = Admit::Forward {
            to: TargetAddr::new(sa("198.51.100.2:1")),
            source_nat: None,
        };
        assert!(!f.same_family());
        f.admit = Admit::Forward {
            to: TargetAddr::new(sa("[2001:db8::9]:1")),
            source_nat: Some(SourceNat::new("198.51.100.1".parse().unwrap())),
        };
        assert!(!f.same_family());
    }
}

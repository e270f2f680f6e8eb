//! Which kernel rules a data connection gets, decided in one place, after
//! OpenBSD ftp-proxy's `allow_data_connection()`: where the peer dials
//! (a gateway port reserved on the right side, or the server's own
//! address in transparent mode), whether the connection is translated and
//! from which address it leaves, and which peer alone may make it.

use super::super::Context;
use crate::addrs::{ClientAddr, GatewayAddr, PeerIp, ServerAddr, SourceNat};
use crate::dataplane::PinholeFlow;
use crate::ftp::session::{DataPlane, Side};
use crate::rules::PortRange;
use std::io;
use std::net::{IpAddr, SocketAddr};

/// A data connection the kernel may be asked to admit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DataConnection {
    /// The engine's `Endpoint::Forward`: the kernel carries the channel's
    /// one connection from `expect_peer` to `to`.
    Forward {
        side: Side,
        expect_peer: PeerIp,
        to: SocketAddr,
        /// The peer dials `to` itself (transparent mode).
        exact: bool,
    },
    /// A relay listener at `local`, waiting for `expect_peer` (a mode
    /// conversion).
    RelayListener {
        side: Side,
        expect_peer: PeerIp,
        local: SocketAddr,
    },
}

/// The kernel rule `conn` gets, if any: a forwarded connection always
/// gets one (failing if no gateway port can be had), a relay listener a
/// filter only on the kernel data plane, with peer checking on, and where
/// no other table's rewrite comes first. `reserve` is asked for a gateway
/// port on an address from a range when the connection needs one; it
/// answers with the address the peer is to dial.
pub(crate) fn allow_data_connection(
    conn: DataConnection,
    at: &Context<'_>,
    reserve: impl FnOnce(IpAddr, PortRange) -> io::Result<SocketAddr>,
) -> Result<Option<PinholeFlow>, String> {
    let rules = at.rules;
    let timeout = rules.data.pinhole_timeout;
    let outside = at.server_local.map(|a| a.ip());
    match conn {
        DataConnection::Forward {
            expect_peer,
            to,
            exact: true,
            ..
        } => {
            // Transparent mode: the client dials the server's own address;
            // that one flow is admitted as it is.
            Ok(Some(PinholeFlow::exact(
                expect_peer,
                ServerAddr::new(to),
                timeout,
            )))
        }
        DataConnection::Forward {
            side,
            expect_peer,
            to,
            exact: false,
        } => {
            let (bind, range) = match side {
                Side::Client => (at.client_local.ip(), rules.data.client_ports),
                Side::Server => (
                    outside.unwrap_or(at.client_local.ip()),
                    rules.data.server_ports,
                ),
            };
            let gateway = reserve(bind, range)
                .map(GatewayAddr::new)
                .map_err(|e| format!("no gateway port for a kernel pinhole: {e}"))?;
            Ok(Some(match side {
                // Client passive: leave towards the server from the
                // gateway's outside address.
                Side::Client => PinholeFlow::passive(
                    expect_peer,
                    gateway,
                    ServerAddr::new(to),
                    outside.map(SourceNat::new),
                    timeout,
                ),
                // Client active: towards the client from the gateway's
                // inside address, unless the client expects the server's.
                Side::Server => PinholeFlow::active(
                    expect_peer,
                    gateway,
                    ClientAddr::new(to),
                    (!at.transparent).then(|| SourceNat::new(at.client_local.ip())),
                    timeout,
                ),
            }))
        }
        DataConnection::RelayListener {
            side,
            expect_peer,
            local,
        } => {
            // Not for listeners the client reaches through the firewall's
            // redirect or TPROXY: there the address the element would be
            // keyed on is rewritten by another table's rule.
            if !matches!(at.data_plane, DataPlane::Kernel { .. })
                || !rules.security.check_data_peer
                || at.tproxy
                || (side == Side::Client && at.transparent)
            {
                return Ok(None);
            }
            let ip = match (local.ip().is_unspecified(), side) {
                (false, _) => local.ip(),
                (true, Side::Client) => at.client_local.ip(),
                (true, Side::Server) => match at.server_local {
                    Some(a) => a.ip(),
                    None => return Ok(None),
                },
            };
            Ok(Some(PinholeFlow::relay(
                expect_peer,
                GatewayAddr::new(SocketAddr::new(ip, local.port())),
                timeout,
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::Admit;
    use crate::rules::Rules;

    fn rules() -> Rules {
        crate::rules::from_str(
            "listeners:\n  - name: t\n    listen: 100.64.0.1:21\n    kind: explicit\n    upstream: 198.51.100.2:21\n",
        )
        .rules
        .expect("valid rules")
    }

    fn at(rules: &Rules, data_plane: DataPlane) -> Context<'_> {
        Context {
            rules,
            client_local: GatewayAddr::new("100.64.0.1:21".parse().unwrap()),
            server_local: Some(GatewayAddr::new("198.51.100.1:40100".parse().unwrap())),
            pinhole_bind: "100.64.0.1".parse().unwrap(),
            tproxy: false,
            transparent: false,
            data_plane,
        }
    }

    const KERNEL: DataPlane = DataPlane::Kernel { exact: false };

    fn forward(side: Side, exact: bool) -> DataConnection {
        DataConnection::Forward {
            side,
            expect_peer: PeerIp::new(match side {
                Side::Client => "100.64.0.2".parse().unwrap(),
                Side::Server => "198.51.100.2".parse().unwrap(),
            }),
            to: match side {
                Side::Client => "198.51.100.2:5000".parse().unwrap(),
                Side::Server => "100.64.0.2:6000".parse().unwrap(),
            },
            exact,
        }
    }

    /// A reservation that hands out port 40000 on the address asked, and
    /// says where it was asked.
    fn reserve_at(
        asked: &mut Option<(IpAddr, PortRange)>,
    ) -> impl FnOnce(IpAddr, PortRange) -> io::Result<SocketAddr> + '_ {
        move |ip, range| {
            *asked = Some((ip, range));
            Ok(SocketAddr::new(ip, 40000))
        }
    }

    #[test]
    fn client_passive_reserves_inside_and_leaves_from_the_outside_address() {
        let r = rules();
        let mut asked = None;
        let flow = allow_data_connection(
            forward(Side::Client, false),
            &at(&r, KERNEL),
            reserve_at(&mut asked),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            asked,
            Some(("100.64.0.1".parse().unwrap(), r.data.client_ports))
        );
        assert_eq!(
            flow.gateway(),
            "100.64.0.1:40000".parse::<SocketAddr>().unwrap()
        );
        assert!(matches!(
            flow.admit(),
            Admit::Forward { to, source_nat: Some(s) }
                if *to == "198.51.100.2:5000".parse::<SocketAddr>().unwrap()
                    && *s == "198.51.100.1".parse::<IpAddr>().unwrap()
        ));
        assert_eq!(flow.timeout(), r.data.pinhole_timeout);
    }

    #[test]
    fn client_active_reserves_outside_and_leaves_from_the_inside_address_unless_transparent() {
        let r = rules();
        let mut asked = None;
        let flow = allow_data_connection(
            forward(Side::Server, false),
            &at(&r, KERNEL),
            reserve_at(&mut asked),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            asked,
            Some(("198.51.100.1".parse().unwrap(), r.data.server_ports))
        );
        assert!(matches!(
            flow.admit(),
            Admit::Forward { source_nat: Some(s), .. } if *s == "100.64.0.1".parse::<IpAddr>().unwrap()
        ));
        let transparent = Context {
            transparent: true,
            ..at(&r, KERNEL)
        };
        let flow = allow_data_connection(
            forward(Side::Server, false),
            &transparent,
            reserve_at(&mut asked),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(
            flow.admit(),
            Admit::Forward {
                source_nat: None,
                ..
            }
        ));
    }

    #[test]
    fn an_exact_flow_reserves_nothing_and_a_refused_reservation_is_a_reason() {
        let r = rules();
        let flow = allow_data_connection(forward(Side::Client, true), &at(&r, KERNEL), |_, _| {
            panic!("nothing to reserve")
        })
        .unwrap()
        .unwrap();
        assert_eq!(flow.admit(), Admit::Only);
        assert_eq!(
            flow.gateway(),
            "198.51.100.2:5000".parse::<SocketAddr>().unwrap()
        );
        let refused =
            allow_data_connection(forward(Side::Client, false), &at(&r, KERNEL), |_, _| {
                Err(io::Error::new(io::ErrorKind::AddrInUse, "no free port"))
            });
        assert_eq!(
            refused.unwrap_err(),
            "no gateway port for a kernel pinhole: no free port"
        );
    }

    #[test]
    fn a_relay_listener_is_filtered_only_on_the_kernel_plane_with_peer_checks_and_no_redirect() {
        let r = rules();
        let listener = |side, local: &str| DataConnection::RelayListener {
            side,
            expect_peer: PeerIp::new("100.64.0.2".parse().unwrap()),
            local: local.parse().unwrap(),
        };
        let none =
            |_: IpAddr, _: PortRange| -> io::Result<SocketAddr> { panic!("nothing to reserve") };
        // A wildcard listener is keyed on the control connection's address.
        let flow = allow_data_connection(
            listener(Side::Client, "0.0.0.0:40001"),
            &at(&r, KERNEL),
            none,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            flow.gateway(),
            "100.64.0.1:40001".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(flow.admit(), Admit::Only);
        assert_eq!(flow.timeout(), r.data.pinhole_timeout);
        let relay = allow_data_connection(
            listener(Side::Client, "100.64.0.1:40001"),
            &at(&r, DataPlane::Relay),
            none,
        );
        assert_eq!(relay, Ok(None), "not on the relay plane");
        let tproxy = Context {
            tproxy: true,
            ..at(&r, KERNEL)
        };
        assert_eq!(
            allow_data_connection(listener(Side::Client, "100.64.0.1:40001"), &tproxy, none),
            Ok(None)
        );
        let transparent = Context {
            transparent: true,
            ..at(&r, KERNEL)
        };
        assert_eq!(
            allow_data_connection(
                listener(Side::Client, "100.64.0.1:40001"),
                &transparent,
                none
            ),
            Ok(None)
        );
        assert!(
            allow_data_connection(
                listener(Side::Server, "198.51.100.1:41001"),
                &transparent,
                none
            )
            .unwrap()
            .is_some(),
            "the server side is not redirected"
        );
        let mut unchecked = rules();
        unchecked.security.check_data_peer = false;
        assert_eq!(
            allow_data_connection(
                listener(Side::Client, "100.64.0.1:40001"),
                &at(&unchecked, KERNEL),
                none
            ),
            Ok(None)
        );
    }
}

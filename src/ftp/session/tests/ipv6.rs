//! IPv6 clients: passive replies of the right family, and link-local data
//! connections that keep the control connection's scope.

use super::*;
use std::net::{Ipv6Addr, SocketAddrV6};

fn v6_client() -> SessionConfig {
    SessionConfig::new(sa("[2001:db8:1::2]:40000"), Upstream::Fixed(sa(SERVER)))
}

/// PASV and LPSV name an address; the client connects from its own family,
/// so an advertised address of the other family could never be reached by
/// the expected peer: refused before anything is opened.
#[test]
fn passive_replies_of_the_other_family_are_refused_up_front() {
    let cases = [
        (v6_client(), Some("203.0.113.1"), "PASV"),
        (v6_client(), None, "PASV"),
        (v6_client(), Some("203.0.113.1"), "LPSV"),
        (config(), Some("2001:db8:3::1"), "PASV"),
        (config(), Some("2001:db8:3::1"), "LPSV"),
    ];
    for (mut cfg, advertise, verb) in cases {
        cfg.client_advertise = advertise.map(|a| a.parse().unwrap());
        let mut r = Rig::with(cfg, AllowAll::default());
        r.bytes(format!("{verb}\r\n").as_bytes());
        let acts = r.drain();
        let what = format!("{verb} advertising {advertise:?}: {acts:?}");
        assert_eq!(wire_to_server(&acts), b"".to_vec(), "{what}");
        assert!(
            !acts.iter().any(|a| matches!(a, Action::Prepare { .. })),
            "{what}"
        );
        assert_eq!(denials(&acts), vec![Denial::Protocol], "{what}");
        assert!(
            acts.iter().any(|a| matches!(a, Action::ToClient(b)
                if b.starts_with(b"425 ") && String::from_utf8_lossy(b).contains("EPSV"))),
            "{what}"
        );
    }
}

#[test]
fn lpsv_with_a_same_family_advertise_still_works() {
    let mut cfg = v6_client();
    cfg.client_advertise = Some("2001:db8:ffff::1".parse().unwrap());
    let mut r = Rig::with(cfg, AllowAll::default());
    r.bytes(b"LPSV\r\n");
    assert_eq!(wire_to_server(&r.drain()), b"PASV\r\n".to_vec());
}

fn scoped(ip: &str, port: u16, scope: u32) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(
        ip.parse::<Ipv6Addr>().unwrap(),
        port,
        0,
        scope,
    ))
}

#[test]
fn eprt_to_a_link_local_client_keeps_the_scope() {
    let cfg = SessionConfig::new(
        scoped("fe80::2", 40000, 3),
        Upstream::Fixed(sa("[2001:db8:2::10]:21")),
    );
    let mut r = Rig::with(cfg, AllowAll::default());
    r.bytes(b"EPRT |2|fe80::2|40001|\r\n");
    let acts = r.drain();
    assert!(
        acts.iter().any(|a| matches!(
            a,
            Action::Prepare {
                side: Side::Server,
                endpoint: Endpoint::Listen { .. },
                ..
            }
        )),
        "{acts:?}"
    );
    r.prepared(1, Side::Server, "[2001:db8:2::1]:40100");
    r.drain();
    r.server("200 EPRT command successful.");
    let acts = r.drain();
    assert!(
        acts.contains(&Action::Prepare {
            id: DataId(1),
            side: Side::Client,
            endpoint: Endpoint::Connect {
                to: scoped("fe80::2", 40001, 3),
                within: ConnectDeadline::Connect,
            }
        }),
        "{acts:?}"
    );
}

#[test]
fn passive_connect_to_a_link_local_server_keeps_the_scope() {
    let cfg = SessionConfig::new(
        scoped("fe80::2", 40000, 3),
        Upstream::Fixed(scoped("fe80::10", 21, 3)),
    );
    let mut r = Rig::with(cfg, AllowAll::default());
    r.bytes(b"EPSV\r\n");
    assert_eq!(wire_to_server(&r.drain()), b"EPSV\r\n".to_vec());
    r.server("229 Entering Extended Passive Mode (|||50000|)");
    let acts = r.drain();
    assert!(
        acts.contains(&Action::Prepare {
            id: DataId(1),
            side: Side::Server,
            endpoint: Endpoint::Connect {
                to: scoped("fe80::10", 50000, 3),
                within: ConnectDeadline::Connect,
            }
        }),
        "{acts:?}"
    );
}

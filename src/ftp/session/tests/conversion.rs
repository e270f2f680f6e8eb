//! Mode conversion: each side of a transfer in its own mode, and server
//! mode `auto` falling back to active when the server's passive port is dead.

use super::*;

#[test]
fn port_becomes_pasv_towards_the_server() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.client("PORT 100,64,0,2,200,10");
    assert_eq!(h.acts(), vec![to_server("PASV")]);
    h.server("227 =198,51,100,10,4,1");
    assert_eq!(
        h.acts(),
        vec![prepare(
            1,
            Side::Server,
            Endpoint::Connect {
                to: sa("198.51.100.10:1025"),
                within: ConnectDeadline::Connect,
            }
        )]
    );
    h.prepared(1, Side::Server, "198.51.100.1:5000");
    assert_eq!(
        h.acts(),
        vec![prepare(
            1,
            Side::Client,
            Endpoint::Connect {
                to: sa("100.64.0.2:51210"),
                within: ConnectDeadline::Connect,
            }
        )]
    );
    h.prepared(1, Side::Client, "100.64.0.1:5001");
    assert_eq!(
        h.acts(),
        vec![
            start(1, ClientMode::Port, ServerMode::Passive),
            to_client("200 PORT command successful."),
        ]
    );
}

#[test]
fn pasv_becomes_port_towards_the_server() {
    let mut h = Rig::new(allow_all(ServerDataMode::Active));
    h.client("EPSV");
    assert_eq!(
        h.acts(),
        vec![prepare(
            1,
            Side::Server,
            Endpoint::Listen {
                expect_peer: "198.51.100.10".parse().unwrap()
            }
        )]
    );
    h.prepared(1, Side::Server, "198.51.100.1:40100");
    assert_eq!(h.acts(), vec![to_server("PORT 198,51,100,1,156,164")]);
    h.server("200 PORT ok");
    assert_eq!(
        h.acts(),
        vec![prepare(
            1,
            Side::Client,
            Endpoint::Listen {
                expect_peer: "100.64.0.2".parse().unwrap()
            }
        )]
    );
    h.prepared(1, Side::Client, "100.64.0.1:40001");
    assert_eq!(
        h.acts(),
        vec![
            start(1, ClientMode::Epsv, ServerMode::Active),
            to_client("229 Entering Extended Passive Mode (|||40001|)"),
        ]
    );
}

#[test]
fn auto_falls_back_to_active_when_the_passive_port_is_dead() {
    let mut h = Rig::new(allow_all(ServerDataMode::Auto));
    h.client("PASV");
    assert_eq!(h.acts(), vec![to_server("PASV")]);
    h.server("227 Entering Passive Mode (198,51,100,10,195,80)");
    h.acts();
    h.failed(1, Side::Server, "timed out");
    let all = h.drain();
    assert!(all.contains(&Action::Event(Event::PassiveFallback {
        reason: "timed out".into()
    })));
    assert!(all.contains(&prepare(
        1,
        Side::Server,
        Endpoint::Listen {
            expect_peer: "198.51.100.10".parse().unwrap()
        }
    )));
    h.prepared(1, Side::Server, "198.51.100.1:40100");
    assert_eq!(h.acts(), vec![to_server("PORT 198,51,100,1,156,164")]);
    h.server("200 ok");
    h.acts();
    h.prepared(1, Side::Client, "100.64.0.1:40001");
    h.acts();
    // The next transfer goes straight to active.
    h.client("PASV");
    assert_eq!(
        h.acts(),
        vec![
            reset(1, Cancel::Released),
            prepare(
                2,
                Side::Server,
                Endpoint::Listen {
                    expect_peer: "198.51.100.10".parse().unwrap()
                }
            )
        ]
    );
}

#[test]
fn auto_goes_straight_to_active_for_a_server_known_to_be_passive_dead() {
    let mut cfg = config();
    cfg.passive_known_dead = true;
    let mut h = Rig::with(cfg, allow_all(ServerDataMode::Auto));
    h.client("PASV");
    let acts = h.drain();
    assert!(
        acts.contains(&prepare(
            1,
            Side::Server,
            Endpoint::Listen {
                expect_peer: "198.51.100.10".parse().unwrap()
            }
        )),
        "{acts:?}"
    );
    assert!(!acts.contains(&to_server("PASV")));
}

#[test]
fn a_servers_passive_port_is_probed_only_in_server_mode_auto() {
    for (mode, within) in [
        (ServerDataMode::Passive, ConnectDeadline::Connect),
        (ServerDataMode::Auto, ConnectDeadline::PassiveProbe),
    ] {
        let mut h = Rig::new(allow_all(mode));
        h.client("PORT 100,64,0,2,200,10");
        h.acts();
        h.server("227 Entering Passive Mode (198,51,100,10,4,1)");
        assert_eq!(
            h.acts(),
            vec![prepare(
                1,
                Side::Server,
                Endpoint::Connect {
                    to: sa("198.51.100.10:1025"),
                    within,
                }
            )],
            "{mode:?}"
        );
        // The client's own port is never a probe.
        h.prepared(1, Side::Server, "198.51.100.1:33000");
        assert_eq!(
            h.acts(),
            vec![prepare(
                1,
                Side::Client,
                Endpoint::Connect {
                    to: sa("100.64.0.2:51210"),
                    within: ConnectDeadline::Connect,
                }
            )],
            "{mode:?}"
        );
    }
}

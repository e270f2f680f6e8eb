//! The kernel data plane: which channels the engine asks the kernel to
//! forward, what the client and server are told, and the relay taking over
//! when the kernel cannot.

use super::*;

fn kernel(mode: ServerDataMode, exact: bool, advertise: Option<&str>) -> Rig {
    let mut cfg = config();
    cfg.data_plane = DataPlane::Kernel { exact };
    cfg.client_advertise = advertise.map(|a| a.parse().unwrap());
    Rig::with(cfg, allow_all(mode))
}

fn forward(id: u64, side: Side, peer: &str, to: &str, exact: bool) -> Action {
    prepare(
        id,
        side,
        Endpoint::Forward {
            expect_peer: peer.parse().unwrap(),
            to: sa(to),
            exact,
        },
    )
}

fn failed(h: &mut Rig, id: u64, side: Side) {
    h.failed(id, side, "netlink refused");
}

fn has_fallback(acts: &[Action]) -> bool {
    acts.iter()
        .any(|a| matches!(a, Action::Event(Event::KernelFallback { reason }) if reason == "netlink refused"))
}

#[test]
fn passive_both_sides_is_one_kernel_forward_to_the_servers_port() {
    let mut h = kernel(ServerDataMode::Passive, false, None);
    h.client("PASV");
    assert_eq!(h.acts(), vec![to_server("PASV")]);
    h.server("227 Entering Passive Mode (198,51,100,10,195,80).");
    // No connection of the gateway's own to the server's data port: the
    // client's connection is forwarded there.
    assert_eq!(
        h.acts(),
        vec![forward(
            1,
            Side::Client,
            "100.64.0.2",
            "198.51.100.10:50000",
            false
        )]
    );
    h.prepared(1, Side::Client, "100.64.0.1:40001");
    assert_eq!(
        h.acts(),
        vec![
            Action::Start {
                id: DataId(1),
                client_mode: ClientMode::Pasv,
                server_mode: ServerMode::Passive
            },
            to_client("227 Entering Passive Mode (100,64,0,1,156,65)."),
        ]
    );
    assert!(!h.s.busy());
}

#[test]
fn transparent_passive_is_an_exact_accept_to_the_servers_own_port() {
    let mut h = kernel(ServerDataMode::Passive, true, Some("198.51.100.10"));
    h.client("EPSV");
    assert_eq!(h.acts(), vec![to_server("PASV")]);
    h.server("227 Entering Passive Mode (198,51,100,10,195,80).");
    assert_eq!(
        h.acts(),
        vec![forward(
            1,
            Side::Client,
            "100.64.0.2",
            "198.51.100.10:50000",
            true
        )]
    );
    h.prepared(1, Side::Client, "198.51.100.10:50000");
    assert_eq!(
        h.acts()[1],
        to_client("229 Entering Extended Passive Mode (|||50000|)")
    );
}

#[test]
fn active_both_sides_forwards_the_servers_connection_to_the_client() {
    let mut h = kernel(ServerDataMode::SameAsClient, false, None);
    h.client("PORT 100,64,0,2,23,113");
    assert_eq!(
        h.acts(),
        vec![forward(
            1,
            Side::Server,
            "198.51.100.10",
            "100.64.0.2:6001",
            false
        )]
    );
    h.prepared(1, Side::Server, "198.51.100.1:41001");
    assert_eq!(h.acts(), vec![to_server("PORT 198,51,100,1,160,41")]);
    h.server("200 PORT command successful.");
    // Nothing to prepare towards the client: the kernel delivers there.
    assert_eq!(
        h.acts(),
        vec![
            Action::Start {
                id: DataId(1),
                client_mode: ClientMode::Port,
                server_mode: ServerMode::Active
            },
            to_client("200 PORT command successful."),
        ]
    );
    assert!(!h.s.busy());
}

#[test]
fn a_refused_port_on_a_forwarded_channel_fails_the_setup() {
    let mut h = kernel(ServerDataMode::Active, false, None);
    h.client("EPRT |1|100.64.0.2|6001|");
    h.acts();
    h.prepared(1, Side::Server, "198.51.100.1:41001");
    h.acts();
    h.server("500 no");
    let acts = h.acts();
    assert!(acts.contains(&reset(1, Cancel::Released)), "{acts:?}");
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::ToClient(b) if b.starts_with(b"425 "))),
        "{acts:?}"
    );
}

#[test]
fn conversions_stay_on_the_relay() {
    // Client passive, server active (the seed case).
    let mut h = kernel(ServerDataMode::Active, false, None);
    h.client("PASV");
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
    // Client active, server passive.
    let mut h = kernel(ServerDataMode::Passive, false, None);
    h.client("PORT 100,64,0,2,23,113");
    h.acts();
    h.server("227 Entering Passive Mode (198,51,100,10,195,80).");
    assert_eq!(
        h.acts(),
        vec![prepare(
            1,
            Side::Server,
            Endpoint::Connect {
                to: sa("198.51.100.10:50000"),
                within: ConnectDeadline::Connect,
            }
        )]
    );
}

#[test]
fn auto_relays_until_the_servers_passive_port_has_answered() {
    let mut h = kernel(ServerDataMode::Auto, false, None);
    h.client("PASV");
    h.acts();
    h.server("227 Entering Passive Mode (198,51,100,10,195,80).");
    assert_eq!(
        h.acts(),
        vec![prepare(
            1,
            Side::Server,
            Endpoint::Connect {
                to: sa("198.51.100.10:50000"),
                within: ConnectDeadline::PassiveProbe,
            }
        )]
    );
    h.prepared(1, Side::Server, "198.51.100.1:33000");
    h.acts();
    h.prepared(1, Side::Client, "100.64.0.1:40001");
    h.acts();
    h.client("PASV");
    h.acts();
    h.server("227 Entering Passive Mode (198,51,100,10,195,81).");
    assert_eq!(
        h.acts(),
        vec![forward(
            2,
            Side::Client,
            "100.64.0.2",
            "198.51.100.10:50001",
            false
        )]
    );
}

#[test]
fn auto_after_passive_failed_forwards_active_clients() {
    let mut h = kernel(ServerDataMode::Auto, false, None);
    h.client("PASV");
    h.acts();
    h.server("227 Entering Passive Mode (198,51,100,10,195,80).");
    h.acts();
    h.failed(1, Side::Server, "timed out");
    // A passive client with an active server: a conversion, relayed.
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
    h.failed(1, Side::Server, "gone");
    h.acts();
    // An active client now matches the server's mode: forwarded.
    h.client("PORT 100,64,0,2,23,113");
    assert_eq!(
        h.acts(),
        vec![forward(
            2,
            Side::Server,
            "198.51.100.10",
            "100.64.0.2:6001",
            false
        )]
    );
}

#[test]
fn a_failed_passive_forward_is_relayed_instead() {
    let mut h = kernel(ServerDataMode::Passive, false, None);
    h.client("PASV");
    h.acts();
    h.server("227 Entering Passive Mode (198,51,100,10,195,80).");
    h.acts();
    failed(&mut h, 1, Side::Client);
    let acts = h.drain();
    assert!(has_fallback(&acts), "{acts:?}");
    let acts: Vec<_> = acts
        .into_iter()
        .filter(|a| !matches!(a, Action::Event(_)))
        .collect();
    assert_eq!(
        acts,
        vec![prepare(
            1,
            Side::Server,
            Endpoint::Connect {
                to: sa("198.51.100.10:50000"),
                within: ConnectDeadline::Connect,
            }
        )]
    );
    h.prepared(1, Side::Server, "198.51.100.1:33000");
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
    // A failure of the relay after that is the relay's: 425.
    failed(&mut h, 1, Side::Client);
    let acts = h.acts();
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::ToClient(b) if b.starts_with(b"425 "))),
        "{acts:?}"
    );
}

#[test]
fn a_failed_active_forward_is_relayed_instead() {
    let mut h = kernel(ServerDataMode::SameAsClient, false, None);
    h.client("PORT 100,64,0,2,23,113");
    h.acts();
    failed(&mut h, 1, Side::Server);
    let acts = h.drain();
    assert!(has_fallback(&acts), "{acts:?}");
    assert!(acts.contains(&prepare(
        1,
        Side::Server,
        Endpoint::Listen {
            expect_peer: "198.51.100.10".parse().unwrap()
        }
    )));
    h.prepared(1, Side::Server, "198.51.100.1:41001");
    h.acts();
    h.server("200 PORT command successful.");
    // The relay connects to the client itself.
    assert_eq!(
        h.acts(),
        vec![prepare(
            1,
            Side::Client,
            Endpoint::Connect {
                to: sa("100.64.0.2:6001"),
                within: ConnectDeadline::Connect,
            }
        )]
    );
}

#[test]
fn the_relay_plane_never_asks_for_a_forward() {
    for mode in [ServerDataMode::Passive, ServerDataMode::SameAsClient] {
        let mut h = Rig::new(allow_all(mode));
        h.client("PASV");
        h.server("227 Entering Passive Mode (198,51,100,10,195,80).");
        h.client("PORT 100,64,0,2,23,113");
        let acts = h.drain();
        assert!(
            !acts.iter().any(|a| matches!(
                a,
                Action::Prepare {
                    endpoint: Endpoint::Forward { .. },
                    ..
                }
            )),
            "{acts:?}"
        );
    }
}

#[test]
fn auto_forwards_at_once_for_a_server_known_to_answer_passive() {
    let mut cfg = config();
    cfg.data_plane = DataPlane::Kernel { exact: false };
    cfg.passive_known_alive = true;
    let mut h = Rig::with(cfg, allow_all(ServerDataMode::Auto));
    h.client("EPSV");
    h.acts();
    h.server("229 Entering Extended Passive Mode (|||50000|)");
    assert_eq!(
        h.acts(),
        vec![forward(
            1,
            Side::Client,
            "100.64.0.2",
            "198.51.100.10:50000",
            false
        )]
    );
}

#[test]
fn the_first_answer_of_a_probed_passive_port_is_reported_once() {
    let mut h = kernel(ServerDataMode::Auto, false, None);
    for id in 1..=2 {
        h.client("PORT 100,64,0,2,23,113");
        h.drain();
        h.server("227 Entering Passive Mode (198,51,100,10,195,80).");
        h.drain();
        h.prepared(id, Side::Server, "198.51.100.1:33000");
        let acts = h.drain();
        let answered = acts
            .iter()
            .filter(|a| matches!(a, Action::Event(Event::PassiveAnswered)))
            .count();
        assert_eq!(answered, usize::from(id == 1), "channel {id}: {acts:?}");
    }
}

/// A passive download the kernel forwards, its server at `150`.
fn kernel_download() -> Rig {
    let mut h = kernel(ServerDataMode::Passive, false, None);
    h.client("PASV");
    h.server("227 Entering Passive Mode (198,51,100,10,195,80).");
    h.prepared(1, Side::Client, "100.64.0.1:40001");
    h.client("RETR f");
    h.server("150 Opening");
    h.acts();
    h
}

#[test]
fn a_kernel_transfers_reply_is_not_held_and_it_is_left_to_finish() {
    let mut h = kernel_download();
    // Its bytes never pass the gateway: there is nothing to wait for.
    h.server("226 Done");
    assert_eq!(h.acts(), vec![to_client("226 Done")]);
    assert!(!h.s.holding());
    assert_eq!(h.s.delivered_channels(), vec![DataId(1)]);
    // The next channel's start retires it: left to finish in the kernel.
    h.client("PASV");
    h.server("227 Entering Passive Mode (198,51,100,10,195,81).");
    h.prepared(2, Side::Client, "100.64.0.1:40002");
    let acts = h.acts();
    assert!(
        acts.contains(&Action::Retire {
            id: DataId(1),
            why: Retire::Superseded
        }),
        "{acts:?}"
    );
}

#[test]
fn a_kernel_transfer_that_failed_before_its_reply_is_reported_aborted() {
    let mut h = kernel_download();
    h.ended(1, Err("no connection through the kernel pinhole in time"));
    assert_eq!(h.acts(), vec![]);
    // The kernel's end arms no reply deadline.
    h.later(std::time::Duration::from_secs(5));
    assert_eq!(h.acts(), vec![]);
    h.server("226 Done");
    assert_eq!(
        h.acts(),
        vec![to_client("426 Connection closed; transfer aborted.")]
    );
}

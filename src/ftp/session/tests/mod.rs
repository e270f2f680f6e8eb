use super::*;
use crate::ftp::framer::Frame;
use rig::*;

#[test]
fn pasv_then_227_opens_exactly_one_pinhole() {
    let mut h = Rig::new(allow_all(ServerDataMode::SameAsClient));
    h.client("PASV");
    assert_eq!(h.acts(), vec![to_server("PASV")]);
    assert!(h.s.busy());
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
    h.prepared(1, Side::Client, "100.64.0.1:40001");
    assert_eq!(
        h.acts(),
        vec![
            start(1, ClientMode::Pasv, ServerMode::Passive),
            to_client("227 Entering Passive Mode (100,64,0,1,156,65)."),
        ]
    );
    assert!(!h.s.busy());
    h.client("RETR f");
    assert_eq!(
        h.acts(),
        vec![
            Action::Transfer {
                id: DataId(1),
                verb: cmd::RETR,
                direction: Direction::Download,
                arg: "f".into()
            },
            to_server("RETR f"),
        ]
    );
    h.server("150 Opening");
    assert_eq!(h.acts(), vec![to_client("150 Opening")]);
    h.server("226 Done");
    // Held until the data is delivered; the relay is not cancelled, since
    // the server may finish before the gateway has even accepted its
    // connection.
    assert_eq!(h.acts(), vec![]);
    assert!(h.s.holding());
    h.delivered(1, Ok(()));
    assert_eq!(h.acts(), vec![to_client("226 Done")]);
}

#[test]
fn unsolicited_227_opens_nothing() {
    let mut h = Rig::new(allow_all(ServerDataMode::SameAsClient));
    h.server("227 Entering Passive Mode (198,51,100,10,195,80).");
    let all = h.drain();
    assert!(all
        .iter()
        .all(|a| !matches!(a, Action::Prepare { .. } | Action::Start { .. })));
    assert!(all.contains(&Action::Event(Event::UnsolicitedPassive { code: 227 })));
    // And a 227 as the reply to something else (NOOP) is not honoured either.
    h.client("NOOP");
    h.drain();
    h.server("227 Entering Passive Mode (198,51,100,10,195,80).");
    let all = h.drain();
    assert!(all.iter().all(|a| !matches!(a, Action::Prepare { .. })));
}

#[test]
fn port_naming_another_host_is_refused_and_never_reaches_the_server() {
    let mut h = Rig::new(allow_all(ServerDataMode::SameAsClient));
    h.client("PORT 198,51,100,20,4,1");
    let all = h.drain();
    assert!(all.iter().all(|a| !matches!(a, Action::ToServer(_))));
    assert!(all.iter().any(|a| matches!(
        a,
        Action::Event(Event::Denied {
            reason: Denial::Bounce,
            ..
        })
    )));
    let replies: Vec<_> = all
        .iter()
        .filter_map(|a| match a {
            Action::ToClient(b) => Some(String::from_utf8_lossy(b).to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), 1);
    assert!(
        replies[0].starts_with("500 Illegal PORT command: 198.51.100.20 is not your address"),
        "{}",
        replies[0]
    );
}

#[test]
fn eprt_to_low_port_is_refused() {
    let mut h = Rig::new(allow_all(ServerDataMode::SameAsClient));
    h.client("EPRT |1|100.64.0.2|25|");
    let acts = h.acts();
    assert_eq!(
        acts,
        vec![to_client(
            "504 Illegal EPRT command: port 25 is below 1024."
        )]
    );
}

#[test]
fn bad_port_arguments_get_501() {
    let mut h = Rig::new(allow_all(ServerDataMode::SameAsClient));
    h.client("PORT 100,64,0,256,4,1");
    let acts = h.acts();
    assert!(
        matches!(&acts[..], [Action::ToClient(b)] if b.starts_with(b"501 ")),
        "{acts:?}"
    );
    h.client("EPRT |9|x|1|");
    assert_eq!(
        h.acts(),
        vec![to_client("522 Network protocol not supported, use (1,2)")]
    );
}

#[test]
fn pipelined_commands_keep_their_order() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.client("TYPE I");
    h.client("PASV");
    h.client("RETR a");
    h.client("NOOP");
    // TYPE forwarded, PASV sent, RETR and NOOP held until the data channel is ready.
    assert_eq!(h.acts(), vec![to_server("TYPE I"), to_server("PASV")]);
    h.server("200 Type set");
    assert_eq!(h.acts(), vec![to_client("200 Type set")]);
    h.server("227 (198,51,100,10,4,1)");
    h.acts();
    h.prepared(1, Side::Server, "198.51.100.1:5000");
    h.acts();
    h.prepared(1, Side::Client, "100.64.0.1:5001");
    assert_eq!(
        h.acts(),
        vec![
            start(1, ClientMode::Pasv, ServerMode::Passive),
            to_client("227 Entering Passive Mode (100,64,0,1,19,137)."),
            Action::Transfer {
                id: DataId(1),
                verb: cmd::RETR,
                direction: Direction::Download,
                arg: "a".into()
            },
            to_server("RETR a"),
            to_server("NOOP"),
        ]
    );
}

#[test]
fn epsv_all_refuses_other_data_commands() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.client("EPSV ALL");
    assert_eq!(h.acts(), vec![to_client("200 EPSV ALL ok.")]);
    for c in ["PASV", "PORT 100,64,0,2,4,1", "EPRT |1|100.64.0.2|2000|"] {
        h.client(c);
        assert_eq!(
            h.acts(),
            vec![to_client(
                "503 EPSV ALL is in effect; only EPSV may be used."
            )],
            "{c}"
        );
    }
    h.client("EPSV");
    assert_eq!(h.acts(), vec![to_server("PASV")]);
}

#[test]
fn local_replies_wait_for_earlier_replies() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.client("NOOP");
    h.client("PORT 1,2,3,4,5,6");
    h.client("EPSV ALL");
    assert_eq!(h.acts(), vec![to_server("NOOP")]);
    h.server("200 NOOP ok");
    let acts = h.acts();
    assert_eq!(acts.len(), 3, "{acts:?}");
    assert_eq!(acts[0], to_client("200 NOOP ok"));
    assert!(matches!(&acts[1], Action::ToClient(b) if b.starts_with(b"500 Illegal PORT")));
    assert_eq!(acts[2], to_client("200 EPSV ALL ok."));
}

#[test]
fn multi_line_replies_pass_through_line_by_line() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.client("FEAT");
    h.acts();
    h.server("211-Features:");
    h.server(" EPSV");
    h.server("211 End");
    assert_eq!(
        h.acts(),
        vec![
            to_client("211-Features:"),
            to_client(" EPSV"),
            to_client("211 End")
        ]
    );
}

#[test]
fn auth_tls_refused_by_default() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.client("AUTH TLS");
    let acts = h.acts();
    assert!(matches!(&acts[..], [Action::ToClient(b)] if b.starts_with(b"534 ")));
}

#[test]
fn auth_tls_passthrough_goes_opaque_after_234() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.policy.tls = TlsPolicy::Passthrough;
    h.client("AUTH TLS");
    assert_eq!(h.acts(), vec![to_server("AUTH TLS")]);
    h.server("234 Proceed");
    assert_eq!(h.acts(), vec![to_client("234 Proceed"), Action::Opaque]);
    assert_eq!(h.s.phase(), &Phase::Opaque);
}

#[test]
fn long_lines_and_garbage_get_500() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.s.on_client(
        Frame::TooLong {
            prefix: vec![b'A'; 2047],
        },
        &h.policy,
    );
    assert_eq!(h.acts(), vec![to_client("500 Command line too long.")]);
    h.client("RE\0TR x");
    assert_eq!(
        h.acts(),
        vec![to_client("500 Syntax error, command unrecognized.")]
    );
}

#[test]
fn garbage_from_the_server_passes_through() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.server("hello there");
    let all = h.drain();
    assert!(all.contains(&to_client("hello there")));
    assert!(all.iter().any(|a| matches!(
        a,
        Action::Event(Event::Unparsed {
            from: Side::Server,
            ..
        })
    )));
}

#[test]
fn policy_denial_names_the_rule() {
    struct DenyDele;
    impl Policy for DenyDele {
        fn check_command(&self, ctx: &CommandContext<'_>) -> Verdict {
            if ctx.verb == cmd::DELE {
                Verdict::Deny {
                    code: 550,
                    text: "Read-only.".into(),
                    rule: "read-only".into(),
                }
            } else {
                Verdict::Allow
            }
        }
        fn server_mode(&self, _: IpAddr, _: SocketAddr) -> ServerDataMode {
            ServerDataMode::Passive
        }
        fn tls(&self) -> TlsPolicy {
            TlsPolicy::Refuse
        }
    }
    let mut r = Rig::open(config(), DenyDele);
    r.client("DELE x");
    let acts = r.drain();
    assert!(acts.contains(&Action::Event(Event::Denied {
        reason: Denial::Rule("read-only".into()),
        detail: "DELE by rule read-only".into(),
        file: Some("x".into()),
    })));
    // The greeting is still owed, so the denial waits behind it.
    assert!(!acts.iter().any(|a| matches!(a, Action::ToClient(_))));
    r.server("220 hi");
    assert_eq!(
        r.drain(),
        vec![to_client("220 hi"), to_client("550 Read-only.")]
    );
}

#[test]
fn ipv6_client_gets_epsv_and_server_v6_gets_eprt() {
    let cfg = SessionConfig::new(
        sa("[2001:db8:1::2]:40000"),
        Upstream::Fixed(sa("[2001:db8:2::10]:21")),
    );
    let mut r = Rig::with(cfg, allow_all(ServerDataMode::Active));
    r.client("PASV");
    let acts = r.acts();
    assert!(
        matches!(&acts[..], [Action::ToClient(b)] if b.starts_with(b"425 ")),
        "{acts:?}"
    );
    r.client("EPSV");
    r.prepared(1, Side::Server, "[2001:db8:2::1]:40100");
    let acts = r.drain();
    assert!(
        acts.contains(&to_server("EPRT |2|2001:db8:2::1|40100|")),
        "{acts:?}"
    );
}

#[test]
fn v4_client_to_v6_server_uses_epsv_upstream_and_227_downstream() {
    let cfg = SessionConfig::new(sa(CLIENT), Upstream::Fixed(sa("[2001:db8:2::10]:21")));
    let mut r = Rig::with(cfg, allow_all(ServerDataMode::SameAsClient));
    r.client("PASV");
    assert!(r.drain().contains(&to_server("EPSV")));
    r.server("229 Entering Extended Passive Mode (|||50000|)");
    assert!(r.drain().contains(&prepare(
        1,
        Side::Server,
        Endpoint::Connect {
            to: sa("[2001:db8:2::10]:50000"),
            within: ConnectDeadline::Connect,
        }
    )));
}

#[test]
fn failed_transfer_releases_at_once() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.pasv_prepared();
    h.client("RETR missing");
    h.acts();
    h.server("550 No such file");
    assert_eq!(
        h.acts(),
        vec![to_client("550 No such file"), reset(1, Cancel::Released)]
    );
}

#[test]
fn too_many_held_lines_close_the_session() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.client("PASV");
    for _ in 0..64 {
        h.client("NOOP");
    }
    h.acts();
    h.client("NOOP");
    let acts = h.acts();
    assert!(acts.contains(&Action::Close));
}

#[test]
fn quit_closes_after_221() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.client("QUIT");
    h.server("221 Bye");
    assert_eq!(
        h.acts(),
        vec![to_server("QUIT"), to_client("221 Bye"), Action::Close]
    );
}

mod abort;
mod bounds;
mod conversion;
mod driver;
mod held;
mod identity;
mod ipv6;
mod kernel;
mod passive_replies;
mod rig;
mod route;
mod secrets;
mod telnet;
mod timers;

#[test]
fn the_engine_names_each_transfers_direction() {
    for (line, verb, direction) in [
        ("RETR f", cmd::RETR, Direction::Download),
        ("STOR f", cmd::STOR, Direction::Upload),
        ("STOU", cmd::STOU, Direction::Upload),
        ("APPE f", cmd::APPE, Direction::Upload),
        ("LIST", cmd::LIST, Direction::Listing),
        ("NLST", cmd::NLST, Direction::Listing),
        ("MLSD", cmd::MLSD, Direction::Listing),
    ] {
        let mut h = Rig::new(allow_all(ServerDataMode::Passive));
        h.pasv_prepared();
        h.client(line);
        let transfer = h
            .acts()
            .into_iter()
            .find(|a| matches!(a, Action::Transfer { .. }));
        assert_eq!(
            transfer,
            Some(Action::Transfer {
                id: DataId(1),
                verb,
                direction,
                arg: line.split_once(' ').map_or("", |(_, a)| a).into(),
            }),
            "{line}"
        );
    }
    assert_eq!(Direction::of(cmd::USER), None);
    assert_eq!(Direction::Upload.as_str(), "upload");
}

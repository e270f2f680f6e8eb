//! The kernel data path against this machine's kernel, in namespaces the
//! tests create: pinholes admit exactly the expected peer, once, before
//! their deadline, through a gateway whose forward policy drops all else.
//! Run as root (`cargo test --test kernel_pinholes`).

mod kernel;

use ftpalg::dataplane::kernel::{FailReason, FlowEvent, KernelConfig, KernelError, KernelTable};
use ftpalg::dataplane::{ClientAddr, GatewayAddr, PeerIp, PinholeFlow, ServerAddr, SourceNat};
use kernel::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn passive_pinhole_admits_the_peer_once_and_counts_its_bytes() {
    let Some(mut g) = Gateway::new("a") else {
        return;
    };
    let srv = g.serve(sa(SERVER, 5000), 200_000);
    let gw = sa(GW_IN, 40000);
    let id = g.add(&passive(gw, 5000, Duration::from_secs(5)));
    let listing = g.set("pin4");
    assert!(
        listing.contains("100.64.0.2 . 100.64.0.1 . 40000"),
        "{listing}"
    );

    // A stranger on the client's LAN gets nothing, not even a reset...
    assert_eq!(g.probe(sa(STRANGER, 0), gw), Outcome::TimedOut);
    // ...and has not used up the pinhole: the expected peer goes through.
    assert_eq!(
        g.dial(sa(CLIENT, 0), gw, 100_000),
        Outcome::Transferred(200_000)
    );
    // Once only: the same peer's second connection is dropped.
    assert_eq!(g.probe(sa(CLIENT, 0), gw), Outcome::TimedOut);

    let seen = srv.finish();
    assert_eq!(
        seen.len(),
        1,
        "exactly one connection reached the server: {seen:?}"
    );
    assert_eq!(
        seen[0].peer.ip().to_string(),
        GW_OUT,
        "source NAT to the gateway's outside address"
    );
    assert_eq!(seen[0].received, 100_000);

    let evs = g.events(id, Duration::from_secs(5));
    assert!(
        matches!(evs.first(), Some(FlowEvent::Established { dialer }) if dialer.ip().to_string() == CLIENT),
        "{evs:?}"
    );
    match evs.last() {
        Some(FlowEvent::Finished { counts, .. }) => {
            assert!(
                counts.from_dialer >= 100_000 && counts.from_dialer < 120_000,
                "{counts:?}"
            );
            assert!(
                counts.to_dialer >= 200_000 && counts.to_dialer < 230_000,
                "{counts:?}"
            );
        }
        other => panic!("expected Finished, got {other:?} in {evs:?}"),
    }
    assert_eq!(g.dp.live(), 0);
    g.close();
}

#[test]
fn active_pinhole_over_ipv6_forwards_the_server_to_the_client() {
    let Some(mut g) = Gateway::new("b") else {
        return;
    };
    let cli = g.serve(sa(CLIENT6, 6000), 50_000);
    let gw = sa(GW_OUT6, 40001);
    let id = g.add(&PinholeFlow::active(
        PeerIp::new(SERVER6.parse().unwrap()),
        GatewayAddr::new(gw),
        ClientAddr::new(sa(CLIENT6, 6000)),
        None,
        Duration::from_secs(5),
    ));
    // Another host on the server's side: the gateway's own other address
    // stands in for it here (it is not the expected peer).
    assert_eq!(
        g.probe(sa(SERVER6, 0), sa(GW_OUT6, 40002)),
        Outcome::Refused,
        "no pinhole there: a plain reset"
    );
    assert_eq!(
        g.dial(sa(SERVER6, 20), gw, 70_000),
        Outcome::Transferred(50_000)
    );
    assert_eq!(
        g.probe(sa(SERVER6, 0), gw),
        Outcome::TimedOut,
        "second connection"
    );
    let seen = cli.finish();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].peer,
        sa(SERVER6, 20),
        "no source NAT in active mode: the client sees the server"
    );
    let evs = g.events(id, Duration::from_secs(5));
    assert!(
        matches!(evs.last(), Some(FlowEvent::Finished { counts, .. }) if counts.from_dialer >= 70_000 && counts.to_dialer >= 50_000),
        "{evs:?}"
    );
}

#[test]
fn expired_pinhole_admits_nothing_and_reports_expiry() {
    let Some(mut g) = Gateway::new("c") else {
        return;
    };
    let srv = g.serve(sa(SERVER, 5000), 10);
    let gw = sa(GW_IN, 40000);
    let id = g.add(&passive(gw, 5000, Duration::from_millis(300)));
    std::thread::sleep(Duration::from_millis(600));
    let out = g.probe(sa(CLIENT, 0), gw);
    assert!(
        matches!(out, Outcome::TimedOut | Outcome::Refused),
        "{out:?}"
    );
    assert!(srv.finish().is_empty(), "nothing reached the server");
    let evs = g.events(id, Duration::from_secs(3));
    assert_eq!(evs, vec![FlowEvent::Expired]);
    assert_eq!(g.dp.live(), 0);
}

#[test]
fn relay_pinhole_admits_only_the_peer_to_the_gateways_listener() {
    let Some(mut g) = Gateway::new("d") else {
        return;
    };
    let at = sa(GW_IN, 40010);
    let listener = g.serve(at, 1000);
    let id = g.add(&relay(CLIENT, at, Duration::from_secs(5)));
    assert_eq!(
        g.probe(sa(STRANGER, 0), at),
        Outcome::TimedOut,
        "stranger dropped in the kernel"
    );
    assert_eq!(g.dial(sa(CLIENT, 0), at, 10), Outcome::Transferred(1000));
    let seen = listener.finish();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].peer.ip().to_string(),
        CLIENT,
        "no NAT on a relay pinhole"
    );
    let evs = g.events(id, Duration::from_secs(5));
    assert!(
        matches!(evs.last(), Some(FlowEvent::Finished { .. })),
        "{evs:?}"
    );
}

#[test]
fn stale_table_is_replaced_and_other_tables_are_untouched() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("e");
    // What a killed ftpalg without an owner-bound table would leave.
    let (ok, out) = lab.nft("'add table inet ftpalg_data; add chain inet ftpalg_data stale { type filter hook forward priority 0; policy drop; }'");
    assert!(ok, "{out}");
    let g = Gateway::open(lab, config());
    assert!(g.report.replaced_stale);
    let table = g.table();
    assert!(!table.contains("stale"), "{table}");
    for chain in [
        "chain dnat",
        "chain snat",
        "chain guard",
        "set pin4",
        "map fwd6",
    ] {
        assert!(table.contains(chain), "{chain} missing:\n{table}");
    }
    assert!(
        g.lab.tables().contains("table inet knop"),
        "the operator's table stays"
    );
    let tables = g.close().tables();
    assert!(tables.contains("knop"), "{tables}");
}

#[test]
fn nothing_remains_after_drop_or_after_the_process_socket_closes() {
    let Some(mut g) = Gateway::new("f") else {
        return;
    };
    g.add(&relay(CLIENT, sa(GW_IN, 40010), Duration::from_secs(30)));
    assert!(g.lab.tables().contains("ftpalg_data"));
    let Gateway { dp, lab, .. } = g;
    drop(dp);
    assert!(!lab.tables().contains("ftpalg_data"), "{}", lab.tables());

    // Owner-bound: a second instance cannot take the table over while the
    // first lives...
    let g = Gateway::open(lab, config());
    let second = in_ns(&g.lab.gw, || KernelTable::open(config()));
    assert!(
        matches!(second, Err(KernelError::TableBusy { .. })),
        "{second:?}"
    );
    let Gateway { dp, lab, .. } = g;
    drop(dp);

    // ...and when the process holding it is killed (no chance to send a
    // delete), the kernel removes the table with its socket.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hold_table_until_killed",
            "--ignored",
            "--test-threads=1",
        ])
        .env(HOLD_ENV, &lab.gw)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while !lab.tables().contains("ftpalg_data") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let listing = lab.tables();
    let _ = try_run(&["kill", "-9", &child.id().to_string()]);
    let _ = child.wait();
    assert!(
        listing.contains("ftpalg_data"),
        "the child opened the table: {listing}"
    );
    assert!(!lab.tables().contains("ftpalg_data"), "{}", lab.tables());
}

const HOLD_ENV: &str = "FTPALG_KERNEL_TEST_HOLD_IN";

/// Not a test on its own: the test above runs it in a child process and
/// kills it.
#[test]
#[ignore = "helper: run in a child process by nothing_remains_after_drop_or_after_the_process_socket_closes"]
fn hold_table_until_killed() {
    let ns = std::env::var(HOLD_ENV).expect("run by the parent test only");
    let (dp, _) = in_ns(&ns, || KernelTable::open(config())).unwrap();
    // Bounded: the parent kills this long before.
    std::thread::sleep(Duration::from_secs(20));
    drop(dp);
}

#[test]
fn a_table_deleted_by_someone_else_is_recreated_and_its_pinholes_fail() {
    let config = KernelConfig {
        owner: false,
        ..config()
    };
    let Some(mut g) = Gateway::with("g", config) else {
        return;
    };
    let gone = g.add(&relay(CLIENT, sa(GW_IN, 40010), Duration::from_secs(30)));
    let (ok, out) = g.lab.nft("delete table inet ftpalg_data");
    assert!(ok, "{out}");
    // The next add notices, recreates the table and succeeds.
    let next =
        g.dp.add(&relay(CLIENT, sa(GW_IN, 40011), Duration::from_secs(30)))
            .expect("add after the table was deleted");
    let listing = g.set("pin4");
    assert!(
        listing.contains("40011") && !listing.contains("40010"),
        "{listing}"
    );
    let evs = g.dp.poll().unwrap();
    assert_eq!(evs, vec![(gone, FlowEvent::Failed(FailReason::TableLost))]);
    assert_eq!(g.dp.live(), 1);

    // A flush (rules and elements gone, table kept) is found by poll.
    let (ok, out) = g.lab.nft("flush table inet ftpalg_data");
    assert!(ok, "{out}");
    let evs = g.dp.poll().unwrap();
    assert_eq!(evs, vec![(next, FlowEvent::Failed(FailReason::TableLost))]);
    let table = g.table();
    for rule in [
        "@pin4 add @spent4",
        "add @spent6",
        "map @snat4",
        "map @snat6",
        "@guard4",
        "@guard6",
    ] {
        assert!(
            table.contains(rule),
            "rule with {rule} not restored:\n{table}"
        );
    }
    g.close();
}

#[test]
fn a_full_set_is_a_typed_error_and_leaves_nothing_half_added() {
    let config = KernelConfig {
        max_pinholes: 2,
        ..config()
    };
    let Some(mut g) = Gateway::with("h", config) else {
        return;
    };
    let at = |port| passive(sa(GW_IN, port), 5000, Duration::from_secs(30));
    g.add(&at(40000));
    g.add(&at(40001));
    let third = g.dp.add(&at(40002));
    assert!(
        matches!(third, Err(KernelError::Full { max: 2 })),
        "{third:?}"
    );
    for set in ["pin4", "fwd4", "snat4", "guard4"] {
        let listing = g.set(set);
        assert!(
            !listing.contains("40002"),
            "{set} kept part of the refused pinhole:\n{listing}"
        );
    }
    assert!(matches!(
        g.dp.add(&at(40000)),
        Err(KernelError::PortInUse(_))
    ));
    let mixed = relay(CLIENT6, sa(GW_IN, 40003), Duration::from_secs(1));
    assert!(matches!(g.dp.add(&mixed), Err(KernelError::MixedFamilies)));
    assert_eq!(g.dp.live(), 2);
}

#[test]
fn abort_resets_both_ends_of_a_forwarded_connection() {
    let Some(mut g) = Gateway::new("i") else {
        return;
    };
    // A download: the server sends for as long as it can, the client reads.
    let server = spawn_in(&g.lab.srv, || {
        let l = std::net::TcpListener::bind(sa(SERVER, 5000)).unwrap();
        let (s, _) = l.accept().unwrap();
        until_error(s, true, Duration::from_secs(8), None)
    });
    std::thread::sleep(Duration::from_millis(200));
    let gw = sa(GW_IN, 40000);
    let id = g.add(&passive(gw, 5000, Duration::from_secs(5)));
    let close = Arc::new(AtomicBool::new(false));
    let client_close = close.clone();
    let client = spawn_in(&g.lab.cli, move || {
        let s = std::net::TcpStream::connect_timeout(&gw, Duration::from_secs(3)).expect("connect");
        until_error(s, false, Duration::from_secs(8), Some(client_close))
    });
    // The transfer runs; no poll has seen it yet (the abort must find its
    // connection all the same).
    std::thread::sleep(Duration::from_millis(600));
    let cut_at = Instant::now();
    assert!(
        g.dp.abort(id).expect("abort"),
        "there was a connection to cut"
    );
    // The client hears of the abort (the 426) a moment later and closes
    // its end, if its ACKs have not met the reset already.
    std::thread::sleep(Duration::from_millis(300));
    close.store(true, Ordering::SeqCst);
    let (server, client) = (server.join().unwrap(), client.join().unwrap());
    assert!(
        client.moved > 0,
        "the transfer ran before the cut: {client:?}"
    );
    // Each end is reset at its next packet (the server's next segment,
    // the client's ACKs or its FIN), not left to time out behind a silent
    // drop; a clean end would report a cut transfer complete.
    for (who, end) in [("server", &server), ("client", &client)] {
        assert!(
            matches!(
                end.error,
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "{who} saw {end:?}, not a reset"
        );
        let after = end.at.saturating_duration_since(cut_at);
        assert!(
            after < Duration::from_secs(2),
            "{who} reset {after:?} after the cut"
        );
    }
    assert_eq!(g.dp.live(), 0);
    // The connection stays cut: nothing of it passes the operator's
    // accept line any more, and its mark is the cut one.
    let (_, chain) = g.lab.nft("list chain inet ftpalg_data cut");
    assert!(chain.contains("reject with tcp reset"), "{chain}");
    g.close();
}

#[test]
fn a_removed_pinhole_admits_nothing_and_leaves_no_element() {
    let Some(mut g) = Gateway::new("j") else {
        return;
    };
    let srv = g.serve(sa(SERVER, 5000), 10);
    let gw = sa(GW_IN, 40000);
    let id = g.add(&passive(gw, 5000, Duration::from_secs(30)));
    let before = g.table();
    let elements = |t: &str| {
        t.lines()
            .filter(|l| l.trim_start().starts_with("elements") && l.contains("40000"))
            .count()
    };
    assert_eq!(
        elements(&before),
        5,
        "pin, spent, fwd, snat, guard:\n{before}"
    );
    g.dp.remove(id).expect("remove");
    g.dp.remove(id).expect("removing twice is not an error");
    let after = g.table();
    assert_eq!(elements(&after), 0, "{after}");
    let out = g.probe(sa(CLIENT, 0), gw);
    assert!(
        matches!(out, Outcome::TimedOut | Outcome::Refused),
        "{out:?}"
    );
    assert!(srv.finish().is_empty());
    assert_eq!(
        g.dp.poll().unwrap(),
        vec![],
        "a removed pinhole reports nothing"
    );
}

#[test]
fn passive_pinhole_over_ipv6_leaves_from_the_outside_address() {
    let Some(mut g) = Gateway::new("k") else {
        return;
    };
    let srv = g.serve(sa(SERVER6, 5000), 30_000);
    let gw = sa(GW_IN6, 40000);
    let id = g.add(&PinholeFlow::passive(
        PeerIp::new(CLIENT6.parse().unwrap()),
        GatewayAddr::new(gw),
        ServerAddr::new(sa(SERVER6, 5000)),
        Some(SourceNat::new(GW_OUT6.parse().unwrap())),
        Duration::from_secs(5),
    ));
    assert_eq!(g.probe(sa(STRANGER6, 0), gw), Outcome::TimedOut);
    assert_eq!(
        g.dial(sa(CLIENT6, 0), gw, 1000),
        Outcome::Transferred(30_000)
    );
    let seen = srv.finish();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].peer.ip().to_string(), GW_OUT6);
    let evs = g.events(id, Duration::from_secs(5));
    assert!(
        matches!(evs.last(), Some(FlowEvent::Finished { counts, .. }) if counts.to_dialer >= 30_000),
        "{evs:?}"
    );
}

#[test]
fn transparent_pinhole_admits_the_peer_to_the_servers_own_address() {
    let Some(mut g) = Gateway::new("m") else {
        return;
    };
    let to = sa(SERVER, 5000);
    let srv = g.serve(to, 100);
    // Without a pinhole the operator's forward policy drops the client.
    assert_eq!(g.probe(sa(CLIENT, 0), to), Outcome::TimedOut);
    g.add(&relay(CLIENT, to, Duration::from_secs(5)));
    assert_eq!(g.probe(sa(STRANGER, 0), to), Outcome::TimedOut, "stranger");
    assert_eq!(g.dial(sa(CLIENT, 0), to, 10), Outcome::Transferred(100));
    assert_eq!(
        g.probe(sa(CLIENT, 0), to),
        Outcome::TimedOut,
        "second connection"
    );
    let seen = srv.finish();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].peer.ip().to_string(),
        CLIENT,
        "no NAT: the server sees the client"
    );
}

#[test]
fn a_target_that_refuses_is_reported_as_failed() {
    let Some(mut g) = Gateway::new("n") else {
        return;
    };
    let gw = sa(GW_IN, 40000);
    // Nothing listens on the server's port 5999.
    let id = g.add(&passive(gw, 5999, Duration::from_secs(5)));
    assert_eq!(
        g.dial(sa(CLIENT, 0), gw, 10),
        Outcome::Refused,
        "the server's reset comes back"
    );
    let evs = g.events(id, Duration::from_secs(5));
    assert_eq!(evs, vec![FlowEvent::Failed(FailReason::NotEstablished)]);
}

/// Regression: a used pinhole must give its room in the sets back as soon
/// as it is withdrawn. The pin element used to be deleted in the packet
/// path, where the kernel only marks it dead: dead elements count against
/// the set's size until its garbage collector runs, and that gives up
/// whenever a transaction lands meanwhile, so at a steady rate of transfers
/// the sets filled and every new pinhole was refused as "full".
#[test]
fn used_pinholes_give_their_room_back_at_once() {
    let config = KernelConfig {
        max_pinholes: 2,
        ..config()
    };
    let Some(mut g) = Gateway::with("o", config) else {
        return;
    };
    let srv = server(&g.lab.srv, sa(SERVER, 5000), 100, Duration::from_secs(20));
    // Many times the sets' size, one after another, as fast as they go.
    for i in 0..12u16 {
        let gw = sa(GW_IN, 40000 + i);
        let id =
            g.dp.add(&passive(gw, 5000, Duration::from_secs(30)))
                .unwrap_or_else(|e| panic!("pinhole {i} refused: {e}"));
        assert_eq!(
            g.dial(sa(CLIENT, 0), gw, 10),
            Outcome::Transferred(100),
            "transfer {i}"
        );
        // Withdrawn as a channel's end withdraws it, used or not yet seen.
        if i % 2 == 0 {
            let evs = g.events(id, Duration::from_secs(5));
            assert!(
                matches!(evs.last(), Some(FlowEvent::Finished { .. })),
                "transfer {i}: {evs:?}"
            );
        } else {
            g.dp.remove(id).expect("remove");
        }
    }
    assert_eq!(srv.finish().len(), 12);
    let table = g.table();
    assert!(
        !table.contains("elements"),
        "every element went with its pinhole:\n{table}"
    );
    g.close();
}

/// Regression: a server may hand out the same passive port again as soon
/// as its last transfer there has ended (pure-ftpd does), and in
/// transparent mode that port is the pinhole's address. A pinhole whose
/// connection has closed, but which no poll has seen end yet, must give
/// the address up to the next one rather than refuse it.
#[test]
fn an_ended_pinhole_gives_its_address_to_the_next_at_once() {
    let Some(mut g) = Gateway::new("p") else {
        return;
    };
    let srv = server(&g.lab.srv, sa(SERVER, 5000), 100, Duration::from_secs(10));
    let gw = sa(GW_IN, 40000);
    let first = g.add(&passive(gw, 5000, Duration::from_secs(30)));
    assert_eq!(g.dial(sa(CLIENT, 0), gw, 10), Outcome::Transferred(100));
    // No poll in between: the first pinhole is still live in the backend.
    let second =
        g.dp.add(&passive(gw, 5000, Duration::from_secs(30)))
            .expect("the same address again once its connection has ended");
    assert_ne!(first, second);
    assert_eq!(
        g.dial(sa(CLIENT, 0), gw, 10),
        Outcome::Transferred(100),
        "the new pinhole admits its own connection"
    );
    // The first one's end is reported, once, with its bytes.
    let evs = g.events(first, Duration::from_secs(5));
    assert!(
        matches!(evs.last(), Some(FlowEvent::Finished { counts, .. }) if counts.to_dialer >= 100),
        "{evs:?}"
    );
    // A pinhole whose connection is still open keeps its address.
    let third = sa(GW_IN, 40001);
    g.add(&passive(third, 5000, Duration::from_secs(30)));
    let held = spawn_in(&g.lab.cli, move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&sa(CLIENT, 0).into()).unwrap();
        s.connect_timeout(&third.into(), Duration::from_secs(3))
            .unwrap();
        std::thread::sleep(Duration::from_millis(600));
        s
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(matches!(
        g.dp.add(&passive(third, 5000, Duration::from_secs(30))),
        Err(KernelError::PortInUse(_))
    ));
    drop(held.join().unwrap());
    assert_eq!(srv.finish().len(), 3);
    g.close();
}

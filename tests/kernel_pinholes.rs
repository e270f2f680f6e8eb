//! The kernel data path against this machine's kernel, in namespaces the
//! tests create: pinholes admit exactly the expected peer, once, before
//! their deadline, through a gateway whose forward policy drops all else,
//! and report what their connection did. The table's own life is in
//! `kernel_table.rs`, withdrawing pinholes in `kernel_withdraw.rs`.
//! Run as root (`cargo test --test kernel_pinholes`).

mod kernel;

use ftpalg::dataplane::kernel::{FailReason, FlowEvent};
use ftpalg::dataplane::{ClientAddr, GatewayAddr, PeerIp, PinholeFlow, ServerAddr, SourceNat};
use kernel::*;
use std::time::Duration;

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

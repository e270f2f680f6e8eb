//! A session's pinholes in the kernel, keyed by session as well as by
//! pinhole: ending a session lets go of everything it holds in one call,
//! each pinhole as the terms it was added under say, and nothing of
//! another session. Run as root (`cargo test --test kernel_sessions`).

mod kernel;

use ftpalg::dataplane::kernel::{FlowEvent, Owner, Terms, Withdraw};
use kernel::*;
use std::time::{Duration, Instant};

/// How long the pinholes here wait for their connection.
const PINHOLE: Duration = Duration::from_secs(30);

/// Terms of a pinhole held by `session`'s channel `channel`.
fn held(session: u64, channel: u64, release: Withdraw) -> Terms {
    Terms {
        owner: Some(Owner { session, channel }),
        idle: None,
        release,
    }
}

/// The lines of `table` that list elements on gateway port `port`.
fn elements_on(table: &str, port: u16) -> usize {
    table
        .lines()
        .filter(|l| l.trim_start().starts_with("elements") && l.contains(&port.to_string()))
        .count()
}

#[test]
fn ending_a_session_releases_everything_it_holds_in_one_call() {
    let Some(mut g) = Gateway::new("w") else {
        return;
    };
    // A server per transfer: each serves one connection at a time, and a
    // cut one holds it until its read times out.
    let srv = |port| server(&g.lab.srv, sa(SERVER, port), 10, Duration::from_secs(15));
    let (srv_left, srv_running, srv_other) = (srv(5000), srv(5001), srv(5002));
    let relay_at = sa(GW_IN, 40010);
    let listener = g.serve(relay_at, 10);
    // Session 1: a transfer the server reported complete (left to finish),
    // a transfer still running (cut), a pinhole nobody used yet, and a
    // filter in front of a relay listener (its connection is the relay's).
    let left =
        g.dp.add_with(
            &passive(sa(GW_IN, 40000), 5000, PINHOLE),
            held(1, 1, Withdraw::Cut),
        )
        .expect("add");
    let running =
        g.dp.add_with(
            &passive(sa(GW_IN, 40001), 5001, PINHOLE),
            held(1, 2, Withdraw::Cut),
        )
        .expect("add");
    let unused =
        g.dp.add_with(
            &passive(sa(GW_IN, 40002), 5000, PINHOLE),
            held(1, 3, Withdraw::Cut),
        )
        .expect("add");
    let filter =
        g.dp.add_with(
            &relay(CLIENT, relay_at, PINHOLE),
            held(1, 4, Withdraw::Forget),
        )
        .expect("add");
    // Session 2 holds one of its own.
    let other =
        g.dp.add_with(
            &passive(sa(GW_IN, 40003), 5002, PINHOLE),
            held(2, 1, Withdraw::Cut),
        )
        .expect("add");

    let (go_left, left_client) = slow_client(&g.lab, sa(GW_IN, 40000));
    let (go_running, running_client) = slow_client(&g.lab, sa(GW_IN, 40001));
    let (go_relay, relay_client) = slow_client(&g.lab, relay_at);
    let mut waiting = vec![left, running, filter];
    let end = Instant::now() + Duration::from_secs(3);
    while !waiting.is_empty() && Instant::now() < end {
        for (id, ev) in g.dp.poll().expect("poll") {
            if matches!(ev, FlowEvent::Established { .. }) {
                waiting.retain(|w| *w != id);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(waiting.is_empty(), "never established: {waiting:?}");
    g.dp.leave(left);
    // A connection someone else ends stays someone else's.
    g.dp.leave(filter);
    assert_eq!(g.dp.pinholes_of(1), vec![left, running, unused, filter]);

    // One call.
    assert_eq!(g.dp.release_session(1), vec![left, running, unused, filter]);

    assert!(g.dp.pinholes_of(1).is_empty());
    assert_eq!(g.dp.pinholes_of(2), vec![other]);
    let table = g.table();
    for port in [40000, 40001, 40002, 40010] {
        assert_eq!(elements_on(&table, port), 0, "port {port}:\n{table}");
    }
    assert_eq!(elements_on(&table, 40003), 5, "session 2's:\n{table}");
    // Followed still: the transfer left to finish, and session 2's pinhole.
    assert_eq!(g.dp.live(), 2);

    // The transfer left to finish and the relay's connection go on; the
    // running one was cut; the unused pinhole admits nothing; session 2's
    // admits its peer.
    for go in [&go_left, &go_running, &go_relay] {
        let _ = go.send(());
    }
    drop((go_left, go_running, go_relay));
    assert!(left_client.join().unwrap(), "the transfer left to finish");
    assert!(relay_client.join().unwrap(), "the relay's connection");
    assert!(!running_client.join().unwrap(), "the running transfer");
    let out = g.probe(sa(CLIENT, 0), sa(GW_IN, 40002));
    assert!(
        matches!(out, Outcome::TimedOut | Outcome::Refused),
        "{out:?}"
    );
    assert_eq!(
        g.dial(sa(CLIENT, 0), sa(GW_IN, 40003), 10),
        Outcome::Transferred(10)
    );
    let seen = srv_left.finish();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].received, 200,
        "every byte after the release: {seen:?}"
    );
    assert_eq!(srv_running.finish().len(), 1);
    assert_eq!(srv_other.finish().len(), 1);
    assert_eq!(listener.finish().len(), 1);
    g.close();
}

#[test]
fn a_pinhole_released_alone_is_not_released_again_with_its_session() {
    let Some(mut g) = Gateway::new("x") else {
        return;
    };
    let a =
        g.dp.add_with(
            &passive(sa(GW_IN, 40000), 5000, PINHOLE),
            held(7, 1, Withdraw::Cut),
        )
        .expect("add");
    let b =
        g.dp.add_with(
            &passive(sa(GW_IN, 40001), 5000, PINHOLE),
            held(7, 2, Withdraw::Cut),
        )
        .expect("add");
    // One channel closes before the session ends: released on its own.
    g.dp.release(a).expect("release");
    assert_eq!(g.dp.pinholes_of(7), vec![b]);
    assert_eq!(g.dp.release_session(7), vec![b]);
    assert_eq!(g.dp.release_session(7), vec![], "nothing is released twice");
    assert_eq!(g.dp.live(), 0);
    let table = g.table();
    assert!(!table.contains("elements"), "{table}");
    g.close();
}

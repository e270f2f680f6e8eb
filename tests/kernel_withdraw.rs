//! Withdrawing kernel pinholes against this machine's kernel: a cut
//! resets both ends of the connection, a removed pinhole admits nothing
//! and leaves no element, and a spent or ended one gives its room and its
//! address back at once. Run as root (`cargo test --test kernel_withdraw`).

mod kernel;

use ftpalg::dataplane::kernel::{FlowEvent, KernelConfig, KernelError};
use kernel::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

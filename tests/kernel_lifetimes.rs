//! How long a kernel-forwarded connection lives, against this machine's
//! kernel: followed after its session lets go of it, cut when it idles past
//! its bound, ended when the table goes. Run as root
//! (`cargo test --test kernel_lifetimes`).

mod kernel;

use ftpalg::dataplane::kernel::{FailReason, FlowEvent};
use kernel::*;
use std::time::{Duration, Instant};

/// Opens the data plane in a lab whose gateway, like any NAT gateway, has
/// a NAT chain of its own: without one, deleting ftpalg's table would
/// unhook NAT altogether and stop every translated connection with it,
/// which is not what a real gateway does.
fn open(tag: &str) -> Option<Gateway> {
    if !require_root() {
        return None;
    }
    let lab = Lab::new(tag);
    let (ok, out) = lab.nft(
        "'add table ip opnat; add chain ip opnat post { type nat hook postrouting priority srcnat; }; add chain ip opnat pre { type nat hook prerouting priority dstnat; }'",
    );
    assert!(ok, "{out}");
    Some(Gateway::open(lab, config()))
}

/// How long the pinholes here wait for their connection.
const PINHOLE: Duration = Duration::from_secs(30);

/// Regression: a transfer whose session had let go of it (the server had
/// answered 226, the session ended) was forgotten by the kernel thread
/// while its connection stayed translated and marked for as long as
/// conntrack kept it: unfollowed, never cut, not even when ftpalg stopped.
#[test]
fn a_transfer_left_by_its_session_is_followed_and_ended_with_the_table() {
    let Some(Gateway { lab, mut dp, .. }) = open("t") else {
        return;
    };
    let srv = server(&lab.srv, sa(SERVER, 5000), 10, Duration::from_secs(15));
    let gw = sa(GW_IN, 40000);
    let id = dp.add(&passive(gw, 5000, PINHOLE)).expect("add");
    let (go, client) = slow_client(&lab, gw);
    wait_for(&mut dp, id, Duration::from_secs(3), |e| {
        matches!(e, FlowEvent::Established { .. })
    });
    dp.detach(id).expect("detach");
    assert_eq!(dp.live(), 1, "the connection is still followed");
    let (_, table) = lab.nft("list table inet ftpalg_data");
    assert!(
        !table.contains("elements"),
        "its pinhole is withdrawn:\n{table}"
    );
    // Still forwarded while followed.
    go.send(()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    dp.close().expect("close");
    // After the table went, nothing more of it reaches the server.
    let _ = go.send(());
    drop(go);
    let client_ok = client.join().unwrap();
    let seen = srv.finish();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].received, 200,
        "bytes after the close reached the server: {seen:?}"
    );
    assert!(!client_ok, "the client's connection went on after close");
}

/// A kernel transfer that moves no byte for its idle bound is cut and
/// reported as such; one that moves is not.
#[test]
fn an_idle_kernel_transfer_is_cut_and_reported() {
    let Some(Gateway { lab, mut dp, .. }) = open("u") else {
        return;
    };
    let srv = server(&lab.srv, sa(SERVER, 5000), 10, Duration::from_secs(15));
    let gw = sa(GW_IN, 40000);
    let idle = Duration::from_secs(1);
    let id = dp
        .add_limited(&passive(gw, 5000, PINHOLE), Some(idle))
        .expect("add");
    let (go, client) = slow_client(&lab, gw);
    wait_for(&mut dp, id, Duration::from_secs(3), |e| {
        matches!(e, FlowEvent::Established { .. })
    });
    // Moving: three sends half a bound apart keep it alive.
    let started = Instant::now();
    for _ in 0..3 {
        std::thread::sleep(idle / 2);
        go.send(()).unwrap();
        for (i, ev) in dp.poll().expect("poll") {
            assert!(i != id || !ev.is_terminal(), "cut while moving: {ev:?}");
        }
    }
    // Then silent: cut within the bound and a check interval.
    let evs = wait_for(&mut dp, id, Duration::from_secs(4), |e| e.is_terminal());
    assert_eq!(
        evs.last(),
        Some(&FlowEvent::Failed(FailReason::Idle { after: idle }))
    );
    assert!(started.elapsed() >= idle * 2, "cut too early");
    assert_eq!(dp.live(), 0);
    drop(go);
    assert!(!client.join().unwrap(), "the idle connection went on");
    let seen = srv.finish();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].received, 400, "every byte before the cut arrived");
    dp.close().expect("close");
}

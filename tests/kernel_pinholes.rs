//! The kernel data path against this machine's kernel, in namespaces the
//! tests create: pinholes admit exactly the expected peer, once, before
//! their deadline, through a gateway whose forward policy drops all else.
//! Run as root (`cargo test --test kernel_pinholes`).

mod kernel;

use ftpalg::dataplane::kernel::{KernelConfig, KernelDataPlane, KernelError, PinholeId};
use ftpalg::dataplane::{ClientAddr, FailReason, FlowEvent, GatewayAddr, PeerIp, PinholeFlow, ServerAddr, SourceNat};
use kernel::*;
use std::time::{Duration, Instant};

const SHORT: Duration = Duration::from_millis(800);

fn open(lab: &Lab, config: KernelConfig) -> KernelDataPlane {
    let (dp, report) = in_ns(&lab.gw, move || KernelDataPlane::open(config)).expect("open kernel data path");
    assert!(report.accounting, "the lab turns conntrack accounting on");
    dp
}

/// Polls until `id` reports a terminal event (bounded), collecting its events.
fn events_until_done(dp: &mut KernelDataPlane, id: PinholeId, within: Duration) -> Vec<FlowEvent> {
    let end = Instant::now() + within;
    let mut out = Vec::new();
    while Instant::now() < end {
        for (i, ev) in dp.poll().expect("poll") {
            if i == id {
                let terminal = ev.is_terminal();
                out.push(ev);
                if terminal {
                    return out;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    out
}

#[test]
fn passive_pinhole_admits_the_peer_once_and_counts_its_bytes() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("a");
    let mut dp = open(&lab, config());
    let srv = server(&lab.srv, sa(SERVER, 5000), 200_000, Duration::from_secs(8));
    let gw = sa(GW_IN, 40000);
    let flow = PinholeFlow::passive(
        ClientAddr(sa(CLIENT, 0)),
        GatewayAddr(gw),
        ServerAddr(sa(SERVER, 5000)),
        SourceNat(GW_OUT.parse().unwrap()),
        Duration::from_secs(5),
    );
    let id = dp.add(&flow).expect("add pinhole");
    let (_, listing) = lab.nft("list set inet ftpalg_data pin4");
    assert!(listing.contains("100.64.0.2 . 100.64.0.1 . 40000"), "{listing}");

    // A stranger on the client's LAN gets nothing, not even a reset...
    assert_eq!(dial(&lab.cli, sa(STRANGER, 0), gw, 10, SHORT), Outcome::TimedOut);
    // ...and has not used up the pinhole: the expected peer goes through.
    assert_eq!(dial(&lab.cli, sa(CLIENT, 0), gw, 100_000, Duration::from_secs(3)), Outcome::Transferred(200_000));
    // Once only: the same peer's second connection is dropped.
    assert_eq!(dial(&lab.cli, sa(CLIENT, 0), gw, 10, SHORT), Outcome::TimedOut);

    let seen = srv.finish();
    assert_eq!(seen.len(), 1, "exactly one connection reached the server: {seen:?}");
    assert_eq!(seen[0].peer.ip().to_string(), GW_OUT, "source NAT to the gateway's outside address");
    assert_eq!(seen[0].received, 100_000);

    let evs = events_until_done(&mut dp, id, Duration::from_secs(5));
    assert!(matches!(evs.first(), Some(FlowEvent::Established { dialer }) if dialer.ip().to_string() == CLIENT), "{evs:?}");
    match evs.last() {
        Some(FlowEvent::Finished { counts, .. }) => {
            assert!(counts.from_dialer >= 100_000 && counts.from_dialer < 120_000, "{counts:?}");
            assert!(counts.to_dialer >= 200_000 && counts.to_dialer < 230_000, "{counts:?}");
        }
        other => panic!("expected Finished, got {other:?} in {evs:?}"),
    }
    assert_eq!(dp.live(), 0);
    dp.close().expect("close");
    assert!(!lab.tables().contains("ftpalg_data"), "{}", lab.tables());
}

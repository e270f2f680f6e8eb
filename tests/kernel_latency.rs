//! Pinhole setup latency over netlink: 2,000 adds while 200 pinholes are
//! live, in a namespace of its own. Checks that every add and removal
//! succeeds and that nothing is left; prints p50/p99 of the adds, which
//! `make bench` runs in a release build and judges against its target (p99
//! at most 1 ms). Timing is not asserted here: a timed test on two shared
//! cores would fail for what else the machine is doing.
mod kernel;

use ftpalg::dataplane::kernel::KernelDataPlane;
use ftpalg::dataplane::{ClientAddr, GatewayAddr, PinholeFlow, ServerAddr, SourceNat};
use kernel::*;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const ADDS: usize = 2_000;
const LIVE: usize = 200;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
fn pinhole_setup_p99_with_200_live() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("l");
    let (adds, removes, polls) = in_ns(&lab.gw, || {
        let (mut dp, _) = KernelDataPlane::open(config()).expect("open");
        let mut live = VecDeque::new();
        let mut adds = Vec::with_capacity(ADDS);
        let mut removes = Vec::with_capacity(ADDS);
        let mut polls = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..ADDS + LIVE {
            assert!(Instant::now() < deadline, "bounded in time");
            // Distinct clients and gateway ports, as 200 sessions would use.
            let n = i as u32;
            let client =
                std::net::Ipv4Addr::from(u32::from_be_bytes([100, 64, 0, 0]) + 10 + n % 200);
            let flow = PinholeFlow::passive(
                ClientAddr((client, 0).into()),
                GatewayAddr(sa(GW_IN, 20_000 + (i % 40_000) as u16)),
                ServerAddr(sa(SERVER, 5000)),
                SourceNat(GW_OUT.parse().unwrap()),
                Duration::from_secs(30),
            );
            if live.len() == LIVE {
                let old = live.pop_front().unwrap();
                let t = Instant::now();
                dp.remove(old).expect("remove");
                removes.push(t.elapsed());
            }
            let t = Instant::now();
            let id = dp.add(&flow).expect("add");
            if i >= LIVE {
                adds.push(t.elapsed());
            }
            live.push_back(id);
            if i % 100 == 0 && i >= LIVE {
                let t = Instant::now();
                dp.poll().expect("poll");
                polls.push(t.elapsed());
            }
        }
        assert_eq!(dp.live(), LIVE);
        dp.close().expect("close");
        (adds, removes, polls)
    });
    let mut adds = adds;
    let mut removes = removes;
    let mut polls = polls;
    adds.sort();
    removes.sort();
    polls.sort();
    let (p50, p99) = (pct(&adds, 0.5), pct(&adds, 0.99));
    println!(
        "pinhole-latency-us add_p50={} add_p99={} adds={}",
        p50.as_micros(),
        p99.as_micros(),
        adds.len()
    );
    println!(
        "pinhole add ({} with {LIVE} live): p50 {:?} p99 {:?} max {:?}; remove p50 {:?} p99 {:?}; poll with {LIVE} live p50 {:?}",
        adds.len(),
        p50,
        p99,
        adds.last().unwrap(),
        pct(&removes, 0.5),
        pct(&removes, 0.99),
        pct(&polls, 0.5)
    );
    assert_eq!(adds.len(), ADDS);
    assert!(p50 <= p99);
    assert!(!lab.tables().contains("ftpalg_data"));
}

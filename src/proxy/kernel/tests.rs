//! The kernel thread against a real kernel, in a network namespace each
//! test unshares for itself.

use super::*;
use crate::dataplane::kernel::testing::in_fresh_netns;
use crate::dataplane::{GatewayAddr, PeerIp, ServerAddr, SourceNat};
use std::net::SocketAddr;

#[test]
fn the_thread_reports_a_pinhole_and_deletes_the_table_when_closed() {
    in_fresh_netns(|| {
        // Without the owner flag only close() can delete the table.
        let config = KernelConfig {
            owner: false,
            ..KernelConfig::default()
        };
        let plane = KernelThread::start(config.clone()).expect("start");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let flow = PinholeFlow::passive(
            PeerIp::new("100.64.0.2".parse().unwrap()),
            GatewayAddr::new("100.64.0.1:40000".parse().unwrap()),
            ServerAddr::new("198.51.100.2:5000".parse().unwrap()),
            Some(SourceNat::new("198.51.100.1".parse().unwrap())),
            Duration::from_millis(200),
        );
        let (tx, rx) = std_mpsc::channel();
        let _pinhole = rt
            .block_on(plane.add(
                flow,
                None,
                Box::new(move |ev| {
                    let _ = tx.send(ev);
                }),
                ANSWER_WITHIN,
            ))
            .expect("add");
        // Nobody dials: the watcher hears that it expired, once.
        let ev = rx.recv_timeout(Duration::from_secs(3)).expect("an event");
        assert_eq!(ev, FlowEvent::Expired);
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        plane.close();
        let after = rt.block_on(plane.add(flow, None, Box::new(|_| {}), ANSWER_WITHIN));
        assert!(after.is_err(), "a closed plane took a pinhole");
        // The table is gone: opening it again finds nothing stale.
        let (dp, report) = KernelTable::open(config).expect("open again");
        assert!(!report.replaced_stale, "close() left the table behind");
        dp.close().expect("close");
    });
}

/// Elements in ftpalg's table, as `nft` in this thread's namespace
/// sees them.
fn elements() -> usize {
    let out = std::process::Command::new("nft")
        .args(["list", "table", "inet", "ftpalg_data"])
        .output()
        .expect("nft");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("elements"))
        .count()
}

/// Regression: an answer that came after its session had stopped
/// waiting (and fell back to the relay) left its pinhole in the kernel,
/// admitting a connection nobody followed.
#[test]
fn a_pinhole_nobody_takes_is_not_left_in_the_kernel() {
    in_fresh_netns(|| {
        let plane = KernelThread::start(KernelConfig::default()).expect("start");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let flow = |port| {
            PinholeFlow::passive(
                PeerIp::new("100.64.0.2".parse().unwrap()),
                GatewayAddr::new(SocketAddr::new("100.64.0.1".parse().unwrap(), port)),
                ServerAddr::new("198.51.100.2:5000".parse().unwrap()),
                Some(SourceNat::new("198.51.100.1".parse().unwrap())),
                Duration::from_secs(30),
            )
        };
        // A request already stale when the thread takes it is not made.
        let stale = rt.block_on(plane.add(flow(40000), None, Box::new(|_| {}), Duration::ZERO));
        assert!(stale.is_err());
        // Requests whose askers stop waiting before the answer: each
        // answer is dropped unread, and must take its pinhole with it.
        for port in 40001..40021 {
            let gave_up = rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_micros(50),
                    plane.add(flow(port), None, Box::new(|_| {}), ANSWER_WITHIN),
                )
                .await
            });
            drop(gave_up);
        }
        // One taken and kept is there; once dropped it goes too.
        let kept = rt
            .block_on(plane.add(flow(40100), None, Box::new(|_| {}), ANSWER_WITHIN))
            .expect("add");
        let end = Instant::now() + Duration::from_secs(2);
        while elements() != 5 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(elements(), 5, "only the kept pinhole's elements");
        drop(kept);
        let end = Instant::now() + Duration::from_secs(2);
        while elements() != 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(elements(), 0);
        plane.close();
    });
}

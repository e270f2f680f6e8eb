//! The kernel thread against a real kernel, in a network namespace each
//! test unshares for itself.

use super::requests::{KernelPinhole, OnEvent};
use super::thread::ANSWER_WITHIN;
use super::{KernelSession, KernelThread};
use crate::dataplane::kernel::testing::in_fresh_netns;
use crate::dataplane::kernel::{FlowEvent, KernelConfig, KernelTable, Terms, Withdraw};
use crate::dataplane::{GatewayAddr, PeerIp, PinholeFlow, ServerAddr, SourceNat};
use crate::ftp::session::DataId;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

/// A passive flow on gateway port `port`, waiting `timeout`.
fn passive(port: u16, timeout: Duration) -> PinholeFlow {
    PinholeFlow::passive(
        PeerIp::new("100.64.0.2".parse().unwrap()),
        GatewayAddr::new(SocketAddr::new("100.64.0.1".parse().unwrap(), port)),
        ServerAddr::new("198.51.100.2:5000".parse().unwrap()),
        Some(SourceNat::new("198.51.100.1".parse().unwrap())),
        timeout,
    )
}

/// A runtime for the thread's async calls.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// An add with no session: nobody ends it.
async fn add(
    thread: &KernelThread,
    flow: PinholeFlow,
    on_event: OnEvent,
    within: Duration,
) -> Result<KernelPinhole, String> {
    let open = Arc::new(AtomicBool::new(true));
    thread
        .add(flow, Terms::default(), on_event, open, within)
        .await
}

#[test]
fn the_thread_reports_a_pinhole_and_deletes_the_table_when_closed() {
    in_fresh_netns(|| {
        // Without the owner flag only close() can delete the table.
        let config = KernelConfig {
            owner: false,
            ..KernelConfig::default()
        };
        let thread = KernelThread::start(config.clone()).expect("start");
        let rt = runtime();
        let flow = passive(40000, Duration::from_millis(200));
        let (tx, rx) = std_mpsc::channel();
        let _pinhole = rt
            .block_on(add(
                &thread,
                flow,
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
        thread.close();
        let after = rt.block_on(add(&thread, flow, Box::new(|_| {}), ANSWER_WITHIN));
        assert!(after.is_err(), "a closed thread took a pinhole");
        // The table is gone: opening it again finds nothing stale.
        let (table, report) = KernelTable::open(config).expect("open again");
        assert!(!report.replaced_stale, "close() left the table behind");
        table.close().expect("close");
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
        let thread = KernelThread::start(KernelConfig::default()).expect("start");
        let rt = runtime();
        let flow = |port| passive(port, Duration::from_secs(30));
        // A request already stale when the thread takes it is not made.
        let stale = rt.block_on(add(&thread, flow(40000), Box::new(|_| {}), Duration::ZERO));
        assert!(stale.is_err());
        // Requests whose askers stop waiting before the answer: each
        // answer is dropped unread, and must take its pinhole with it.
        for port in 40001..40021 {
            let gave_up = rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_micros(50),
                    add(&thread, flow(port), Box::new(|_| {}), ANSWER_WITHIN),
                )
                .await
            });
            drop(gave_up);
        }
        // One taken and kept is there; once dropped it goes too.
        let kept = rt
            .block_on(add(&thread, flow(40100), Box::new(|_| {}), ANSWER_WITHIN))
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
        thread.close();
    });
}

/// ftpalg's table as `nft` in this thread's namespace lists it.
fn listing() -> String {
    let out = std::process::Command::new("nft")
        .args(["list", "table", "inet", "ftpalg_data"])
        .output()
        .expect("nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (bounded) until `done` holds of the table's listing.
fn until_listed(done: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let l = listing();
        if done(&l) || Instant::now() >= end {
            return l;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A session's end releases everything it holds in one request to the
/// thread; the handles its channels drop afterwards ask nothing more, and
/// the thread adds nothing for it any more.
#[test]
fn a_sessions_end_releases_all_it_holds_in_one_request() {
    in_fresh_netns(|| {
        let thread = Arc::new(KernelThread::start(KernelConfig::default()).expect("start"));
        let rt = runtime();
        let (one, two) = (
            KernelSession::new(thread.clone(), 1),
            KernelSession::new(thread.clone(), 2),
        );
        let pinhole = |s: &KernelSession, channel, port, release| {
            rt.block_on(s.add(
                DataId(channel),
                passive(port, Duration::from_secs(30)),
                None,
                release,
                Box::new(|_| {}),
            ))
            .expect("add")
        };
        let held = [
            pinhole(&one, 1, 40001, Withdraw::Cut),
            pinhole(&one, 2, 40002, Withdraw::Forget),
            pinhole(&one, 3, 40003, Withdraw::Cut),
        ];
        let kept = pinhole(&two, 1, 40004, Withdraw::Cut);
        let listed = until_listed(|l| l.contains("40004"));
        assert!(
            ["40001", "40002", "40003"]
                .iter()
                .all(|p| listed.contains(p)),
            "{listed}"
        );

        let before = thread.served.load(Ordering::SeqCst);
        one.end();
        drop(held);
        one.end();
        let after =
            until_listed(|l| !l.contains("40001") && !l.contains("40002") && !l.contains("40003"));
        for port in ["40001", "40002", "40003"] {
            assert!(!after.contains(port), "session 1's {port} stayed:\n{after}");
        }
        assert!(after.contains("40004"), "session 2's went:\n{after}");
        // Anything more the dropped handles sent would be taken by now.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            thread.served.load(Ordering::SeqCst) - before,
            1,
            "one request ends the session"
        );

        // An add for the ended session, as a late path would ask it: none
        // is made.
        let late = rt.block_on(one.add(
            DataId(4),
            passive(40005, Duration::from_secs(30)),
            None,
            Withdraw::Cut,
            Box::new(|_| {}),
        ));
        assert!(late.is_err());
        assert!(!listing().contains("40005"));
        drop(kept);
        thread.close();
    });
}

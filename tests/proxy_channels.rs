//! What one session may hold of the gateway's data channels: `/status`
//! keeps an entry only for a channel that still exists. Every test has its
//! own deadline, so a hang is a failure.

mod support;

use std::future::Future;
use std::time::{Duration, Instant};
use support::client::Client;
use support::server::{Opts, TestServer};
use support::{explicit_rules, gateway};

/// Runs a test body under a deadline: a hang fails instead of blocking.
async fn within<F: Future<Output = ()>>(secs: u64, body: F) {
    tokio::time::timeout(Duration::from_secs(secs), body)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {secs}s"));
}

/// Waits until `cond` holds, up to `limit`; returns whether it did.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// The session's `/status` entries, as the registry's public view has them.
fn status_transfers(gw: &ftpalg::proxy::Handle) -> usize {
    gw.gateway()
        .metrics
        .telemetry
        .live
        .view()
        .iter()
        .map(|s| s.transfers.len())
        .sum()
}

/// Passive channels superseded before any transfer leave nothing in
/// `/status`: its entry goes with the channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_passive_channels_leave_no_status_entry() {
    within(60, async {
        let server = TestServer::start(Opts::default()).await;
        let gw = gateway(&explicit_rules(server.addr, "passive", "")).await;
        let (mut c, _) = Client::connect(gw.addrs[0]).await;
        c.login("u").await;
        let mut most = 0;
        for i in 0..300 {
            let r = c.cmd("EPSV").await;
            assert_eq!(r.code, 229, "round {i}: {}", r.text);
            most = most.max(status_transfers(&gw));
        }
        let view = gw.gateway().metrics.telemetry.live.view();
        assert_eq!(view.len(), 1, "one session");
        assert!(
            view[0].transfers.len() <= 1,
            "{} /status entries after 300 EPSV",
            view[0].transfers.len()
        );
        assert!(most <= 1, "up to {most} /status entries during the loop");
        // The last channel's entry goes with it when the session ends.
        assert_eq!(c.cmd("QUIT").await.code, 221);
        assert!(
            eventually(Duration::from_secs(3), || gw
                .gateway()
                .metrics
                .telemetry
                .live
                .view()
                .is_empty())
            .await
        );
    })
    .await;
}

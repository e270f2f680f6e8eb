//! What one session may hold of the gateway's data channels: the bound of
//! one channel in preparation and one running holds for transfers that
//! have delivered while a peer keeps its data socket open, and `/status`
//! keeps an entry only for a channel that still exists. Every test has its
//! own deadline, so a hang is a failure.

mod support;

use std::time::Duration;
use support::client::{Client, Mode};
use support::server::{Opts, TestServer};
use support::{channels, data, eventually, explicit_rules, gateway, metric, within};
use tokio::io::AsyncReadExt;

/// Many small downloads in one session, the client keeping every data
/// socket open after reading it to the end (as clients that close their
/// data sockets only at QUIT do): each delivered relay is closed when the
/// next channel starts, the last one within its short deadline, and every
/// transfer is reported complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_channels_kept_open_by_the_client_do_not_pile_up() {
    within(60, async {
        const FILES: usize = 50;
        let server = TestServer::start(Opts::default()).await;
        for i in 0..FILES {
            server.put(&format!("f{i}"), data(1000 + i * 37, i as u8));
        }
        // A long idle timeout: only the bound and the delivered deadline
        // can end a relay whose client keeps its socket open.
        let gw = gateway(&explicit_rules(
            server.addr,
            "passive",
            "limits:\n  transfer_idle_timeout: 60s\n",
        ))
        .await;
        let (mut c, _) = Client::connect(gw.addrs[0]).await;
        c.login("u").await;
        let mut kept = Vec::new();
        let mut most = 0;
        for i in 0..FILES {
            let pending = c.data(Mode::Epsv).await.expect("EPSV");
            c.send(&format!("RETR f{i}")).await;
            let (mut d, _) = pending.open_after(&mut c).await.expect("data connection");
            assert_eq!(c.reply().await.code, 150, "round {i}");
            let mut got = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), d.read_to_end(&mut got))
                .await
                .expect("download in time")
                .expect("download");
            assert!(
                got == data(1000 + i * 37, i as u8),
                "round {i}: file differs"
            );
            let r = c.reply().await;
            assert_eq!(r.code, 226, "round {i}: {}", r.text);
            // Read to the end, never closed.
            kept.push(d);
            let now = channels(&gw);
            most = most.max(now);
            assert!(now <= 2, "round {i}: {now} data channels alive");
        }
        assert!(most >= 1);
        // The last one has no successor: its deadline closes it.
        assert!(
            eventually(Duration::from_secs(10), || channels(&gw) == 0).await,
            "{} data channels still alive after the last transfer",
            channels(&gw)
        );
        // Each delivered transfer counts as complete.
        let transfers = || metric(&gw, "ftpalg_transfers_total", &["result=\"ok\""]) as u64;
        assert!(
            eventually(Duration::from_secs(3), || transfers() == FILES as u64).await,
            "{} transfers reported complete",
            transfers()
        );
        assert_eq!(c.cmd("NOOP").await.code, 200);
        drop(kept);
    })
    .await;
}

/// The session's `/status` entries, as the registry's public view has them.
fn status_transfers(gw: &ftpalg::proxy::Handle) -> usize {
    gw.gateway()
        .telemetry()
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
        let view = gw.gateway().telemetry().live.view();
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
                .telemetry()
                .live
                .view()
                .is_empty())
            .await
        );
    })
    .await;
}

//! `ftpalg selftest` against a gateway on loopback: it passes while the
//! gateway runs in front of a server, and fails, naming what, when the
//! gateway is gone or the server refuses the transfer. (Its nftables
//! checks are unit-tested on the lab's rule set; `tests/e2e/ops.sh
//! selftest` runs it in the namespace lab, transparent listeners and the
//! accept line included.)

mod support;

use ftpalg::selftest::{run, Options, Outcome, Report};
use std::time::Duration;
use support::server::{Opts, TestServer};
use support::{explicit_rules, gateway, within};

fn options() -> Options {
    Options {
        servers: Vec::new(),
        user: "anonymous".into(),
        password: "x@".into(),
        timeout: Duration::from_secs(5),
    }
}

/// The self-test for `yaml` (whose listener is at `at` now), run off the
/// runtime since it blocks.
async fn selftest(yaml: String, at: std::net::SocketAddr) -> Report {
    tokio::task::spawn_blocking(move || {
        let mut rules = ftpalg::rules::from_str(&yaml).rules.unwrap();
        rules.listeners[0].listen = at;
        run(&rules, &options())
    })
    .await
    .unwrap()
}

fn outcome(r: &Report, what: &str) -> Outcome {
    r.checks
        .iter()
        .find(|c| c.what == what)
        .unwrap_or_else(|| panic!("no check {what}:\n{}", r.to_text()))
        .outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_through_a_running_gateway_and_fails_without_it() {
    within(60, async {
        let server = TestServer::start(Opts::default()).await;
        server.put("a", vec![1; 10]);
        // The server sees each mode as the client used it.
        let yaml = explicit_rules(server.addr, "same-as-client", "");
        let gw = gateway(&yaml).await;
        let at = gw.addrs[0];

        let r = selftest(yaml.clone(), at).await;
        assert!(r.passed(), "{}", r.to_text());
        assert_eq!(outcome(&r, "listener t"), Outcome::Pass);
        assert_eq!(outcome(&r, "transfer via t"), Outcome::Pass);
        let text = r.to_text();
        assert!(text.contains("in passive mode"), "{text}");
        assert!(text.contains("in active mode"), "{text}");
        // Both listings went through the gateway to the server.
        let seen = server.commands();
        assert_eq!(seen.iter().filter(|c| *c == "LIST").count(), 2, "{seen:?}");
        assert!(
            seen.iter()
                .any(|c| c.starts_with("EPRT ") || c.starts_with("PORT ")),
            "{seen:?}"
        );
        assert!(seen.iter().any(|c| c == "PASV" || c == "EPSV"), "{seen:?}");

        gw.shutdown(Duration::from_secs(1)).await;
        let r = selftest(yaml, at).await;
        assert!(!r.passed(), "{}", r.to_text());
        assert_eq!(outcome(&r, "listener t"), Outcome::Fail);
        assert_eq!(outcome(&r, "transfer via t"), Outcome::Fail);
        assert!(r.to_text().contains("is ftpalg running"), "{}", r.to_text());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_when_the_transfer_does_not_pass() {
    within(60, async {
        // The server refuses active mode: the gateway, relaying active to
        // active, cannot carry that listing.
        let server = TestServer::start(Opts {
            refuse_active: true,
            ..Opts::default()
        })
        .await;
        let yaml = explicit_rules(server.addr, "same-as-client", "");
        let gw = gateway(&yaml).await;
        let r = selftest(yaml, gw.addrs[0]).await;
        assert_eq!(outcome(&r, "listener t"), Outcome::Pass);
        assert_eq!(
            outcome(&r, "transfer via t"),
            Outcome::Fail,
            "{}",
            r.to_text()
        );
        assert!(!r.passed());
        gw.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

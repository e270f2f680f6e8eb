//! Every end classified once: a transfer completed, refused by the
//! server, refused by the rules, aborted by the client, or failed in the
//! gateway, each logged at its level and counted under its class; a data
//! channel that carried no transfer is none; a server that cannot be
//! reached is `421` and an upstream failure, not a denial.

mod support;

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use support::client::{Client, Mode};
use support::server::{Opts, TestServer};
use support::{data, eventually, explicit_rules, gateway, metric, within};
use tokio::io::AsyncReadExt;

/// Every log line of this test process, as text.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .init();
    });
}

/// The log lines that contain every one of `parts`.
fn lines_with(parts: &[&str]) -> Vec<String> {
    String::from_utf8_lossy(&LOGS.lock().unwrap())
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .map(String::from)
        .collect()
}

/// The one `transfer` line of `file`, once it is there.
async fn transfer_line(file: &str) -> String {
    let needle = format!("file=\"{file}\"");
    let logged = eventually(Duration::from_secs(5), || {
        !lines_with(&[": transfer session=", &needle]).is_empty()
    })
    .await;
    let lines = lines_with(&[": transfer session=", &needle]);
    assert!(
        logged && lines.len() == 1,
        "one transfer line for {file}: {lines:?}"
    );
    lines[0].clone()
}

fn transfers(gw: &ftpalg::proxy::Handle, result: &str) -> f64 {
    metric(
        gw,
        "ftpalg_transfers_total",
        &[&format!("result=\"{result}\"")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_refused_by_the_server_not_failed() {
    capture_logs();
    within(20, async {
        let server = TestServer::start(Opts::default()).await;
        let gw = gateway(&explicit_rules(server.addr, "passive", "")).await;
        let (mut c, _) = Client::connect(gw.addrs[0]).await;
        c.login("u").await;
        assert_eq!(c.cmd("EPSV").await.code, 229);
        let r = c.cmd("RETR missing-file-1").await;
        assert_eq!(r.code, 550, "{}", r.text);
        let line = transfer_line("missing-file-1").await;
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains("result=\"refused\""), "{line}");
        assert!(line.contains("reply=\"550 No such file\""), "{line}");
        assert_eq!(transfers(&gw, "refused"), 1.0);
        assert_eq!(transfers(&gw, "failed"), 0.0);
        assert_eq!(c.cmd("QUIT").await.code, 221);
    })
    .await;
}

/// curl sends `SIZE` after `EPSV` and its data connection; on `550` it
/// never sends `RETR`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_carried_no_transfer_is_not_one() {
    capture_logs();
    within(20, async {
        let server = TestServer::start(Opts {
            close_unused_data: true,
            ..Opts::default()
        })
        .await;
        let gw = gateway(&explicit_rules(server.addr, "passive", "")).await;
        let (mut c, _) = Client::connect(gw.addrs[0]).await;
        c.login("u").await;
        let pending = c.data(Mode::Epsv).await.expect("229");
        let support::client::Pending::Connect(at, _) = pending else {
            unreachable!()
        };
        let d = tokio::net::TcpStream::connect(at).await.unwrap();
        assert_eq!(c.cmd("TYPE I").await.code, 200);
        assert_eq!(c.cmd("SIZE missing-file-2").await.code, 550);
        // curl closes its data connection; the server closes its own: the
        // channel ends cleanly, having carried nothing.
        drop(d);
        let gone = eventually(Duration::from_secs(5), || support::channels(&gw) == 0).await;
        assert!(gone, "the channel ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(c.cmd("QUIT").await.code, 221);
        let client = format!("client={}", c.local);
        assert!(
            eventually(Duration::from_secs(5), || {
                !lines_with(&["session end", &client]).is_empty()
            })
            .await
        );
        let end = lines_with(&["session end", &client]).remove(0);
        assert!(end.contains("transfers=0"), "{end}");
        assert!(lines_with(&[": transfer session=", &client]).is_empty());
        assert_eq!(metric(&gw, "ftpalg_transfers_total", &[]), 0.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_refusal_is_denied_with_its_file() {
    capture_logs();
    within(20, async {
        let server = TestServer::start(Opts::default()).await;
        server.put("secret-3", data(100, 3));
        let rules = explicit_rules(
            server.addr,
            "passive",
            "rules:\n  - name: no-secrets\n    match: { command: [RETR] }\n    action: deny\n",
        );
        let gw = gateway(&rules).await;
        let (mut c, _) = Client::connect(gw.addrs[0]).await;
        c.login("u").await;
        assert_eq!(c.cmd("EPSV").await.code, 229);
        let r = c.cmd("RETR secret-3").await;
        assert_eq!(r.code, 550, "{}", r.text);
        let line = transfer_line("secret-3").await;
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains("result=\"denied\""), "{line}");
        assert!(line.contains("reason=\"rule:no-secrets\""), "{line}");
        let denied = lines_with(&[" denied ", "file=\"secret-3\""]);
        assert_eq!(denied.len(), 1, "{denied:?}");
        assert!(denied[0].contains(" INFO "), "{denied:?}");
        assert_eq!(transfers(&gw, "denied"), 1.0);
        assert_eq!(transfers(&gw, "failed"), 0.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_is_the_client_aborting() {
    capture_logs();
    within(20, async {
        let server = TestServer::start(Opts::default()).await;
        server.put("big-4", data(64 << 20, 4));
        let gw = gateway(&explicit_rules(server.addr, "passive", "")).await;
        let (mut c, _) = Client::connect(gw.addrs[0]).await;
        c.login("u").await;
        let pending = c.data(Mode::Epsv).await.expect("229");
        c.send("RETR big-4").await;
        let (mut d, prelim) = pending.open_after(&mut c).await.unwrap();
        if prelim.is_none() {
            assert_eq!(c.reply().await.code, 150);
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < 256 * 1024 {
            got += d.read(&mut buf).await.unwrap();
        }
        c.send("ABOR").await;
        let line = transfer_line("big-4").await;
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains("result=\"aborted\""), "{line}");
        assert_eq!(transfers(&gw, "aborted"), 1.0);
        assert_eq!(transfers(&gw, "failed"), 0.0);
    })
    .await;
}

/// A client that goes away in the middle of a download (a reset, as a
/// client killed or interrupted leaves) aborted it: the gateway did not
/// fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_resets_its_data_connection_aborted() {
    capture_logs();
    within(20, async {
        let server = TestServer::start(Opts::default()).await;
        server.put("left-6", data(64 << 20, 6));
        let gw = gateway(&explicit_rules(server.addr, "passive", "")).await;
        let (mut c, _) = Client::connect(gw.addrs[0]).await;
        c.login("u").await;
        let pending = c.data(Mode::Epsv).await.expect("229");
        c.send("RETR left-6").await;
        let (mut d, _) = pending.open_after(&mut c).await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < 256 * 1024 {
            got += d.read(&mut buf).await.unwrap();
        }
        socket2::SockRef::from(&d)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(d);
        let line = transfer_line("left-6").await;
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains("result=\"aborted\""), "{line}");
        assert_eq!(transfers(&gw, "aborted"), 1.0);
        assert_eq!(transfers(&gw, "failed"), 0.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_the_gateway_could_not_carry_failed_with_its_bytes_so_far() {
    capture_logs();
    within(20, async {
        let server = TestServer::start(Opts {
            die_mid_transfer: true,
            ..Opts::default()
        })
        .await;
        server.put("broken-5", data(1 << 20, 5));
        let gw = gateway(&explicit_rules(server.addr, "passive", "")).await;
        let (mut c, _) = Client::connect(gw.addrs[0]).await;
        c.login("u").await;
        assert!(c.retr("broken-5", Mode::Epsv).await.is_err());
        let line = transfer_line("broken-5").await;
        assert!(line.contains(" WARN "), "{line}");
        assert!(line.contains("result=\"failed\""), "{line}");
        assert!(line.contains("error="), "{line}");
        assert!(!line.contains("os error"), "{line}");
        let down: u64 = line
            .split("bytes_down=")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bytes_down in {line}"));
        assert!(down > 0, "the bytes moved so far: {line}");
        assert_eq!(transfers(&gw, "failed"), 1.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_421_and_an_upstream_failure() {
    capture_logs();
    within(20, async {
        // A port nothing listens on.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let yaml = "listeners:\n  - name: p\n    listen: 127.0.0.1:0\n    kind: user-at-host\n    servers: [127.0.0.1/32]\n";
        let gw = gateway(yaml).await;
        let (mut c, _) = Client::connect(gw.addrs[0]).await;
        let r = c.cmd(&format!("USER anon@127.0.0.1:{closed}")).await;
        assert_eq!(r.code, 421, "{}", r.text);
        assert!(r.text.contains("connection refused"), "{}", r.text);
        assert!(!r.text.contains("os error"), "{}", r.text);
        assert_eq!(
            metric(&gw, "ftpalg_upstream_failures_total", &["reason=\"refused\""]),
            1.0
        );
        assert_eq!(metric(&gw, "ftpalg_denials_total", &[]), 0.0);
        // The explicit listener answers the same case the same way.
        let gw = gateway(&explicit_rules(
            format!("127.0.0.1:{closed}").parse().unwrap(),
            "passive",
            "",
        ))
        .await;
        let (_, hello) = Client::connect(gw.addrs[0]).await;
        assert_eq!(hello.code, 421, "{}", hello.text);
        assert!(!hello.text.contains("os error"), "{}", hello.text);
        assert_eq!(
            metric(&gw, "ftpalg_upstream_failures_total", &["reason=\"refused\""]),
            1.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_transfer_and_the_session_end_carry_their_totals() {
    capture_logs();
    within(20, async {
        let server = TestServer::start(Opts::default()).await;
        server.put("ok-7", data(5000, 7));
        let gw = gateway(&explicit_rules(server.addr, "passive", "")).await;
        let (mut c, _) = Client::connect(gw.addrs[0]).await;
        c.login("u").await;
        assert_eq!(c.retr("ok-7", Mode::Epsv).await.unwrap().len(), 5000);
        let line = transfer_line("ok-7").await;
        assert!(
            line.contains(" INFO ") && line.contains("result=\"ok\""),
            "{line}"
        );
        assert_eq!(c.cmd("QUIT").await.code, 221);
        let client = format!("client={}", c.local);
        assert!(
            eventually(Duration::from_secs(5), || {
                !lines_with(&["session end", &client]).is_empty()
            })
            .await
        );
        let end = lines_with(&["session end", &client]).remove(0);
        assert!(end.contains(" INFO "), "{end}");
        assert!(
            end.contains(&format!("server=\"{}\"", server.addr)),
            "{end}"
        );
        assert!(end.contains("reason=\"client quit\""), "{end}");
        assert!(
            end.contains("transfers=1 bytes_up=0 bytes_down=5000"),
            "{end}"
        );
    })
    .await;
}

//! The metrics endpoint under hostile peers: user text in `/status` cannot
//! drive the operator's terminal.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::client::Client;
use support::server::{Opts, TestServer};
use support::{explicit_rules, gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` with extra header lines; the whole answer, or `None` when
/// none came within `limit`.
async fn get_within(
    addr: SocketAddr,
    path: &str,
    headers: &str,
    limit: Duration,
) -> Option<String> {
    tokio::time::timeout(limit, async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        // A reset after the answer counts as its end.
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .ok()
}

async fn get(addr: SocketAddr, path: &str, headers: &str) -> String {
    get_within(addr, path, headers, Duration::from_secs(5))
        .await
        .expect("an answer within 5 s")
}

fn rules(upstream: SocketAddr, metrics: &str) -> String {
    explicit_rules(
        upstream,
        "passive",
        &format!("metrics:\n  listen: 127.0.0.1:0\n{metrics}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_escapes_control_characters_from_user_names() {
    let server = TestServer::start(Opts::default()).await;
    let gw = gateway(&rules(server.addr, "")).await;
    let m = gw.metrics_addr.unwrap();
    // An ANSI sequence that would clear the operator's screen, a C1 CSI,
    // a right-to-left override and a backslash.
    let user = "ev\u{1b}[2Jil\u{9b}31m\u{202e}x\\y";
    let (mut c, _) = Client::connect(gw.addrs[0]).await;
    c.login(user).await;
    let mut text = String::new();
    for _ in 0..100 {
        text = get(m, "/status", "").await;
        if text.contains("ev") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        text.contains(r"ev\x1b[2Jil\u{9b}31m\u{202e}x\\y"),
        "{text:?}"
    );
    assert!(
        !text
            .chars()
            .any(|c| c != '\r' && c != '\n' && (c.is_control() || c == '\u{202e}')),
        "{text:?}"
    );
    let json = get(m, "/status.json", "").await;
    let body = json.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(
        !body.chars().any(|c| c.is_control() || c == '\u{202e}'),
        "{json:?}"
    );
    // Escaped, not lost: the JSON reads back as the name sent.
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(v[0]["user"], user, "{body}");
    gw.shutdown(Duration::from_secs(1)).await;
}

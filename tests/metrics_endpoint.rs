//! The metrics endpoint under hostile peers: idle connections cannot delay
//! a liveness probe, a silent peer is closed after about a second, user
//! text in `/status` cannot drive the operator's terminal, and a bearer
//! token guards `/status` while `/metrics` and `/healthz` stay open.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
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

/// Nothing listens there: these tests open no FTP session to it.
const NOWHERE: &str = "127.0.0.1:9";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_peers_do_not_delay_healthz_or_a_scrape() {
    let gw = gateway(&rules(NOWHERE.parse().unwrap(), "")).await;
    let m = gw.metrics_addr.unwrap();
    // More idle peers than the endpoint keeps waiting for a request head.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(m).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for path in ["/healthz", "/metrics"] {
        let t = Instant::now();
        let r = get_within(m, path, "", Duration::from_secs(2)).await;
        let took = t.elapsed();
        let r = r.unwrap_or_else(|| panic!("{path}: no answer within 2 s behind 40 idle peers"));
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{path}: {r}");
        assert!(took < Duration::from_millis(500), "{path} took {took:?}");
    }
    drop(idle);
    gw.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_closed_after_about_a_second() {
    let gw = gateway(&rules(NOWHERE.parse().unwrap(), "")).await;
    let m = gw.metrics_addr.unwrap();
    // One says nothing; one sends half a request head and stops.
    let silent = TcpStream::connect(m).await.unwrap();
    let mut half = TcpStream::connect(m).await.unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
    let t = Instant::now();
    for mut s in [silent, half] {
        let mut buf = [0u8; 256];
        let r = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("closed within 3 s");
        // Closed (EOF or reset), with no answer.
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took <= Duration::from_millis(2000),
        "closed after {took:?}"
    );
    gw.shutdown(Duration::from_secs(1)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_guards_status_and_not_metrics() {
    let token = "k7Hq2-vX9_pL4mN8.rT6~wZ3+bY5/cD1=";
    let path = std::env::temp_dir().join(format!(
        "ftpalg-status-token-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::write(&path, format!("{token}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let gw = gateway(&rules(
        NOWHERE.parse().unwrap(),
        &format!("  status_token_file: {}\n", path.display()),
    ))
    .await;
    std::fs::remove_file(&path).unwrap();
    let m = gw.metrics_addr.unwrap();
    for p in ["/status", "/status.json"] {
        for h in [
            String::new(),
            "Authorization: Bearer wrong\r\n".to_string(),
            format!("Authorization: Bearer {token}x\r\n"),
            format!("Authorization: Basic {token}\r\n"),
        ] {
            let r = get(m, p, &h).await;
            assert!(r.starts_with("HTTP/1.1 401 "), "{p} with {h:?}: {r}");
            assert!(r.contains("\r\nWWW-Authenticate: Bearer"), "{p}: {r}");
            assert!(!r.contains("session(s)") && !r.contains('['), "{p}: {r}");
        }
        let r = get(m, p, &format!("authorization: bearer {token}\r\n")).await;
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{p}: {r}");
    }
    let r = get(m, "/metrics", "").await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK") && r.contains("ftpalg_build_info"),
        "{r}"
    );
    let r = get(m, "/healthz", "").await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK") && r.ends_with("ok\n"),
        "{r}"
    );
    gw.shutdown(Duration::from_secs(1)).await;
}

/// The whole answer to `request` (a request line and its headers).
async fn exchange(addr: SocketAddr, request: &str) -> String {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .expect("an answer within 5 s")
}

/// The value of header `name` in `reply`.
fn header<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    reply
        .split("\r\n\r\n")
        .next()?
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_as_get_without_a_body_and_queries_are_ignored() {
    let gw = gateway(&rules(NOWHERE.parse().unwrap(), "")).await;
    let m = gw.metrics_addr.unwrap();
    for path in ["/healthz", "/metrics", "/status", "/status.json"] {
        let full = get(m, path, "").await;
        let head = exchange(m, &format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n"),
            "HEAD {path}: {head}"
        );
        assert!(
            head.ends_with("\r\n\r\n"),
            "HEAD {path} has a body: {head:?}"
        );
        assert_eq!(
            header(&head, "Content-Type"),
            header(&full, "Content-Type"),
            "{path}"
        );
        // What a GET would send, counted: a scrape of /metrics in between
        // may differ by a digit of a process figure, not by much more.
        let (h, g): (usize, usize) = (
            header(&head, "Content-Length").unwrap().parse().unwrap(),
            header(&full, "Content-Length").unwrap().parse().unwrap(),
        );
        assert!(h > 0 && h.abs_diff(g) < 64, "{path}: HEAD {h}, GET {g}");
        let query = get(m, &format!("{path}?format=text&x[]=1"), "").await;
        assert!(
            query.starts_with("HTTP/1.1 200 OK\r\n"),
            "{path}?...: {query}"
        );
    }
    let r = get(m, "/metrics?", "").await;
    assert!(r.contains("\n# TYPE ftpalg_transfers counter\n"), "{r}");
    assert!(get(m, "/nothing?metrics", "")
        .await
        .starts_with("HTTP/1.1 404 "));
    let post = exchange(
        m,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert_eq!(header(&post, "Allow"), Some("GET, HEAD"), "{post}");
    gw.shutdown(Duration::from_secs(1)).await;
}

/// Whether something answers HTTP at `addr` now.
async fn answers(addr: SocketAddr) -> bool {
    match TcpStream::connect(addr).await {
        Err(_) => false,
        Ok(mut s) => {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await;
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
            out.starts_with(b"HTTP/1.1 200 OK")
        }
    }
}

/// A loopback port held by the test, outside every data port range these
/// rules give (40000-45999): `check` refuses a metrics address inside one,
/// and an ephemeral port lands there now and then.
fn held_outside_data_ports() -> std::net::TcpListener {
    for _ in 0..100 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        if !(40000..=45999).contains(&l.local_addr().unwrap().port()) {
            return l;
        }
    }
    panic!("100 ephemeral ports in a row inside 40000-45999");
}

fn loaded(yaml: &str) -> ftpalg::rules::Rules {
    ftpalg::rules::from_str(yaml).rules.expect("valid rules")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_the_endpoint_or_keeps_it_and_counts_why() {
    let upstream: SocketAddr = NOWHERE.parse().unwrap();
    let gw = gateway(&rules(upstream, "")).await;
    let first = gw.metrics_addr.unwrap();
    let failures = |gw: &ftpalg::proxy::Handle| {
        support::metric(gw, "ftpalg_metrics_listen_failures_total", &[])
    };
    // The same rules again: the endpoint stays (port 0 is not a change).
    gw.reload(loaded(&rules(upstream, "")));
    assert_eq!(gw.gateway().metrics_addr(), Some(first));
    assert!(answers(first).await);

    // Another address: bound there, and the old one closed.
    let yaml = explicit_rules(upstream, "passive", "metrics:\n  listen: 127.0.0.2:0\n");
    gw.reload(loaded(&yaml));
    let moved = gw.gateway().metrics_addr().unwrap();
    assert_eq!(moved.ip().to_string(), "127.0.0.2", "{moved}");
    assert!(answers(moved).await, "nothing answers at {moved}");
    assert!(
        support::eventually(Duration::from_secs(2), || std::net::TcpStream::connect(
            first
        )
        .is_err())
        .await,
        "the old address {first} still accepts"
    );
    assert_eq!(failures(&gw), 0.0);

    // An address someone else holds: the endpoint stays, and says why.
    let taken = held_outside_data_ports();
    let yaml = explicit_rules(
        upstream,
        "passive",
        &format!("metrics:\n  listen: {}\n", taken.local_addr().unwrap()),
    );
    gw.reload(loaded(&yaml));
    assert_eq!(gw.gateway().metrics_addr(), Some(moved));
    assert!(answers(moved).await);
    assert_eq!(failures(&gw), 1.0);
    // The rest of the reload applied.
    assert_eq!(
        support::metric(&gw, "ftpalg_reloads_total", &["result=\"ok\""]),
        3.0
    );
    drop(taken);
    gw.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_that_gain_a_metrics_section_start_the_endpoint() {
    let upstream: SocketAddr = NOWHERE.parse().unwrap();
    let gw = gateway(&explicit_rules(upstream, "passive", "")).await;
    assert_eq!(gw.metrics_addr, None);
    assert_eq!(gw.gateway().metrics_addr(), None);
    gw.reload(loaded(&rules(upstream, "")));
    let m = gw.gateway().metrics_addr().expect("started by the reload");
    assert!(answers(m).await);
    gw.shutdown(Duration::from_secs(1)).await;
    // It stops with the gateway.
    assert!(
        support::eventually(Duration::from_secs(2), || std::net::TcpStream::connect(m)
            .is_err())
        .await
    );
}

//! The endpoint's bounds, with its semaphores held from here to stand for
//! peers that keep them: a full endpoint answers at once, never later.

use super::*;
use crate::proxy::shutdown::Shutdown;
use tokio::io::AsyncReadExt;

/// The metrics section of rules that ask for an endpoint on loopback.
fn settings() -> MetricsSettings {
    let rules = crate::rules::from_str(
        "listeners:\n  - name: t\n    listen: 127.0.0.1:0\n    kind: explicit\n    upstream: 127.0.0.1:9\nmetrics:\n  listen: 127.0.0.1:0\n",
    )
    .rules
    .unwrap();
    rules.metrics.unwrap()
}

async fn endpoint() -> (Shutdown, Arc<Endpoint>, SocketAddr) {
    let shutdown = Shutdown::new();
    let ep = serve(Arc::new(Telemetry::new()), shutdown.watch(), &settings()).unwrap();
    let addr = ep.addr();
    (shutdown, ep, addr)
}

/// `GET path`: the answer, or what the socket said, within `limit`.
async fn get(addr: SocketAddr, path: &str, limit: Duration) -> String {
    tokio::time::timeout(limit, async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let _ = s.write_all(req.as_bytes()).await;
        let mut out = Vec::new();
        match s.read_to_end(&mut out).await {
            Ok(_) => String::from_utf8_lossy(&out).into_owned(),
            Err(e) => format!("{}{e}", String::from_utf8_lossy(&out)),
        }
    })
    .await
    .unwrap_or_else(|_| panic!("GET {path}: nothing within {limit:?}"))
}

const PROMPT: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_render_slot_taken_a_scrape_gets_503_and_healthz_200() {
    let (shutdown, ep, m) = endpoint().await;
    let held = ep
        .slots
        .clone()
        .acquire_many_owned(SLOTS as u32)
        .await
        .unwrap();
    for path in ["/metrics", "/status", "/status.json"] {
        let t = Instant::now();
        let r = get(m, path, PROMPT).await;
        assert!(
            r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{path}: {r}"
        );
        assert!(r.contains("\r\nRetry-After: 1\r\n"), "{r}");
        assert!(t.elapsed() < PROMPT, "{path}: {:?}", t.elapsed());
    }
    assert!(get(m, "/healthz", PROMPT)
        .await
        .starts_with("HTTP/1.1 200 OK"));
    drop(held);
    assert!(get(m, "/metrics", PROMPT)
        .await
        .starts_with("HTTP/1.1 200 OK"));
    shutdown.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_a_newcomer_is_refused_at_once() {
    let (shutdown, ep, m) = endpoint().await;
    let held = ep
        .connections
        .clone()
        .acquire_many_owned(CONNECTIONS as u32)
        .await
        .unwrap();
    let t = Instant::now();
    let r = get(m, "/healthz", PROMPT).await;
    // The 503 if it was read before the close, else the close.
    assert!(
        r.starts_with("HTTP/1.1 503 ") || r.is_empty() || r.contains("reset"),
        "{r}"
    );
    assert!(t.elapsed() < PROMPT, "{:?}", t.elapsed());
    drop(held);
    assert!(get(m, "/healthz", PROMPT)
        .await
        .starts_with("HTTP/1.1 200 OK"));
    shutdown.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_waiting_bound_the_oldest_silent_peers_are_closed_first() {
    let (shutdown, ep, m) = endpoint().await;
    const MORE: usize = 10;
    let mut peers = Vec::new();
    for _ in 0..WAITING + MORE {
        peers.push(TcpStream::connect(m).await.unwrap());
    }
    let t = Instant::now();
    // The first MORE are closed well before the head deadline ...
    for p in peers.iter_mut().take(MORE) {
        let mut b = [0u8; 16];
        let r = tokio::time::timeout(PROMPT, p.read(&mut b)).await;
        assert!(matches!(r, Ok(Ok(0) | Err(_))), "{r:?}");
    }
    assert!(t.elapsed() < HEAD_DEADLINE / 2, "{:?}", t.elapsed());
    // ... and the others are still waiting, never more than WAITING.
    let waiting = ep.waiting.lock().unwrap().queue.len();
    assert_eq!(waiting, WAITING);
    assert!(ep.connections.available_permits() >= CONNECTIONS - WAITING - 1);
    for p in peers.iter_mut().skip(MORE).take(3) {
        let mut b = [0u8; 16];
        assert!(
            tokio::time::timeout(Duration::from_millis(50), p.read(&mut b))
                .await
                .is_err()
        );
    }
    shutdown.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_sets_and_clears_the_status_token() {
    let (shutdown, ep, m) = endpoint().await;
    assert!(get(m, "/status", PROMPT)
        .await
        .starts_with("HTTP/1.1 200 OK"));
    let token = StatusToken::new(b"abcdefghijklmnop0123").unwrap();
    let mut settings = settings();
    settings.status_token = Some(token);
    ep.reload(Some(&settings));
    assert!(get(m, "/status", PROMPT).await.starts_with("HTTP/1.1 401 "));
    // Rules without a metrics section keep the token in force.
    ep.reload(None);
    assert!(get(m, "/status", PROMPT).await.starts_with("HTTP/1.1 401 "));
    settings.status_token = None;
    ep.reload(Some(&settings));
    assert!(get(m, "/status", PROMPT)
        .await
        .starts_with("HTTP/1.1 200 OK"));
    shutdown.stop();
}

//! The metrics endpoint: `GET /metrics` (Prometheus text from
//! [`super::events::Telemetry`]) and `GET /healthz`. A bounded server: a few
//! connections at once, each with a deadline and a small request.

use super::Gateway;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

/// Scrapes served at once; more wait in the listen queue.
const CONCURRENT: usize = 8;
/// Longest request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// Deadline for a whole exchange.
const DEADLINE: Duration = Duration::from_secs(5);

/// Binds `addr` and serves until the gateway stops; returns the bound
/// address.
pub async fn serve(gw: Arc<Gateway>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    info!(addr = %bound, "metrics endpoint listening (/metrics, /healthz)");
    let mut stop = gw.shutdown_signal();
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.changed() => return,
            };
            let (stream, _) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let gw = gw.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(DEADLINE, answer(&gw, stream)).await;
                drop(permit);
            });
        }
    });
    Ok(bound)
}

async fn answer(gw: &Gateway, mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            gw.metrics.telemetry.encode(),
        ),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/status") => (
            "200 OK",
            "text/plain; charset=utf-8",
            gw.metrics.telemetry.live.text(),
        ),
        ("GET", "/status.json") => (
            "200 OK",
            "application/json",
            gw.metrics.telemetry.live.json(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(reply.as_bytes()).await?;
    s.shutdown().await
}

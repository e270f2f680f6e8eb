//! Test peers: a small FTP server that can misbehave on purpose, a small
//! FTP client, and helpers to start the gateway on loopback.
#![allow(dead_code)]

pub mod client;
pub mod server;

use ftpalg::proxy::{self, Handle};
use std::net::SocketAddr;

/// Starts a gateway from YAML text (listen on 127.0.0.1:0 to get a free port).
pub async fn gateway(yaml: &str) -> Handle {
    let loaded = ftpalg::rules::from_str(yaml);
    let rules = loaded
        .rules
        .unwrap_or_else(|| panic!("invalid test rules: {:?}", loaded.diagnostics));
    proxy::start(rules).await.expect("gateway starts")
}

/// Rules for one explicit listener in front of `upstream`.
pub fn explicit_rules(upstream: SocketAddr, server_mode: &str, extra: &str) -> String {
    format!(
        "listeners:\n  - name: t\n    listen: 127.0.0.1:0\n    kind: explicit\n    upstream: {upstream}\n    server_mode: {server_mode}\ndata:\n  client_ports: 42000-43999\n  server_ports: 44000-45999\n  passive_probe_timeout: 500ms\n{extra}"
    )
}

/// Deterministic test data.
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// SHA-256 as hex.
pub fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(b);
    d.iter().map(|x| format!("{x:02x}")).collect()
}

/// The sum of every sample of `name` whose labels contain all of `labels`,
/// in Prometheus text.
pub fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// [`sum`] over the gateway's metrics now, read from its telemetry (no
/// endpoint needed).
pub fn metric(gw: &Handle, name: &str, labels: &[&str]) -> f64 {
    sum(&gw.gateway().telemetry().encode(), name, labels)
}

/// Runs a test body under a deadline: a hang fails instead of blocking.
pub async fn within<F: std::future::Future<Output = ()>>(secs: u64, body: F) {
    tokio::time::timeout(std::time::Duration::from_secs(secs), body)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {secs}s"));
}

/// Data channels holding sockets in the gateway now (each running relay
/// holds two descriptors).
pub fn channels(gw: &Handle) -> u64 {
    metric(gw, "ftpalg_pinholes_open", &[]) as u64
}

/// Waits until `cond` holds, up to `limit`; returns whether it did.
pub async fn eventually(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cond()
}

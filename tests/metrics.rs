//! The metrics endpoint counts exactly what a test did through the gateway.

mod support;

use std::time::Duration;
use support::client::{Client, Mode};
use support::server::{Opts, TestServer};
use support::{data, explicit_rules, gateway, sum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_exactly_the_transfers_made() {
    let server = TestServer::start(Opts::default()).await;
    let sizes = [1000usize, 20_000, 300_000];
    for (i, s) in sizes.iter().enumerate() {
        server.put(&format!("f{i}"), data(*s, i as u8));
    }
    let gw = gateway(&explicit_rules(
        server.addr,
        "passive",
        "metrics:\n  listen: 127.0.0.1:0\n",
    ))
    .await;
    let m = gw.metrics_addr.expect("metrics endpoint bound");
    let before = get(m, "/metrics").await;
    assert!(before.starts_with("HTTP/1.1 200 OK"), "{before}");
    assert_eq!(sum(&before, "ftpalg_transfers_total", &[]), 0.0, "{before}");

    let (mut c, _) = Client::connect(gw.addrs[0]).await;
    c.login("u").await;
    let modes = [Mode::Pasv, Mode::Epsv, Mode::Port];
    for (i, mode) in modes.iter().enumerate() {
        c.retr(&format!("f{i}"), *mode).await.unwrap();
    }
    c.stor("up", &data(4321, 9), Mode::Epsv).await.unwrap();
    // A bounce attempt: denied, and counted once.
    assert_eq!(c.cmd("PORT 198,51,100,77,200,10").await.code / 100, 5);

    let text = get(m, "/metrics").await;
    assert_eq!(sum(&text, "ftpalg_sessions_total", &[]), 1.0, "{text}");
    assert_eq!(sum(&text, "ftpalg_sessions_active", &[]), 1.0, "{text}");
    assert_eq!(
        sum(&text, "ftpalg_transfers_total", &["result=\"ok\""]),
        4.0,
        "{text}"
    );
    assert_eq!(
        sum(&text, "ftpalg_transfers_total", &["result=\"failed\""]),
        0.0
    );
    // PORT from the client, passive towards the server: a conversion.
    assert_eq!(
        sum(
            &text,
            "ftpalg_transfers_total",
            &["client_mode=\"PORT\"", "server_mode=\"passive\""]
        ),
        1.0,
        "{text}"
    );
    // The relay data path carried them all (no kernel path configured).
    assert_eq!(
        sum(&text, "ftpalg_transfers_total", &["path=\"relay\""]),
        4.0,
        "{text}"
    );
    assert_eq!(
        sum(&text, "ftpalg_transfers_total", &["path=\"kernel\""]),
        0.0,
        "{text}"
    );
    assert_eq!(
        sum(
            &text,
            "ftpalg_transfer_bytes_total",
            &["direction=\"down\""]
        ),
        sizes.iter().sum::<usize>() as f64,
        "{text}"
    );
    assert_eq!(
        sum(&text, "ftpalg_transfer_bytes_total", &["direction=\"up\""]),
        4321.0
    );
    assert_eq!(sum(&text, "ftpalg_denials_total", &[]), 1.0, "{text}");
    assert_eq!(sum(&text, "ftpalg_transfer_setup_seconds_count", &[]), 4.0);
    assert!(text.contains("ftpalg_build_info{version=\""), "{text}");

    assert_eq!(c.cmd("QUIT").await.code, 221);
    let mut left = f64::NAN;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = sum(&get(m, "/metrics").await, "ftpalg_sessions_active", &[]);
        if left == 0.0 {
            break;
        }
    }
    assert_eq!(left, 0.0, "the ended session is still counted as active");
    let health = get(m, "/healthz").await;
    assert!(
        health.starts_with("HTTP/1.1 200 OK") && health.ends_with("ok\n"),
        "{health}"
    );
    assert!(get(m, "/nothing").await.starts_with("HTTP/1.1 404"));
    gw.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_pinhole_is_counted() {
    let server = TestServer::start(Opts::default()).await;
    server.put("f", data(10, 1));
    let gw = gateway(
        &explicit_rules(server.addr, "passive", "metrics:\n  listen: 127.0.0.1:0\n")
            .replace("data:\n", "data:\n  pinhole_timeout: 300ms\n"),
    )
    .await;
    let m = gw.metrics_addr.unwrap();
    let (mut c, _) = Client::connect(gw.addrs[0]).await;
    c.login("u").await;
    assert_eq!(c.cmd("EPSV").await.code, 229);
    // The client asks for the file but never connects to the pinhole.
    let r = c.cmd("RETR f").await;
    assert!(r.code == 150 || r.code / 100 == 4, "{}", r.text);
    let mut expired = 0.0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        expired = sum(
            &get(m, "/metrics").await,
            "ftpalg_pinholes_expired_total",
            &[],
        );
        if expired > 0.0 {
            break;
        }
    }
    assert_eq!(expired, 1.0);
    gw.shutdown(Duration::from_secs(1)).await;
}

/// The rows of the markdown table under `heading` in `docs/metrics.md`,
/// each as its cells.
fn doc_table(heading: &str) -> Vec<Vec<String>> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("docs/metrics.md has no section {heading:?}"));
    section
        .lines()
        .filter(|l| l.starts_with('|'))
        // The header and the separator line.
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The `code` spans of a table cell.
fn spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// The family a sample name belongs to, as `# TYPE` names it.
fn family(name: &str, kind: &str) -> String {
    let suffix = match kind {
        "counter" => "_total",
        "info" => "_info",
        _ => "",
    };
    name.strip_suffix(suffix).unwrap_or(name).to_string()
}

/// The values of `label` in the samples of `metric`.
fn label_values(text: &str, metric: &str, label: &str) -> std::collections::BTreeSet<String> {
    let key = format!("{label}=\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter_map(|l| {
            let at = l.find(&key)? + key.len();
            Some(l[at..].split('"').next()?.to_string())
        })
        .collect()
}

/// A scrape of a gateway that has had no traffic at all has every family
/// docs/metrics.md lists, with its type, and no other; every label value
/// the page says is there from the start is, at zero, and is the only one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_before_any_traffic_finds_every_documented_family() {
    let gw = gateway(&explicit_rules(
        "127.0.0.1:9".parse().unwrap(),
        "passive",
        "metrics:\n  listen: 127.0.0.1:0\n",
    ))
    .await;
    let reply = get(gw.metrics_addr.unwrap(), "/metrics").await;
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    let text = reply.split("\r\n\r\n").nth(1).unwrap().to_string();
    let families = doc_table("Families");
    assert!(families.len() >= 19, "{families:?}");
    let mut documented = Vec::new();
    for row in &families {
        let (name, kind) = (spans(&row[0])[0], row[1].as_str());
        let base = family(name, kind);
        assert!(
            text.contains(&format!("\n# TYPE {base} {kind}\n")),
            "docs/metrics.md lists {name} ({kind}), which the first scrape lacks:\n{text}"
        );
        let sample = if kind == "histogram" {
            format!("{name}_count")
        } else {
            name.to_string()
        };
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{sample} "))
                    || l.starts_with(&format!("{sample}{{"))),
            "{name} has no sample in the first scrape:\n{text}"
        );
        documented.push(base);
    }
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let base = line.split(' ').nth(2).unwrap();
        assert!(
            documented.iter().any(|d| d == base),
            "{base} is scraped but docs/metrics.md does not list it"
        );
    }
    let labels = doc_table("Label values");
    assert!(labels.len() >= 8, "{labels:?}");
    for row in &labels {
        let (metric, label) = (spans(&row[0])[0], spans(&row[1])[0]);
        let want: std::collections::BTreeSet<String> =
            spans(&row[2]).into_iter().map(String::from).collect();
        assert!(!want.is_empty(), "{row:?}");
        assert_eq!(
            label_values(&text, metric, label),
            want,
            "{metric} {label}: the values in the first scrape are not the documented ones"
        );
        for v in &want {
            assert_eq!(
                sum(&text, metric, &[&format!("{label}=\"{v}\"")]),
                0.0,
                "{metric} {label}={v}"
            );
        }
    }
    gw.shutdown(Duration::from_secs(1)).await;
}

/// Each family's HELP text names every value a label documented as known
/// in advance takes: what the HELP says cannot contradict the values.
#[test]
fn help_texts_name_every_documented_label_value() {
    let text = ftpalg::proxy::events::Telemetry::new().encode();
    for row in doc_table("Label values") {
        let (metric, label) = (spans(&row[0])[0], spans(&row[1])[0]);
        let base = family(metric, "counter");
        let help = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# HELP {base} ")))
            .unwrap_or_else(|| panic!("no HELP for {base}"));
        let named = |v: &str| {
            help.match_indices(v).any(|(at, _)| {
                let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
                !help[..at].ends_with(word) && !help[at + v.len()..].starts_with(word)
            })
        };
        for v in spans(&row[2]) {
            assert!(
                named(v),
                "the HELP of {base} does not name its {label} {v:?}: {help}"
            );
        }
    }
}

/// Every metric the Grafana dashboard queries is one the gateway exports.
#[test]
fn the_dashboard_queries_only_exported_metrics() {
    // Every family is there before any event.
    let t = ftpalg::proxy::events::Telemetry::new();
    let text = t.encode();
    let dash = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/grafana-dashboard.json"
    ))
    .unwrap();
    let mut seen = 0;
    for (i, _) in dash.match_indices("ftpalg_") {
        let name: String = dash[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = ["_total", "_bucket", "_info", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        assert!(
            text.contains(&format!("# TYPE {base} ")),
            "the dashboard queries {name}, which is not exported:\n{text}"
        );
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} metric references found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_live_sessions_and_transfers_with_bytes_so_far() {
    let server = TestServer::start(Opts::default()).await;
    let size = 8 * 1024 * 1024;
    server.put("big", data(size, 3));
    let gw = gateway(&explicit_rules(
        server.addr,
        "passive",
        "metrics:\n  listen: 127.0.0.1:0\n",
    ))
    .await;
    let m = gw.metrics_addr.unwrap();
    let (mut c, _) = Client::connect(gw.addrs[0]).await;
    c.login("alice").await;
    c.read_delay = Some(Duration::from_millis(20));
    let transfer = tokio::spawn(async move {
        let r = c.retr("big", Mode::Epsv).await;
        (c, r)
    });
    // Poll until the transfer shows with some bytes moved, for at most 10 s.
    let mut seen = None;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let body = get(m, "/status.json").await;
        let json = body.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let t = &v[0]["transfers"][0];
        if t["bytes_down"].as_u64().unwrap_or(0) > 0 {
            seen = Some(v);
            break;
        }
    }
    let v = seen.expect("a running transfer with bytes moved within 10 s");
    let s = &v[0];
    assert_eq!(s["user"], "alice", "{v}");
    assert_eq!(s["server"], server.addr.to_string(), "{v}");
    assert!(
        s["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{v}"
    );
    let t = &s["transfers"][0];
    assert_eq!(t["client_mode"], "EPSV", "{v}");
    assert_eq!(t["server_mode"], "passive", "{v}");
    assert_eq!(t["command"], "RETR", "{v}");
    assert_eq!(t["file"], "big", "{v}");
    let so_far = t["bytes_down"].as_u64().unwrap();
    assert!(so_far > 0 && so_far < size as u64, "{v}");
    let text = get(m, "/status").await;
    assert!(
        text.contains("1 session(s)") && text.contains("alice"),
        "{text}"
    );
    let (_c, r) = transfer.await.unwrap();
    assert_eq!(r.unwrap().len(), size);
    let mut left = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = get(m, "/status.json").await;
        if left.ends_with("\"transfers\":[]}]") {
            break;
        }
    }
    assert!(left.ends_with("\"transfers\":[]}]"), "{left}");
    gw.shutdown(Duration::from_secs(1)).await;
}

/// A transfer whose session ends right after its 226 is still logged and
/// counted, even while the client keeps its end of the data connection
/// open across QUIT (as `examples/ftpload.rs` does): the relay has
/// delivered everything, so it is left to end, not cut unlogged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_followed_at_once_by_quit_is_counted() {
    let server = TestServer::start(Opts::default()).await;
    server.put("f", data(1024, 3));
    let gw = gateway(&explicit_rules(
        server.addr,
        "passive",
        "metrics:\n  listen: 127.0.0.1:0\n",
    ))
    .await;
    let m = gw.metrics_addr.expect("metrics endpoint bound");
    const SESSIONS: usize = 10;
    for _ in 0..SESSIONS {
        let (mut c, _) = Client::connect(gw.addrs[0]).await;
        c.login("u").await;
        let r = c.cmd("EPSV").await;
        assert_eq!(r.code, 229, "{}", r.text);
        let port: u16 = r
            .text
            .split("|||")
            .nth(1)
            .unwrap()
            .split('|')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let mut d = tokio::net::TcpStream::connect((gw.addrs[0].ip(), port))
            .await
            .unwrap();
        assert_eq!(c.cmd("RETR f").await.code, 150);
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), d.read_to_end(&mut got))
            .await
            .expect("download in time")
            .unwrap();
        assert_eq!(got.len(), 1024);
        assert_eq!(c.reply().await.code, 226);
        assert_eq!(c.cmd("QUIT").await.code, 221);
        drop(d);
    }
    // Every session has ended once the gateway has none left.
    let mut text = String::new();
    for _ in 0..100 {
        text = get(m, "/metrics").await;
        if sum(&text, "ftpalg_sessions_active", &[]) == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sum(&text, "ftpalg_sessions_active", &[]), 0.0, "{text}");
    assert_eq!(
        sum(&text, "ftpalg_transfers_total", &["result=\"ok\""]),
        SESSIONS as f64,
        "{text}"
    );
}

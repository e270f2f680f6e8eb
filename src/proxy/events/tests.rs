//! Each report counts once, and logs.

use super::*;

/// The value of the first sample whose line starts with `prefix`.
pub(crate) fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn each_report_counts_once() {
    let t = Telemetry::new();
    let client: SocketAddr = "100.64.0.2:5000".parse().unwrap();
    t.session_start(1, client, "l");
    t.transfer(TransferReport {
        session: 1,
        channel: 1,
        client,
        server: "198.51.100.10:21",
        user: "u",
        direction: "download",
        command: "RETR",
        file: "f",
        client_mode: "PORT",
        server_mode: "passive",
        path: "relay",
        setup: Some(Duration::from_millis(3)),
        elapsed: Duration::from_millis(10),
        moved: (0, 1234),
        end: TransferEnd::Completed,
    });
    t.denied(Some(1), client, "u", "bounce", "PORT to another host", None);
    t.reload(false, "r.yaml", Some("bad"));
    t.evicted(
        2,
        client.ip(),
        Duration::from_secs(3),
        3,
        "too many sessions",
    );
    t.login_timeout(3, client, None);
    t.stranger(1, "client", "100.64.0.9:4000".parse().unwrap());
    let text = t.encode();
    assert_eq!(value(&text, "ftpalg_sessions_total "), Some(1.0), "{text}");
    assert_eq!(value(&text, "ftpalg_sessions_active "), Some(1.0), "{text}");
    assert_eq!(
        value(
            &text,
            "ftpalg_transfers_total{result=\"ok\",client_mode=\"PORT\",server_mode=\"passive\",path=\"relay\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "ftpalg_transfer_bytes_total{direction=\"down\"}"),
        Some(1234.0)
    );
    assert_eq!(
        value(&text, "ftpalg_denials_total{reason=\"bounce\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "ftpalg_reloads_total{result=\"refused\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "ftpalg_transfer_setup_seconds_count"),
        Some(1.0)
    );
    assert_eq!(value(&text, "ftpalg_sessions_evicted_total "), Some(1.0));
    assert_eq!(value(&text, "ftpalg_login_timeouts_total "), Some(1.0));
    assert_eq!(
        value(&text, "ftpalg_pinhole_strangers_total{side=\"client\"}"),
        Some(1.0)
    );
    assert!(text.contains("ftpalg_build_info{version=\""), "{text}");
    t.session_end(1, client, Some("u"), None, 0.5, "client quit");
    assert_eq!(value(&t.encode(), "ftpalg_sessions_active "), Some(0.0));
}

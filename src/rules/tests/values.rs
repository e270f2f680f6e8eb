//! Single values: counts, port ranges, networks, durations, and the defaults of the data, limits and operations sections.

use super::*;

#[test]
fn valid_base() {
    let l = from_str(BASE);
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    let r = l.rules.unwrap();
    assert_eq!(
        r.listeners[0].upstream,
        Some("198.51.100.10:21".parse().unwrap())
    );
    assert_eq!(
        r.data.client_ports,
        PortRange {
            first: 40000,
            last: 40999
        }
    );
    assert!(
        r.security.bounce_protection && r.security.refuse_low_ports && r.security.check_data_peer
    );
    assert!(!r.security.trust_passive_address);
}

#[test]
fn counts_must_be_positive() {
    assert_eq!(
        one_error("limits:\n  sessions: 0\n"),
        (7, 13, "sessions must be at least 1".into())
    );
    assert_eq!(
        one_error("limits:\n  sessions_per_client: 0\n"),
        (7, 24, "sessions_per_client must be at least 1".into())
    );
    let r = from_str(&format!("{BASE}limits:\n  sessions: 7\n"))
        .rules
        .unwrap();
    assert_eq!((r.limits.sessions, r.limits.sessions_per_client), (7, 20));
}

#[test]
fn port_range_errors() {
    assert_eq!(
        one_error("data:\n  client_ports: 5000-4000\n"),
        (
            7,
            17,
            "client_ports '5000-4000' is empty: the first port is above the last".into()
        )
    );
    assert_eq!(
        one_error("data:\n  client_ports: 0-4000\n"),
        (
            7,
            17,
            "client_ports '0-4000' has a port out of range".into()
        )
    );
    assert_eq!(
        one_error("data:\n  server_ports: 1-70000\n"),
        (
            7,
            17,
            "server_ports '1-70000' has a port out of range".into()
        )
    );
    assert_eq!(
        one_error("data:\n  server_ports: lots\n"),
        (7, 17, "server_ports 'lots' is not a port range".into())
    );
}

#[test]
fn overlapping_ranges() {
    let (l, c, m) = one_error("data:\n  client_ports: 40000-40999\n  server_ports: 40500-41500\n");
    assert_eq!((l, c), (8, 17));
    assert_eq!(
        m,
        "client_ports 40000-40999 and server_ports 40500-41500 overlap"
    );
}

#[test]
fn small_range_warns() {
    let d = diags("data:\n  client_ports: 40000-40003\n");
    assert_eq!(
        d,
        vec![(
            7,
            17,
            Severity::Warning,
            "client_ports 40000-40003 holds only 4 ports".into()
        )]
    );
}

#[test]
fn bad_cidr() {
    assert_eq!(
        one_error("networks:\n  lan: [100.64.0.0/33]\n"),
        (7, 9, "'100.64.0.0/33' is not a CIDR".into())
    );
    assert_eq!(
        one_error("networks:\n  lan: []\n"),
        (7, 8, "network 'lan' is empty".into())
    );
    assert_eq!(
        one_error("networks:\n  any: [1.2.3.0/24]\n"),
        (7, 8, "network name 'any' is built in".into())
    );
}

#[test]
fn bad_durations() {
    assert_eq!(
        one_error("data:\n  pinhole_timeout: soon\n"),
        (7, 20, "pinhole_timeout: 'soon' is not a duration".into())
    );
    assert_eq!(
        one_error("data:\n  pinhole_timeout: 6m\n"),
        (7, 20, "pinhole_timeout must be at most 300s".into())
    );
    assert_eq!(
        one_error("limits:\n  connect_timeout: 0s\n"),
        (7, 20, "connect_timeout must be longer than zero".into())
    );
    assert_eq!(
        one_error("limits:\n  login_timeout: 0s\n"),
        (7, 18, "login_timeout must be longer than zero".into())
    );
    assert_eq!(
        one_error("limits:\n  login_timeout: later\n"),
        (7, 18, "login_timeout: 'later' is not a duration".into())
    );
}

#[test]
fn login_timeout_defaults_to_thirty_seconds() {
    let r = from_str(BASE).rules.unwrap();
    assert_eq!(r.limits.login_timeout, Duration::from_secs(30));
    let r = from_str(&format!("{BASE}limits:\n  login_timeout: 10s\n"))
        .rules
        .unwrap();
    assert_eq!(r.limits.login_timeout, Duration::from_secs(10));
}

#[test]
fn operations_keys() {
    let r = from_str(BASE).rules.unwrap();
    assert_eq!(r.limits.control_keepalive, Some(Duration::from_secs(60)));
    assert_eq!((r.metrics, r.run_as.user.clone()), (None, None));
    let r = from_str(&format!(
        "{BASE}limits:\n  control_keepalive: off\nmetrics:\n  listen: 127.0.0.1:9121\nrun_as:\n  user: nobody\n  group: \"0\"\n"
    ))
    .rules
    .unwrap();
    assert_eq!(r.limits.control_keepalive, None);
    let m = r.metrics.as_ref().unwrap();
    assert_eq!(m.listen, "127.0.0.1:9121".parse().unwrap());
    assert_eq!((&m.status_token_file, &m.status_token), (&None, &None));
    assert_eq!(r.run_as.user.as_deref(), Some("nobody"));
    assert_eq!(r.run_as.group.as_deref(), Some("0"));
    let r = from_str(&format!("{BASE}limits:\n  control_keepalive: 20s\n"))
        .rules
        .unwrap();
    assert_eq!(r.limits.control_keepalive, Some(Duration::from_secs(20)));
    assert_eq!(
        one_error("metrics:\n  listen: nowhere\n"),
        (
            7,
            11,
            "metrics listen 'nowhere' is not an address:port".into()
        )
    );
    assert_eq!(
        one_error("limits:\n  control_keepalive: soon\n"),
        (7, 22, "control_keepalive: 'soon' is not a duration".into())
    );
    let (l, c, m) = one_error("metrics:\n  lisen: 127.0.0.1:9121\n");
    assert_eq!((l, c), (7, 3));
    assert!(m.contains("unknown field `lisen`"), "{m}");
}

#[test]
fn data_path_defaults_to_relay_and_reads_each_value() {
    assert_eq!(from_str(BASE).rules.unwrap().data.path, DataPath::Relay);
    for (text, want) in [
        ("relay", DataPath::Relay),
        ("kernel", DataPath::Kernel),
        ("auto", DataPath::Auto),
    ] {
        let l = from_str(&format!("{BASE}data:\n  path: {text}\n"));
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        assert_eq!(l.rules.unwrap().data.path, want);
    }
}

#[test]
fn bandwidth_cap_is_refused_where_the_kernel_moves_transfers() {
    for path in ["kernel", "auto"] {
        let (line, _, msg) = one_error(&format!(
            "data:\n  path: {path}\nlimits:\n  bandwidth_per_session: 1MiB/s\n"
        ));
        assert_eq!(line, 9, "{msg}");
        assert!(msg.contains("relay only") && msg.contains(path), "{msg}");
    }
    let d = diags("data:\n  path: relay\nlimits:\n  bandwidth_per_session: 1MiB/s\n");
    assert!(d.iter().all(|x| x.2 != Severity::Error), "{d:?}");
}

#[test]
fn shutdown_grace_defaults_to_the_pinhole_timeout_and_at_least_thirty_seconds() {
    let r = from_str(BASE).rules.unwrap();
    assert_eq!(r.limits.shutdown_grace, Duration::from_secs(30));
    let r = from_str(&format!("{BASE}data:\n  pinhole_timeout: 90s\n"))
        .rules
        .unwrap();
    assert_eq!(r.limits.shutdown_grace, Duration::from_secs(90));
    let r = from_str(&format!("{BASE}limits:\n  shutdown_grace: 15m\n"))
        .rules
        .unwrap();
    assert_eq!(r.limits.shutdown_grace, Duration::from_secs(900));
}

#[test]
fn shutdown_grace_is_bounded() {
    assert_eq!(
        one_error("limits:\n  shutdown_grace: 25h\n"),
        (7, 19, "shutdown_grace must be at most 24h".into())
    );
    assert_eq!(
        one_error("limits:\n  shutdown_grace: 0s\n"),
        (7, 19, "shutdown_grace must be longer than zero".into())
    );
    assert_eq!(
        one_error("limits:\n  shutdown_grace: soon\n"),
        (7, 19, "shutdown_grace: 'soon' is not a duration".into())
    );
}

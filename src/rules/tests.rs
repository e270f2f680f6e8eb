use super::*;
use crate::ftp::command as cmd;
use crate::ftp::session::{ClientMode, CommandContext, Policy, Verdict};
use std::sync::Arc;

const BASE: &str = "listeners:\n  - name: a\n    listen: 127.0.0.1:2121\n    kind: explicit\n    upstream: 198.51.100.10:21\n";

/// Compiles BASE plus `extra` and returns the diagnostics as
/// (line, column, severity, message).
fn diags(extra: &str) -> Vec<(u32, u32, Severity, String)> {
    let text = format!("{BASE}{extra}");
    from_str(&text)
        .diagnostics
        .into_iter()
        .map(|d| (d.line, d.column, d.severity, d.message))
        .collect()
}

fn one_error(extra: &str) -> (u32, u32, String) {
    let d = diags(extra);
    let errors: Vec<_> = d.iter().filter(|x| x.2 == Severity::Error).collect();
    assert_eq!(errors.len(), 1, "{d:?}");
    (errors[0].0, errors[0].1, errors[0].3.clone())
}

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
fn unknown_key() {
    let (l, c, m) = one_error("data:\n  clent_ports: 1-2\n");
    assert_eq!((l, c), (7, 3));
    assert!(m.contains("unknown field `clent_ports`"), "{m}");
}

#[test]
fn wrong_type() {
    let (l, c, m) = one_error("limits:\n  sessions: many\n");
    assert_eq!((l, c), (7, 13));
    assert!(m.contains("invalid"), "{m}");
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
fn strict_booleans() {
    let (l, c, m) = one_error("security:\n  bounce_protection: yes\n");
    assert_eq!((l, c), (7, 22));
    assert!(m.contains("boolean"), "{m}");
}

#[test]
fn unknown_enum_value() {
    let (l, _, m) = one_error("data:\n  server_mode: sometimes\n");
    assert_eq!(l, 7);
    assert!(m.contains("unknown value `sometimes`"), "{m}");
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
fn unknown_network_in_rule() {
    let (l, c, m) = one_error("rules:\n  - match: { client: lan }\n    action: deny\n");
    assert_eq!((l, c), (7, 22));
    assert_eq!(m, "'lan' is neither a network name nor a CIDR");
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
fn listener_errors() {
    let d = from_str("listeners:\n  - name: a\n    listen: 127.0.0.1:99999\n    kind: explicit\n    upstream: 1.2.3.4:21\n").diagnostics;
    assert_eq!(
        (d[0].line, d[0].column, d[0].message.as_str()),
        (3, 13, "'127.0.0.1:99999' is not an address:port")
    );
    let d = from_str("listeners:\n  - name: a\n    listen: 127.0.0.1:21\n    kind: explicit\n")
        .diagnostics;
    assert_eq!(
        (d[0].line, d[0].column, d[0].message.as_str()),
        (4, 11, "a explicit listener needs an upstream")
    );
    let d = from_str("listeners:\n  - name: a\n    listen: 127.0.0.1:21\n    kind: user-at-host\n")
        .diagnostics;
    assert_eq!(d[0].line, 4);
    assert!(d[0].message.contains("needs servers"));
    let d =
        from_str("listeners:\n  - name: a\n    listen: 127.0.0.1:40001\n    kind: transparent\n")
            .diagnostics;
    assert_eq!(
        (d[0].line, d[0].message.as_str()),
        (3, "port 40001 is inside a data port range")
    );
    let d = from_str(&format!(
        "{BASE}  - name: a\n    listen: 127.0.0.1:2121\n    kind: transparent\n"
    ))
    .diagnostics;
    let msgs: Vec<_> = d.iter().map(|x| (x.line, x.message.as_str())).collect();
    assert_eq!(
        msgs,
        vec![
            (6, "a listener named 'a' already exists"),
            (7, "127.0.0.1:2121 is already used by another listener")
        ]
    );
    let d = from_str("listeners: []\n").diagnostics;
    assert_eq!(d[0].message, "no listeners");
}

#[test]
fn bad_rule_parts() {
    assert_eq!(
        one_error("rules:\n  - match: { command: [stor] }\n    action: deny\n").2,
        "'stor' is not a command or a class"
    );
    assert_eq!(
        one_error("rules:\n  - match: { data_mode: sideways }\n    action: deny\n").2,
        "data_mode 'sideways' is unknown"
    );
    assert_eq!(
        one_error("rules:\n  - match: { listener: b }\n    action: deny\n").2,
        "no listener is named 'b'"
    );
    assert_eq!(
        one_error("rules:\n  - action: deny\n    reply: \"250 fine\"\n"),
        (
            8,
            12,
            "reply '250 fine' does not start with a 4xx or 5xx code and a space".into()
        )
    );
}

#[test]
fn shadowed_rule_warns() {
    let d = diags("rules:\n  - name: no-writes\n    match: { command: [write] }\n    action: deny\n  - name: no-dele-for-bob\n    match: { command: [DELE], user: bob }\n    action: deny\n");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].2, Severity::Warning);
    assert_eq!((d[0].0, d[0].1), (10, 11));
    assert!(
        d[0].3
            .starts_with("rule 'no-dele-for-bob' can never match: rule 'no-writes'"),
        "{}",
        d[0].3
    );
    // Narrower first, wider second: no warning.
    let d = diags("rules:\n  - match: { command: [DELE], user: bob }\n    action: allow\n  - match: { command: [write] }\n    action: deny\n");
    assert!(d.is_empty(), "{d:?}");
    // Different networks: no warning.
    let d = diags("rules:\n  - match: { client: 100.64.0.0/25 }\n    action: deny\n  - match: { client: 100.64.0.0/24 }\n    action: deny\n");
    assert!(d.is_empty(), "{d:?}");
    let d = diags("rules:\n  - match: { client: 100.64.0.0/24 }\n    action: deny\n  - match: { client: 100.64.0.128/25 }\n    action: deny\n");
    assert_eq!(d.len(), 1);
}

fn policy(extra: &str) -> RulesPolicy {
    let r = from_str(&format!("{BASE}{extra}")).rules.expect("valid");
    RulesPolicy::new(Arc::new(r), 0)
}

fn ctx(
    verb: crate::ftp::command::Verb,
    user: Option<&'static str>,
    client: &str,
) -> CommandContext<'static> {
    CommandContext {
        verb,
        user,
        client: client.parse().unwrap(),
        server: Some("198.51.100.10:21".parse().unwrap()),
        data_mode: None,
    }
}

#[test]
fn first_match_wins() {
    let p = policy("rules:\n  - name: bob-may-delete\n    match: { user: bob, command: [DELE] }\n    action: allow\n  - name: read-only\n    match: { command: [write] }\n    action: deny\n    reply: \"553 Read-only.\"\n");
    assert_eq!(
        p.check_command(&ctx(cmd::DELE, Some("bob"), "100.64.0.2")),
        Verdict::Allow
    );
    assert_eq!(
        p.check_command(&ctx(cmd::DELE, Some("alice"), "100.64.0.2")),
        Verdict::Deny {
            code: 553,
            text: "Read-only.".into(),
            rule: "read-only".into()
        }
    );
    assert_eq!(
        p.check_command(&ctx(cmd::RETR, Some("alice"), "100.64.0.2")),
        Verdict::Allow
    );
    assert!(matches!(
        p.check_command(&ctx(cmd::STOR, Some("bob"), "100.64.0.2")),
        Verdict::Deny { .. }
    ));
}

#[test]
fn match_on_networks_and_data_mode() {
    let p = policy("networks:\n  lan: [100.64.0.0/24]\nrules:\n  - name: lan-no-active\n    match: { client: lan, data_mode: active }\n    action: deny\n  - name: dmz-server\n    match: { server: 203.0.113.0/24 }\n    action: deny\n");
    let mut c = ctx(cmd::PORT, None, "100.64.0.2");
    c.data_mode = Some(ClientMode::Port);
    assert!(matches!(p.check_command(&c), Verdict::Deny { rule, .. } if rule == "lan-no-active"));
    c.client = "198.51.100.20".parse().unwrap();
    assert_eq!(p.check_command(&c), Verdict::Allow);
    c.data_mode = Some(ClientMode::Pasv);
    c.client = "100.64.0.2".parse().unwrap();
    assert_eq!(p.check_command(&c), Verdict::Allow);
    c.server = Some("203.0.113.10:21".parse().unwrap());
    assert!(matches!(p.check_command(&c), Verdict::Deny { rule, .. } if rule == "dmz-server"));
}

#[test]
fn default_deny_reply_names_the_rule() {
    let p = policy("rules:\n  - name: nope\n    action: deny\n");
    assert_eq!(
        p.check_command(&ctx(cmd::NOOP, None, "100.64.0.2")),
        Verdict::Deny {
            code: 550,
            text: "Denied by policy (nope).".into(),
            rule: "nope".into()
        }
    );
}

#[test]
fn advertise_and_reach() {
    let r = from_str("listeners:\n  - name: r\n    listen: 198.51.100.1:21\n    kind: reverse\n    upstream: 203.0.113.10:21\n    advertise:\n      - clients: 100.64.0.0/24\n        address: 100.64.0.1\n      - clients: any\n        address: 198.51.100.1\n").rules.unwrap();
    let l = &r.listeners[0];
    assert_eq!(
        l.advertise_for("100.64.0.2".parse().unwrap()),
        Some("100.64.0.1".parse().unwrap())
    );
    assert_eq!(
        l.advertise_for("198.51.100.20".parse().unwrap()),
        Some("198.51.100.1".parse().unwrap())
    );
    let r = from_str("listeners:\n  - name: u\n    listen: 127.0.0.1:2121\n    kind: user-at-host\n    servers: [198.51.100.0/24]\n").rules.unwrap();
    assert!(r.listeners[0].may_reach("198.51.100.10".parse().unwrap()));
    assert!(!r.listeners[0].may_reach("127.0.0.1".parse().unwrap()));
}

/// `check --explain` for every shipped example, compared with
/// tests/golden/NAME.explain (regenerate with UPDATE_GOLDEN=1).
#[test]
fn explain_golden() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let (r, warnings) = load(&path).unwrap();
        assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
        let got = explain(&r);
        let golden = root.join("tests/golden").join(format!(
            "{}.explain",
            path.file_stem().unwrap().to_string_lossy()
        ));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &got).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("missing {}", golden.display()));
        assert_eq!(got, want, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 5);
}

#[test]
fn every_error_at_once_with_nearest_key() {
    let text = format!(
        "{BASE}data:\n  pinhole_timout: 30s\n  client_ports: 5000-4000\nlimits:\n  sessions: many\n  contrl_idle_timeout: 1m\nsecurity:\n  tls: passthru\n"
    );
    let l = from_str(&text);
    assert!(l.rules.is_none());
    let got: Vec<(u32, u32, String, String)> = l
        .diagnostics
        .iter()
        .map(|d| (d.line, d.column, d.message.clone(), d.hint.clone()))
        .collect();
    assert_eq!(got.len(), 5, "{got:#?}");
    assert_eq!((got[0].0, got[0].1), (7, 3), "{got:#?}");
    assert!(
        got[0].2.contains("unknown field `pinhole_timout`"),
        "{got:#?}"
    );
    assert_eq!(got[0].3, "did you mean `pinhole_timeout`?");
    // The range error comes from the compiler, which still ran on the rest.
    assert_eq!((got[1].0, got[1].1), (8, 17), "{got:#?}");
    assert!(got[1].2.contains("is empty"), "{got:#?}");
    assert_eq!((got[2].0, got[2].1), (10, 13), "{got:#?}");
    assert!(got[2].2.contains("invalid"), "{got:#?}");
    assert_eq!((got[3].0, got[3].1), (11, 3), "{got:#?}");
    assert_eq!(got[3].3, "did you mean `control_idle_timeout`?");
    assert_eq!((got[4].0, got[4].1), (13, 8), "{got:#?}");
    assert!(
        got[4].3.starts_with("did you mean `passthrough`?"),
        "{got:#?}"
    );
}

#[test]
fn nearest_key_only_when_close() {
    use super::structure::nearest;
    assert_eq!(
        nearest("pinhole_timout", &["pinhole_timeout", "client_ports"]),
        Some("pinhole_timeout")
    );
    assert_eq!(
        nearest("colour", &["pinhole_timeout", "client_ports"]),
        None
    );
}

#[test]
fn operations_keys() {
    let r = from_str(BASE).rules.unwrap();
    assert_eq!(r.limits.control_keepalive, Some(Duration::from_secs(60)));
    assert_eq!((r.metrics, r.run_as.user.clone()), (None, None));
    let r = from_str(&format!(
        "{BASE}limits:\n  control_keepalive: off\nmetrics:\n  listen: 127.0.0.1:9121\nrun_as:\n  user: ftpalg\n  group: nogroup\n"
    ))
    .rules
    .unwrap();
    assert_eq!(r.limits.control_keepalive, None);
    let m = r.metrics.as_ref().unwrap();
    assert_eq!(m.listen, "127.0.0.1:9121".parse().unwrap());
    assert_eq!((&m.status_token_file, &m.status_token), (&None, &None));
    assert_eq!(r.run_as.user.as_deref(), Some("ftpalg"));
    assert_eq!(r.run_as.group.as_deref(), Some("nogroup"));
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
fn data_path_unknown_value_points_at_it() {
    let (l, c, m) = one_error("data:\n  path: nftables\n");
    assert_eq!((l, c), (7, 9));
    assert!(m.contains("unknown value `nftables`"), "{m}");
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

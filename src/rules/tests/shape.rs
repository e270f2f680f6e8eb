//! The file's shape: misspelt keys, wrong types, unknown words, and every one of them reported in one run.

use super::*;

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
fn data_path_unknown_value_points_at_it() {
    let (l, c, m) = one_error("data:\n  path: nftables\n");
    assert_eq!((l, c), (7, 9));
    assert!(m.contains("unknown value `nftables`"), "{m}");
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

/// The messages of every error of `text`, in file order.
fn errors_of(text: &str) -> Vec<(u32, u32, String)> {
    from_str(text)
        .diagnostics
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| (d.line, d.column, d.message))
        .collect()
}

#[test]
fn a_bad_required_word_hides_nothing_else() {
    // `dney` used to make the whole file uncompilable: the unknown network
    // and the unknown data mode below it went unreported.
    let got = errors_of(&format!(
        "{BASE}rules:\n  - name: r1\n    match: {{ client: nowhere }}\n    action: dney\n  - name: r2\n    match: {{ data_mode: sideways }}\n    action: deny\n"
    ));
    let lines: Vec<u32> = got.iter().map(|e| e.0).collect();
    assert_eq!(lines, vec![8, 9, 11], "{got:#?}");
    assert!(got[0].2.contains("'nowhere'"), "{got:#?}");
    assert!(got[1].2.contains("unknown value `dney`"), "{got:#?}");
    assert!(got[2].2.contains("'sideways'"), "{got:#?}");
}

#[test]
fn a_bad_listener_kind_hides_nothing_else() {
    let got = errors_of("listeners:\n  - name: a\n    listen: nowhere\n    kind: explict\ndata:\n  client_ports: 5000-4000\n");
    let lines: Vec<u32> = got.iter().map(|e| e.0).collect();
    assert_eq!(lines, vec![3, 4, 6], "{got:#?}");
    assert!(got[0].2.contains("'nowhere'"), "{got:#?}");
    assert!(got[1].2.contains("unknown value `explict`"), "{got:#?}");
}

#[test]
fn one_bad_item_keeps_the_rest_of_its_list() {
    // A wrong type in the first rule used to drop the whole file from the
    // compile, hiding the second rule's unknown network.
    let got = errors_of(&format!(
        "{BASE}rules:\n  - match: {{ client: {{ a: b }} }}\n    action: deny\n  - match: {{ server: nowhere }}\n    action: deny\n"
    ));
    let lines: Vec<u32> = got.iter().map(|e| e.0).collect();
    assert_eq!(lines, vec![7, 9], "{got:#?}");
    assert!(got[1].2.contains("'nowhere'"), "{got:#?}");
    // The same in a flow list, first and last item.
    let got = errors_of("listeners:\n  - name: a\n    listen: 127.0.0.1:2121\n    kind: transparent\n    servers: [[1], nowhere, {a: b}]\n");
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got[1].2.contains("'nowhere'"), "{got:#?}");
}

#[test]
fn missing_listeners_hide_nothing_else() {
    let got = errors_of("data:\n  client_ports: 5000-4000\n");
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].2.contains("missing field `listeners`"), "{got:#?}");
    assert!(got[1].2.contains("is empty"), "{got:#?}");
}

#[test]
fn every_shape_error_echoes_the_rejected_value() {
    for (extra, value) in [
        ("limits:\n  sessions: many\n", "`many`"),
        ("limits:\n  max_line: -3\n", "`-3`"),
        ("security:\n  bounce_protection: yes\n", "`yes`"),
        ("data:\n  client_ports: [1, 2]\n", "`[1, 2]`"),
        ("data:\n  server_mode: sometimes\n", "`sometimes`"),
        ("run_as:\n  user: { name: x }\n", "`{ name: x }`"),
    ] {
        let (_, _, m) = one_error(extra);
        assert!(m.contains(value), "{extra}: {m}");
    }
}

/// Fixing everything `check` reported must reveal nothing it did not
/// report: the errors of the fixed file are a subset of the first run's.
#[test]
fn fixing_what_check_reports_reveals_nothing_new() {
    let broken = "listeners:\n  - name: a\n    listen: 127.0.0.1:2121\n    kind: explict\n    upstrem: 198.51.100.10:21\n  - name: b\n    listen: 127.0.0.1:2122\n    kind: user-at-host\n    servers: [outside, nowhere]\nnetworks:\n  outside: [198.51.100.0/24, 300.0.0.0/8]\ndata:\n  client_ports: 5000-4000\n  pinhole_timout: 30s\nlimits:\n  sessions: many\n  login_timeout: soon\nsecurity:\n  tls: passthru\nrules:\n  - name: r1\n    match: { client: elsewhere, data_mode: sideways }\n    action: dney\n  - name: r2\n    match: { listener: c }\n    action: deny\n    reply: \"250 fine\"\n";
    let first = errors_of(broken);
    let fixed = broken
        .replace("explict", "explicit")
        .replace("upstrem", "upstream")
        .replace("pinhole_timout", "pinhole_timeout")
        .replace("many", "100")
        .replace("passthru", "refuse")
        .replace("dney", "deny");
    let second = errors_of(&fixed);
    assert!(!second.is_empty());
    for e in &second {
        assert!(
            first.contains(e),
            "new after the fix: {e:?}\nfirst run: {first:#?}"
        );
    }
    assert_eq!(first.len(), 6 + second.len(), "{first:#?}\n{second:#?}");
}

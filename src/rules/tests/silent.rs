//! What `check` refuses because it would silently do nothing: unknown
//! verbs, empty lists, rules of one name, keys a listener's kind does not
//! read, addresses two sockets would share, a `run_as` account that does
//! not exist; and the warning for each security switch turned off.

use super::*;

/// Every diagnostic of `extra` after BASE as (line, column, message, hint).
fn all(extra: &str) -> Vec<(u32, u32, String, String)> {
    full(&format!("{BASE}{extra}"))
}

fn full(text: &str) -> Vec<(u32, u32, String, String)> {
    from_str(text)
        .diagnostics
        .into_iter()
        .map(|d| (d.line, d.column, d.message, d.hint))
        .collect()
}

fn errors(text: &str) -> Vec<(u32, u32, String, String)> {
    from_str(text)
        .diagnostics
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| (d.line, d.column, d.message, d.hint))
        .collect()
}

fn warnings(text: &str) -> Vec<(u32, u32, String, String)> {
    let l = from_str(text);
    assert!(l.rules.is_some(), "{:?}", l.diagnostics);
    l.diagnostics
        .into_iter()
        .map(|d| (d.line, d.column, d.message, d.hint))
        .collect()
}

#[test]
fn unknown_verbs_are_refused_with_the_nearest_known_one() {
    let got = errors(&format!(
        "{BASE}rules:\n  - match: {{ command: [RETR, STORE, DELETE] }}\n    action: deny\n"
    ));
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!((got[0].0, got[0].1), (7, 30), "{got:#?}");
    assert_eq!(got[0].2, "'STORE' is not an FTP command ftpalg knows");
    assert!(got[0].3.starts_with("did you mean `STOR`?"), "{got:#?}");
    assert_eq!((got[1].0, got[1].1), (7, 37), "{got:#?}");
    assert!(got[1].3.starts_with("did you mean `DELE`?"), "{got:#?}");
    // Block lists point at the item as well.
    let got = errors(&format!(
        "{BASE}rules:\n  - match:\n      command:\n        - STOR\n        - XCRC\n    action: deny\n"
    ));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!((got[0].0, got[0].1), (10, 11), "{got:#?}");
    assert!(got[0].3.contains("extra_commands"), "{got:#?}");
}

#[test]
fn extra_commands_admit_a_servers_own_verbs() {
    let l = from_str(&format!(
        "{BASE}extra_commands: [XCRC, CLNT]\nrules:\n  - match: {{ command: [XCRC, STOR] }}\n    action: deny\n"
    ));
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    let r = l.rules.unwrap();
    let c = r.rules[0].command.as_ref().unwrap();
    assert!(c.contains(crate::ftp::command::Verb::parse(b"XCRC").unwrap()));
    let got = errors(&format!("{BASE}extra_commands: [X-CRC, xcrc]\n"));
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].2.contains("'X-CRC'"), "{got:#?}");
    assert!(got[1].2.contains("'xcrc'"), "{got:#?}");
    let got = all("extra_commands: [STOR]\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].2.contains("STOR is a command ftpalg knows"),
        "{got:#?}"
    );
}

#[test]
fn empty_lists_are_refused() {
    for key in ["user", "command", "client", "server", "listener"] {
        let got = errors(&format!(
            "{BASE}rules:\n  - match: {{ {key}: [] }}\n    action: deny\n"
        ));
        assert_eq!(got.len(), 1, "{key}: {got:#?}");
        assert_eq!(got[0].0, 7, "{key}: {got:#?}");
        assert!(
            got[0].2.contains(&format!("{key}: [] matches nothing")),
            "{key}: {got:#?}"
        );
    }
    let got = errors("listeners:\n  - name: u\n    listen: 127.0.0.1:2121\n    kind: user-at-host\n    servers: []\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!((got[0].0, got[0].1), (5, 14), "{got:#?}");
    assert!(
        got[0]
            .2
            .contains("servers: [] lets clients reach no server"),
        "{got:#?}"
    );
}

#[test]
fn two_rules_of_one_name_are_refused() {
    let got = errors(&format!(
        "{BASE}rules:\n  - name: no-writes\n    match: {{ command: [write] }}\n    action: deny\n  - name: no-writes\n    match: {{ data_mode: active }}\n    action: deny\n  - name: rule 4\n    action: allow\n  - action: deny\n"
    ));
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!((got[0].0, got[0].1), (10, 11), "{got:#?}");
    assert_eq!(got[0].2, "a rule named 'no-writes' already exists (line 7)");
    // An unnamed rule is `rule N`: the name given to rule 3 takes it.
    assert_eq!((got[1].0, got[1].1), (15, 13), "{got:#?}");
    assert_eq!(got[1].2, "a rule named 'rule 4' already exists (line 13)");
}

#[test]
fn keys_a_listeners_kind_does_not_read_are_refused() {
    let explicit = "listeners:\n  - name: a\n    listen: 127.0.0.1:2121\n    kind: explicit\n    upstream: 198.51.100.10:21\n";
    for (key, value) in [
        ("tproxy", "true"),
        ("servers", "[198.51.100.0/24]"),
        ("advertise", "[{ clients: any, address: 198.51.100.1 }]"),
    ] {
        let got = errors(&format!("{explicit}    {key}: {value}\n"));
        assert_eq!(got.len(), 1, "{key}: {got:#?}");
        // At the value: the parser gives a key no position of its own.
        assert_eq!(
            (got[0].0, got[0].1),
            (6, 7 + key.len() as u32),
            "{key}: {got:#?}"
        );
        assert!(
            got[0]
                .2
                .starts_with(&format!("{key} means nothing for an explicit listener")),
            "{key}: {got:#?}"
        );
    }
    let got = errors("listeners:\n  - name: u\n    listen: 127.0.0.1:2121\n    kind: user-at-host\n    servers: [any]\n    tproxy: false\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0]
            .2
            .starts_with("tproxy means nothing for a user-at-host listener"),
        "{got:#?}"
    );
    // What each kind reads is accepted.
    let ok = "listeners:\n  - name: t\n    listen: 127.0.0.1:2121\n    kind: transparent\n    servers: [any]\n    tproxy: true\n    server_mode: auto\n  - name: r\n    listen: 127.0.0.1:2122\n    kind: reverse\n    upstream: 203.0.113.10:21\n    advertise: [{ clients: any, address: 198.51.100.1 }]\n";
    assert_eq!(full(ok), vec![]);
}

#[test]
fn addresses_two_sockets_would_share_are_refused() {
    let l = "listeners:\n  - name: a\n    listen: 127.0.0.1:2121\n    kind: explicit\n    upstream: 198.51.100.10:21\n";
    let got = errors(&format!("{l}metrics:\n  listen: 127.0.0.1:2121\n"));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!((got[0].0, got[0].1), (7, 11), "{got:#?}");
    assert!(
        got[0]
            .2
            .contains("127.0.0.1:2121 is the address of listener 'a'"),
        "{got:#?}"
    );
    // A wildcard takes the port on every address of its family, and an
    // IPv6 wildcard on IPv4 too.
    for (a, b) in [
        ("0.0.0.0:2121", "127.0.0.1:2121"),
        ("127.0.0.1:2121", "0.0.0.0:2121"),
        ("\"[::]:2121\"", "127.0.0.1:2121"),
        ("\"[::]:2121\"", "\"[::1]:2121\""),
    ] {
        let text = format!("listeners:\n  - name: a\n    listen: {a}\n    kind: explicit\n    upstream: 198.51.100.10:21\n  - name: b\n    listen: {b}\n    kind: explicit\n    upstream: 198.51.100.10:21\n");
        let got = errors(&text);
        assert_eq!(got.len(), 1, "{a} {b}: {got:#?}");
        assert_eq!(got[0].0, 7, "{a} {b}: {got:#?}");
        let got = errors(
            &format!("{l}metrics:\n  listen: {b}\n")
                .replace("127.0.0.1:2121\n    kind", &format!("{a}\n    kind")),
        );
        assert_eq!(got.len(), 1, "metrics {a} {b}: {got:#?}");
    }
    for (a, b) in [
        ("0.0.0.0:2121", "\"[::1]:2121\""),
        ("127.0.0.1:2121", "127.0.0.2:2121"),
        ("0.0.0.0:2121", "0.0.0.0:2122"),
    ] {
        let text = format!("listeners:\n  - name: a\n    listen: {a}\n    kind: explicit\n    upstream: 198.51.100.10:21\n  - name: b\n    listen: {b}\n    kind: explicit\n    upstream: 198.51.100.10:21\n");
        assert_eq!(errors(&text), vec![], "{a} {b}");
    }
    // A listener with errors of its own still holds its address.
    let got = errors("listeners:\n  - name: a\n    listen: 127.0.0.1:2121\n    kind: explict\nmetrics:\n  listen: 127.0.0.1:2121\n");
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[1].2.contains("is the address of listener 'a'"),
        "{got:#?}"
    );
    let got = errors(&format!("{BASE}metrics:\n  listen: 127.0.0.1:40500\n"));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].2.contains("port 40500 is inside a data port range"),
        "{got:#?}"
    );
}

#[test]
fn run_as_must_name_an_account_that_exists() {
    let got = errors(&format!(
        "{BASE}run_as:\n  user: no-such-user-ftpalg-test\n  group: no-such-group-ftpalg-test\n"
    ));
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!((got[0].0, got[0].1), (7, 9), "{got:#?}");
    assert_eq!(
        got[0].2,
        "run_as user 'no-such-user-ftpalg-test' does not exist on this host"
    );
    assert_eq!((got[1].0, got[1].1), (8, 10), "{got:#?}");
    assert_eq!(
        got[1].2,
        "run_as group 'no-such-group-ftpalg-test' does not exist on this host"
    );
    let got = errors(&format!("{BASE}run_as:\n  user: \"4294967000\"\n"));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(warnings(&format!("{BASE}run_as:\n  user: nobody\n  group: \"0\"\n")).is_empty());
}

#[test]
fn each_security_switch_turned_off_is_a_warning_naming_the_risk() {
    for (switch, risk) in [
        ("bounce_protection: false", "FTP bounce"),
        ("refuse_low_ports: false", "below 1024"),
        ("check_data_peer: false", "steal"),
        ("trust_passive_address: true", "internal hosts"),
        ("tls: passthrough", "not inspected"),
    ] {
        let got = warnings(&format!("{BASE}security:\n  {switch}\n"));
        assert_eq!(got.len(), 1, "{switch}: {got:#?}");
        assert_eq!(got[0].0, 7, "{switch}: {got:#?}");
        assert!(got[0].2.contains(risk), "{switch}: {got:#?}");
    }
    let on = "security:\n  bounce_protection: true\n  refuse_low_ports: true\n  check_data_peer: true\n  trust_passive_address: false\n  tls: refuse\n";
    assert_eq!(warnings(&format!("{BASE}{on}")), vec![]);
}

#[test]
fn explain_says_what_each_security_switch_does_as_set() {
    let off = from_str(&format!(
        "{BASE}security:\n  bounce_protection: false\n  refuse_low_ports: false\n"
    ))
    .rules
    .unwrap();
    let text = explain(&off);
    assert!(
        !text.contains("must name the client's own address"),
        "{text}"
    );
    assert!(!text.contains("below 1024 refused"), "{text}");
    assert!(
        text.contains("bounce protection OFF (PORT/EPRT may name any host"),
        "{text}"
    );
    assert!(
        text.contains("low ports ALLOWED (PORT/EPRT may name ports below 1024"),
        "{text}"
    );
    let on = explain(&from_str(BASE).rules.unwrap());
    assert!(
        on.contains("bounce protection on (PORT/EPRT must name the client's own address)"),
        "{on}"
    );
    assert!(
        on.contains("low ports refused (PORT/EPRT below 1024 refused)"),
        "{on}"
    );
}

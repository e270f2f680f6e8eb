//! Access rules: their parts, shadowing, and the policy they compile to (first match wins).

use super::*;
use crate::ftp::command as cmd;
use crate::ftp::session::{ClientMode, CommandContext, Policy, Verdict};
use std::sync::Arc;

#[test]
fn unknown_network_in_rule() {
    let (l, c, m) = one_error("rules:\n  - match: { client: lan }\n    action: deny\n");
    assert_eq!((l, c), (7, 22));
    assert_eq!(m, "'lan' is neither a network name nor a CIDR");
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

//! Listeners as written: addresses, kinds and what each kind needs.

use super::*;

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
        (4, 11, "an explicit listener needs an upstream")
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
            (7, "listen 127.0.0.1:2121 is the address of listener 'a'")
        ]
    );
    let d = from_str("listeners: []\n").diagnostics;
    assert_eq!(d[0].message, "no listeners");
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

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

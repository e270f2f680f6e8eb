//! `USER name@host` routing: the gateway greets, connects, swallows the
//! server's greeting and sends the USER on.

use super::*;

#[test]
fn user_at_host_routes_and_swallows_the_greeting() {
    let mut r = Rig::open(
        SessionConfig::new(sa(CLIENT), Upstream::UserAtHost),
        AllowAll::default(),
    );
    let first = r.drain();
    assert!(matches!(&first[..], [Action::ToClient(b)] if b.starts_with(b"220 ")));
    r.client("USER anonymous@198.51.100.10:2121");
    r.client("PASS x@y");
    assert_eq!(
        r.acts(),
        vec![Action::Connect {
            host: "198.51.100.10".into(),
            port: 2121
        }]
    );
    r.s.upstream_connected(sa("198.51.100.10:2121"));
    r.server("220 real server");
    assert_eq!(
        r.drain(),
        vec![to_server("USER anonymous"), to_server("PASS x@y")]
    );
    r.server("331 Password");
    r.server("230 Welcome");
    assert_eq!(
        r.drain(),
        vec![
            to_client("331 Password"),
            to_client("230 Welcome"),
            Action::Event(Event::LoggedIn)
        ]
    );
    assert!(r.s.logged_in());
}

#[test]
fn user_at_host_failure_lets_the_client_retry_then_closes() {
    let mut cfg = SessionConfig::new(sa(CLIENT), Upstream::UserAtHost);
    cfg.max_route_attempts = 2;
    let mut r = Rig::open(cfg, AllowAll::default());
    r.drain();
    for last in [to_client("530 cannot reach nowhere."), Action::Close] {
        r.client("USER a@nowhere");
        r.s.upstream_failed(RouteFailure::NotAllowed("cannot reach nowhere"), &r.policy);
        assert_eq!(r.acts().last(), Some(&last));
    }
}

/// A server that cannot be reached is `421`, as through a listener with a
/// fixed server, and no denial: the driver counts it as an upstream
/// failure.
#[test]
fn an_unreachable_server_is_421_and_no_denial() {
    let mut r = Rig::open(
        SessionConfig::new(sa(CLIENT), Upstream::UserAtHost),
        AllowAll::default(),
    );
    r.drain();
    r.client("USER a@198.51.100.10");
    r.drain();
    r.s.upstream_failed(
        RouteFailure::Unreachable("Cannot reach 198.51.100.10:21: connection refused"),
        &r.policy,
    );
    let acts = r.acts();
    assert_eq!(
        acts,
        vec![
            to_client("421 Cannot reach 198.51.100.10:21: connection refused."),
            Action::Close
        ]
    );
    assert!(!acts
        .iter()
        .any(|a| matches!(a, Action::Event(Event::Denied { .. }))));
}

#[test]
fn split_user_host_forms() {
    assert_eq!(split_user_host("a@h"), Some(("a".into(), "h".into(), 21)));
    assert_eq!(
        split_user_host("a@b@h:2121"),
        Some(("a@b".into(), "h".into(), 2121))
    );
    assert_eq!(
        split_user_host("a@[2001:db8:2::10]:21"),
        Some(("a".into(), "2001:db8:2::10".into(), 21))
    );
    assert_eq!(
        split_user_host("a@2001:db8:2::10"),
        Some(("a".into(), "2001:db8:2::10".into(), 21))
    );
    assert_eq!(split_user_host("a@h:0"), None);
    assert_eq!(split_user_host("a@h:x"), None);
    assert_eq!(split_user_host("@h"), None);
    assert_eq!(split_user_host("a"), None);
}

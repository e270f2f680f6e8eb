//! `USER name@host` routing: the gateway greets, connects, swallows the
//! server's greeting and sends the USER on.

use super::*;

#[test]
fn user_at_host_routes_and_swallows_the_greeting() {
    let cfg = SessionConfig::new(sa(CLIENT), Upstream::UserAtHost);
    let policy = AllowAll::default();
    let mut s = Session::new(cfg);
    let first: Vec<_> = std::iter::from_fn(|| s.poll_action()).collect();
    assert!(matches!(&first[..], [Action::ToClient(b)] if b.starts_with(b"220 ")));
    s.on_client(
        Frame::Line(Line::new(&b"USER anonymous@198.51.100.10:2121"[..])),
        &policy,
    );
    s.on_client(Frame::Line(Line::new(&b"PASS x@y"[..])), &policy);
    let acts: Vec<_> = std::iter::from_fn(|| s.poll_action())
        .filter(|a| !matches!(a, Action::Event(_)))
        .collect();
    assert_eq!(
        acts,
        vec![Action::Connect {
            host: "198.51.100.10".into(),
            port: 2121
        }]
    );
    s.upstream_connected(sa("198.51.100.10:2121"));
    s.on_server(Frame::Line(Line::new(&b"220 real server"[..])), &policy);
    let acts: Vec<_> = std::iter::from_fn(|| s.poll_action()).collect();
    assert_eq!(
        acts,
        vec![to_server("USER anonymous"), to_server("PASS x@y")]
    );
    s.on_server(Frame::Line(Line::new(&b"331 Password"[..])), &policy);
    s.on_server(Frame::Line(Line::new(&b"230 Welcome"[..])), &policy);
    let acts: Vec<_> = std::iter::from_fn(|| s.poll_action()).collect();
    assert_eq!(
        acts,
        vec![
            to_client("331 Password"),
            to_client("230 Welcome"),
            Action::Event(Event::LoggedIn)
        ]
    );
    assert!(s.logged_in());
}

#[test]
fn user_at_host_failure_lets_the_client_retry_then_closes() {
    let mut cfg = SessionConfig::new(sa(CLIENT), Upstream::UserAtHost);
    cfg.max_route_attempts = 2;
    let policy = AllowAll::default();
    let mut s = Session::new(cfg);
    s.poll_action();
    s.on_client(Frame::Line(Line::new(&b"USER a@nowhere"[..])), &policy);
    s.upstream_failed("cannot reach nowhere", &policy);
    let acts: Vec<_> = std::iter::from_fn(|| s.poll_action())
        .filter(|a| !matches!(a, Action::Event(_)))
        .collect();
    assert_eq!(acts.last(), Some(&to_client("530 cannot reach nowhere.")));
    s.on_client(Frame::Line(Line::new(&b"USER a@nowhere"[..])), &policy);
    s.upstream_failed("cannot reach nowhere", &policy);
    let acts: Vec<_> = std::iter::from_fn(|| s.poll_action())
        .filter(|a| !matches!(a, Action::Event(_)))
        .collect();
    assert_eq!(acts.last(), Some(&Action::Close));
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

//! Every queue in the engine has a bound.

use super::*;

/// A server that never answers, a client that keeps sending: the queue of
/// replies owed must stop growing, with a 421 and a close.
#[test]
fn replies_owed_are_bounded() {
    let mut r = Rig::new(AllowAll::default());
    let mut acts = Vec::new();
    for _ in 0..1000 {
        r.bytes(b"NOOP\r\n");
        acts.extend(r.drain());
    }
    let sent = acts
        .iter()
        .filter(|a| matches!(a, Action::ToServer(_)))
        .count();
    assert!(sent <= 128, "{sent} commands sent with no reply back");
    assert!(acts.contains(&Action::Close));
    assert!(denials(&acts).contains(&Denial::Pipeline));
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::ToClient(b) if b.starts_with(b"421 "))));
}

/// Local replies (here: refusals) queue behind an unanswered command too.
#[test]
fn refusals_behind_a_silent_server_are_bounded() {
    let mut r = Rig::new(AllowAll::default());
    r.bytes(b"NOOP\r\n");
    let mut acts = Vec::new();
    for _ in 0..1000 {
        r.bytes(b"PORT 6,6,6,6,4,1\r\n");
        acts.extend(r.drain());
    }
    assert!(acts.contains(&Action::Close), "{}", acts.len());
    assert!(denials(&acts).contains(&Denial::Pipeline));
}

#[test]
fn the_bound_is_configurable_and_answered_replies_free_it() {
    let mut cfg = config();
    cfg.max_pending = 4;
    let mut r = Rig::with(cfg, AllowAll::default());
    // Answered commands never fill it.
    for _ in 0..20 {
        r.bytes(b"NOOP\r\n");
        r.server("200 ok");
    }
    assert!(!r.drain().contains(&Action::Close));
    for _ in 0..4 {
        r.bytes(b"NOOP\r\n");
    }
    assert!(!r.drain().contains(&Action::Close));
    r.bytes(b"NOOP\r\n");
    let acts = r.drain();
    assert_eq!(denials(&acts), vec![Denial::Pipeline]);
    assert!(acts.contains(&Action::Close));
}

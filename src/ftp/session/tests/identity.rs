//! The user that rules match is the one the server accepted, not the last
//! name sent in USER.

use super::*;

fn logged_in_as_anonymous() -> Rig<ReadOnly> {
    let mut r = Rig::new(ReadOnly);
    r.bytes(b"USER anonymous\r\n");
    r.server("331 Please specify the password.");
    r.bytes(b"PASS me@example.org\r\n");
    r.server("230 Login successful.");
    r.drain();
    assert_eq!(r.s.user(), Some("anonymous"));
    r
}

fn stor_reaches_server(r: &mut Rig<ReadOnly>) -> bool {
    r.bytes(b"STOR f\r\n");
    let acts = r.drain();
    let sent = server_commands(&wire_to_server(&acts))
        .iter()
        .any(|c| c.starts_with("STOR"));
    assert_eq!(
        sent,
        !denials(&acts).contains(&Denial::Rule("anon-no-stor".into())),
        "{acts:?}"
    );
    sent
}

#[test]
fn a_refused_second_user_keeps_the_accepted_identity() {
    let mut r = logged_in_as_anonymous();
    r.bytes(b"USER bob\r\n");
    r.server("530 Can't change to another user.");
    assert!(
        !stor_reaches_server(&mut r),
        "rules must still see anonymous"
    );
    assert_eq!(r.s.user(), Some("anonymous"));
}

#[test]
fn pass_after_a_refused_user_does_not_switch_identity() {
    // vsftpd answers PASS with "230 Already logged in." while logged in.
    let mut r = logged_in_as_anonymous();
    r.bytes(b"USER bob\r\n");
    r.server("530 Can't change to another user.");
    r.bytes(b"PASS x\r\n");
    r.server("230 Already logged in.");
    assert!(!stor_reaches_server(&mut r));
}

#[test]
fn a_failed_relogin_keeps_the_accepted_identity() {
    let mut r = logged_in_as_anonymous();
    r.bytes(b"USER bob\r\n");
    r.server("331 Password required for bob.");
    r.bytes(b"PASS wrong\r\n");
    r.server("530 Login incorrect.");
    assert!(!stor_reaches_server(&mut r));
}

#[test]
fn pipelined_login_binds_the_user_the_230_answers() {
    let mut r = Rig::new(ReadOnly);
    r.bytes(b"USER anonymous\r\nPASS x\r\nUSER bob\r\n");
    r.server("331 Password please.");
    r.server("230 Login successful.");
    r.server("530 Can't change to another user.");
    assert!(!stor_reaches_server(&mut r));
}

#[test]
fn a_successful_relogin_switches_identity() {
    let mut r = logged_in_as_anonymous();
    r.bytes(b"USER bob\r\n");
    r.server("331 Password required for bob.");
    r.bytes(b"PASS right\r\n");
    r.server("230 User bob logged in.");
    assert_eq!(r.s.user(), Some("bob"));
    assert!(stor_reaches_server(&mut r));
}

#[test]
fn before_login_rules_see_the_proposed_name() {
    let mut r = Rig::new(ReadOnly);
    r.bytes(b"USER anonymous\r\n");
    r.server("331 Password please.");
    assert_eq!(r.s.user(), Some("anonymous"));
    assert!(!stor_reaches_server(&mut r));
}

#[test]
fn rein_forgets_the_identity() {
    let mut r = logged_in_as_anonymous();
    r.bytes(b"REIN\r\n");
    r.server("220 Ready for new user.");
    assert_eq!(r.s.user(), None);
    assert!(!r.s.logged_in());
}

/// Found by the session fuzz target: the USER sent after a user@host
/// route carried the name decoded lossily (U+FFFD for a Latin-1 byte), not
/// the bytes the client sent; and a 255 in it went out unescaped.
#[test]
fn a_routed_user_name_reaches_the_server_as_sent() {
    for (line, wire) in [
        (&b"USER ft\xa3@198.51.100.10"[..], &b"USER ft\xa3\r\n"[..]),
        (b"USER a\xff\xffb@198.51.100.10", b"USER a\xff\xffb\r\n"),
    ] {
        let mut r = Rig::open(
            SessionConfig::new(sa(CLIENT), Upstream::UserAtHost),
            AllowAll::default(),
        );
        r.client(line);
        r.s.upstream_connected(sa(SERVER));
        r.server("220 real server");
        let acts = r.drain();
        let sent: Vec<_> = acts
            .iter()
            .filter_map(|a| match a {
                Action::ToServer(b) => Some(b.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(sent, vec![wire.to_vec()], "{acts:?}");
    }
}

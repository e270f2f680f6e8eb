//! The server receives exactly the bytes the policy checked: telnet
//! sequences, bare CR and NUL cannot hide a second command in a line.

use super::*;

#[test]
fn iac_before_lf_cannot_smuggle_a_denied_command() {
    let mut r = Rig::new(ReadOnly);
    r.bytes(b"X\xff\nDELE f\r\n");
    let acts = r.drain();
    let cmds = server_commands(&wire_to_server(&acts));
    assert!(
        !cmds.iter().any(|c| c.starts_with("DELE")),
        "the server would run {cmds:?}"
    );
    let d = denials(&acts);
    assert!(d.contains(&Denial::Telnet), "{d:?}");
    assert!(d.contains(&Denial::Rule("read-only".into())), "{d:?}");
}

#[test]
fn iac_before_lf_cannot_smuggle_a_bounce_port() {
    let mut r = Rig::new(AllowAll::default());
    r.bytes(b"NOOP\xff\nPORT 6,6,6,6,4,1\r\n");
    let acts = r.drain();
    let cmds = server_commands(&wire_to_server(&acts));
    assert!(
        !cmds.iter().any(|c| c.contains("6,6,6,6")),
        "the server would run {cmds:?}"
    );
    assert!(denials(&acts).contains(&Denial::Bounce), "{acts:?}");
}

#[test]
fn abort_synch_is_forwarded_in_canonical_form() {
    // DM in line, and DM sent as urgent data (the kernel drops it from the
    // stream, leaving IAC IP IAC before the command).
    for input in [
        &b"\xff\xf4\xff\xf2ABOR\r\n"[..],
        &b"\xff\xf4\xffABOR\r\n"[..],
    ] {
        let mut r = Rig::new(AllowAll::default());
        r.bytes(input);
        let acts = r.drain();
        assert_eq!(
            wire_to_server(&acts),
            b"\xff\xf4\xff\xf2ABOR\r\n".to_vec(),
            "{input:?}"
        );
    }
}

#[test]
fn synch_before_another_command_is_dropped() {
    let mut r = Rig::new(AllowAll::default());
    r.bytes(b"\xff\xf4\xff\xf2NOOP\r\n");
    assert_eq!(wire_to_server(&r.drain()), b"NOOP\r\n".to_vec());
}

#[test]
fn escaped_255_reaches_the_server_escaped() {
    let mut r = Rig::new(AllowAll::default());
    r.bytes(b"RETR a\xff\xffb\r\n");
    assert_eq!(wire_to_server(&r.drain()), b"RETR a\xff\xffb\r\n".to_vec());
}

#[test]
fn option_negotiation_between_lines_is_not_forwarded() {
    let mut r = Rig::new(AllowAll::default());
    // WILL TERMINAL-TYPE, and DO with an option byte that is LF.
    r.bytes(b"\xff\xfb\x18NOOP\r\n\xff\xfd\nNOOP\r\n");
    let acts = r.drain();
    assert_eq!(wire_to_server(&acts), b"NOOP\r\nNOOP\r\n".to_vec());
    assert!(denials(&acts).is_empty(), "{acts:?}");
}

#[test]
fn other_telnet_sequences_are_refused_with_500() {
    let cases: [&[u8]; 6] = [
        b"NO\xff\xf1OP\r\n",                 // IAC NOP inside a line
        b"NO\xff\xf4OP\r\n",                 // IAC IP inside a line
        b"\xff\xf6NOOP\r\n",                 // IAC AYT
        b"NOOP \xff\xfb\x01\r\n",            // negotiation inside a line
        b"RETR a\xff\r\n",                   // IAC before the terminator
        b"\xff\xfa\x18\x01\xff\xf0NOOP\r\n", // subnegotiation
    ];
    for input in cases {
        let mut r = Rig::new(AllowAll::default());
        r.bytes(input);
        let acts = r.drain();
        assert_eq!(wire_to_server(&acts), b"".to_vec(), "{input:?}");
        assert_eq!(denials(&acts), vec![Denial::Telnet], "{input:?}");
        let replies = client_replies(&acts);
        assert!(
            replies.len() == 1 && replies[0].starts_with("500 "),
            "{input:?}: {replies:?}"
        );
    }
}

#[test]
fn bare_cr_or_nul_cannot_hide_a_second_command() {
    for input in [&b"RETR a\rDELE f\r\n"[..], &b"RETR a\0DELE f\r\n"[..]] {
        let mut r = Rig::new(AllowAll::default());
        r.bytes(input);
        let acts = r.drain();
        let cmds = server_commands(&wire_to_server(&acts));
        assert!(cmds.is_empty(), "{input:?}: the server would run {cmds:?}");
        assert_eq!(denials(&acts), vec![Denial::Syntax], "{input:?}");
    }
}

#[test]
fn iac_in_a_routed_user_name_is_refused_too() {
    let cfg = SessionConfig::new(sa(CLIENT), Upstream::UserAtHost);
    let mut r = Rig::open(cfg, AllowAll::default());
    r.bytes(b"USER a\xff\nDELE f@198.51.100.10\r\n");
    let acts = r.drain();
    assert!(
        !acts.iter().any(|a| matches!(a, Action::Connect { .. })),
        "{acts:?}"
    );
}

//! A password never reaches the log: whatever is wrong with a `PASS` or
//! `ACCT` line (a 255 byte, which is `ÿ` in Latin-1; a NUL; a CR; too long;
//! no valid UTF-8; lower case; telnet bytes or spaces before the verb),
//! the denial detail and every other event carry a mask instead of it.

use super::*;

/// Everything the driver may log or count from these actions: the events
/// and the transfer announcements, as the driver would see them. The bytes
/// sent to either peer are no log and are left out.
fn logged(acts: &[Action]) -> String {
    acts.iter()
        .filter(|a| !matches!(a, Action::ToClient(_) | Action::ToServer(_)))
        .map(|a| format!("{a:?}\n"))
        .collect()
}

/// Feeds `input` to a fresh session and returns what it logged, checking
/// that it refused the line with `denial` and said so in a detail.
fn refused(input: &[u8], denial: Denial) -> String {
    let mut r = Rig::new(AllowAll::default());
    r.bytes(input);
    let acts = r.drain();
    assert_eq!(denials(&acts), vec![denial], "{}", logged(&acts));
    logged(&acts)
}

fn assert_hidden(log: &str, secrets: &[&str], input: &[u8]) {
    for s in secrets {
        assert!(
            !log.to_ascii_lowercase().contains(&s.to_ascii_lowercase()),
            "{:?} leaked {s:?} into the log:\n{log}",
            String::from_utf8_lossy(input)
        );
    }
    assert!(log.contains("****"), "no mask in the log:\n{log}");
}

#[test]
fn a_password_with_a_255_byte_is_not_logged() {
    // `ÿ` sent as one byte: the decoder reads `IAC X` inside the text. The
    // reason must not name the byte after the IAC either (88 is `X`).
    for input in [
        &b"PASS hunter\xffX2\r\n"[..],
        b"pass hunter\xffX2\r\n",
        b"PASS hunter2\xff\r\n",
        b"ACCT hunter\xffX2\r\n",
    ] {
        let log = refused(input, Denial::Telnet);
        assert_hidden(&log, &["hunter", "X2", "88"], input);
    }
}

#[test]
fn a_password_with_a_nul_or_a_cr_is_not_logged() {
    for input in [
        &b"PASS hunter\x002\r\n"[..],
        b"PASS hunter\r2\r\n",
        b"pass hunter\x002\r\n",
        b"Pass hunter\r2\r\n",
        b"ACCT hunter\x002\r\n",
        b"acct hunter\r2\r\n",
    ] {
        let log = refused(input, Denial::Syntax);
        assert_hidden(&log, &["hunter"], input);
    }
}

#[test]
fn a_password_line_over_the_cap_is_not_logged() {
    // The rig's framer caps lines at 256 bytes; the prefix kept is what
    // used to go into the detail.
    for verb in ["PASS", "pass", "ACCT", " \tPaSs"] {
        let input = format!("{verb} hunter{}\r\n", "2".repeat(400));
        let log = refused(input.as_bytes(), Denial::LineTooLong);
        assert_hidden(&log, &["hunter", "222"], input.as_bytes());
    }
}

#[test]
fn a_password_line_whose_verb_does_not_parse_is_not_logged() {
    // The verb is unreadable to the parser (a space before it, a tab after
    // it, letters run on), but a server may still take it as PASS.
    for input in [
        &b" PASS hunter2\r\n"[..],
        b"PASS\thunter2\r\n",
        b"PASSWORD1 hunter2\r\n",
        b"\xff\xfb\x18 pass hunter2\r\n",
    ] {
        let log = refused(input, Denial::Syntax);
        assert_hidden(&log, &["hunter"], input);
    }
}

#[test]
fn a_password_after_telnet_negotiation_is_not_logged() {
    // Option negotiation and the synch before the verb are removed before
    // the command is read; the NUL then refuses the line.
    for input in [
        &b"\xff\xfb\x18PASS hunter\x002\r\n"[..],
        b"\xff\xf4\xff\xf2pass hunter\x002\r\n",
        // The IAC that refuses it comes before the verb.
        b"\xff\xf1PASS hunter2\r\n",
    ] {
        let mut r = Rig::new(AllowAll::default());
        r.bytes(input);
        let acts = r.drain();
        assert_eq!(denials(&acts).len(), 1, "{}", logged(&acts));
        assert_hidden(&logged(&acts), &["hunter"], input);
    }
}

#[test]
fn a_password_without_valid_utf8_is_forwarded_and_not_logged() {
    // Latin-1 `ü` alone is no UTF-8: the line is a valid PASS and goes to
    // the server as sent; nothing of it is logged.
    let mut r = Rig::new(AllowAll::default());
    r.bytes(b"PASS hunt\xfcr2\r\n");
    let acts = r.drain();
    assert!(denials(&acts).is_empty(), "{acts:?}");
    assert_eq!(wire_to_server(&acts), b"PASS hunt\xfcr2\r\n".to_vec());
    assert!(!logged(&acts).contains("hunt"), "{}", logged(&acts));
}

#[test]
fn other_refused_lines_are_still_logged_in_full() {
    // The mask is for secrets only: a refused RETR still says what it was.
    let log = refused(b"RETR report\x00.txt\r\n", Denial::Syntax);
    assert!(log.contains("RETR report"), "{log}");
    let log = refused(b"PASSIVE\x00\r\n", Denial::Syntax);
    assert!(log.contains("****"), "conservative for PASS*: {log}");
}

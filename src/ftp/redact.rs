//! What of a client line may be logged. The argument of `PASS` and `ACCT`
//! never is: not when the line is refused for a 255 byte (`ÿ` in Latin-1,
//! so it can be in a real password), a NUL, a CR or its length, and not
//! when its verb does not parse. Every place that puts a client line's
//! text into a log, a denial detail or a report goes through
//! [`secret_verb`], mostly by way of [`show_line`].

use std::fmt;

use crate::ftp::telnet::{DONT, IAC, WILL};

/// What a secret argument is shown as.
pub const MASK: &str = "****";

/// Most characters of a client line shown in a denial detail.
pub const MAX_SHOWN: usize = 200;

/// The verbs whose argument is a secret (RFC 959: password, account).
const SECRET_VERBS: [&str; 2] = ["PASS", "ACCT"];

/// The secret verb (`"PASS"` or `"ACCT"`) a client line may carry, read
/// from its bytes as received or decoded, whatever else is wrong with it.
///
/// Deliberately more eager than the command parser: the line may be one
/// the parser refused, and a server may read it differently. Leading
/// spaces, control bytes and telnet sequences are skipped (both as telnet
/// reads them and byte by byte, so an `IAC` followed by a letter does not
/// hide the verb), the verb is matched in any case, and whatever follows
/// its four letters counts as the secret (`PASS\tx`, `PASSWORD1 x` too).
pub fn secret_verb(raw: &[u8]) -> Option<&'static str> {
    let letters = raw
        .iter()
        .position(u8::is_ascii_alphabetic)
        .unwrap_or(raw.len());
    [letters, after_telnet(raw)].into_iter().find_map(|start| {
        let head = raw.get(start..start + 4)?;
        SECRET_VERBS
            .into_iter()
            .find(|v| head.eq_ignore_ascii_case(v.as_bytes()))
    })
}

/// Where the text of `raw` begins once telnet sequences (an `IAC` and the
/// byte after it, three bytes for an option negotiation) and any other
/// byte that is not an ASCII letter are skipped.
fn after_telnet(raw: &[u8]) -> usize {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        i += match (b, raw.get(i + 1)) {
            (IAC, Some(WILL..=DONT)) => 3,
            (IAC, _) => 2,
            (b, _) if b.is_ascii_alphabetic() => return i,
            _ => 1,
        };
    }
    raw.len()
}

/// A client line as it may be logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// The line lossily decoded and cut at the length asked for (`...`
    /// marks the cut); for a line that may carry a secret only its verb
    /// and [`MASK`], as in `PASS ****`.
    pub text: String,
    /// The line may carry a secret: nothing else derived from its bytes
    /// (a byte value quoted in a reason, say) may be logged with it.
    pub secret: bool,
}

/// How the client line `raw` (as received, or its decoded text) may
/// appear in a log, at most `max` characters of it.
pub fn show_line(raw: &[u8], max: usize) -> Shown {
    match secret_verb(raw) {
        Some(verb) => Shown {
            text: format!("{verb} {MASK}"),
            secret: true,
        },
        None => Shown {
            text: clip(&String::from_utf8_lossy(raw), max),
            secret: false,
        },
    }
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_string(),
    }
}

/// Client bytes for a `Debug` that may end up in a log: escaped, and a line
/// that may carry a secret shown as `PASS ****`.
pub struct Redacted<'a>(pub &'a [u8]);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match secret_verb(self.0) {
            Some(verb) => write!(f, "\"{verb} {MASK}\""),
            None => write!(f, "b\"{}\"", self.0.escape_ascii()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_verbs_are_found_however_the_line_is_broken() {
        for line in [
            &b"PASS x"[..],
            b"pass x",
            b"PaSs",
            b"ACCT x",
            b"acct\tx",
            b"  PASS x",
            b"\t\0PASS x",
            b"PASSWORD1 x",
            b"PASS x\xffy",
            b"\xff\xfb\x18PASS x",
            b"\xff\xfbPPASS x",
            b"\xff\xf4\xff\xf2PASS x",
            b"\xff\xf4\xffPASS x",
            b"\xffPASS x",
            b"\xff\xffPASS x",
        ] {
            assert!(
                secret_verb(line).is_some(),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(secret_verb(b"acct x"), Some("ACCT"));
        assert_eq!(secret_verb(b"pass x"), Some("PASS"));
    }

    #[test]
    fn other_lines_are_not_secret() {
        for line in [
            &b"RETR PASS"[..],
            b"USER pass",
            b"PAS",
            b"PASV",
            b"",
            b"\xff\xff",
            b"NOOP",
        ] {
            assert_eq!(
                secret_verb(line),
                None,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn shown_lines_are_masked_or_clipped() {
        let s = show_line(b"pass hunter\x002", MAX_SHOWN);
        assert_eq!(
            s,
            Shown {
                text: "PASS ****".into(),
                secret: true
            }
        );
        let s = show_line("RETR \u{e9}t\u{e9}".as_bytes(), 7);
        assert_eq!(s.text, "RETR \u{e9}t...");
        assert!(!s.secret);
        assert_eq!(show_line(b"NOOP", 4).text, "NOOP");
        assert_eq!(format!("{:?}", Redacted(b"ACCT hunter2")), "\"ACCT ****\"");
        assert_eq!(
            format!("{:?}", Redacted(b"RETR a\xff\"")),
            "b\"RETR a\\xff\\\"\""
        );
    }
}

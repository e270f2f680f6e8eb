//! Client commands: a verb and its argument (RFC 959 section 4.1).

use std::fmt;
use thiserror::Error;

/// Longest verb accepted; RFC 959 verbs have three or four letters, a few
/// extensions are longer.
const MAX_VERB: usize = 8;

/// A command verb, upper-cased and stored inline (no allocation per line).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verb {
    bytes: [u8; MAX_VERB],
    len: u8,
}

impl Verb {
    /// Builds a verb from a literal; panics at compile time on bad input.
    pub const fn from_static(s: &str) -> Verb {
        let b = s.as_bytes();
        assert!(!b.is_empty() && b.len() <= MAX_VERB);
        let mut bytes = [0u8; MAX_VERB];
        let mut i = 0;
        while i < b.len() {
            assert!(b[i].is_ascii_uppercase());
            bytes[i] = b[i];
            i += 1;
        }
        Verb {
            bytes,
            len: b.len() as u8,
        }
    }

    /// Parses a verb: 1 to 8 ASCII letters, any case.
    pub fn parse(s: &[u8]) -> Option<Verb> {
        if s.is_empty() || s.len() > MAX_VERB || !s.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        let mut bytes = [0u8; MAX_VERB];
        for (d, c) in bytes.iter_mut().zip(s) {
            *d = c.to_ascii_uppercase();
        }
        Some(Verb {
            bytes,
            len: s.len() as u8,
        })
    }

    /// The verb in upper case.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("?")
    }

    /// Commands that move data over a data connection.
    pub fn is_transfer(&self) -> bool {
        [RETR, STOR, STOU, APPE, LIST, NLST, MLSD].contains(self)
    }

    /// Commands that change the server's file system.
    pub fn is_write(&self) -> bool {
        [
            STOR, STOU, APPE, DELE, RNFR, RNTO, MKD, XMKD, RMD, XRMD, SITE, MFMT, MFCT, MFF,
        ]
        .contains(self)
    }
}

impl fmt::Debug for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! verbs {
    ($($name:ident),* $(,)?) => {
        $(
            #[doc = concat!("The `", stringify!($name), "` command.")]
            pub const $name: Verb = Verb::from_static(stringify!($name));
        )*
    };
}

verbs!(
    USER, PASS, ACCT, QUIT, REIN, PORT, PASV, EPRT, EPSV, LPRT, LPSV, RETR, STOR, STOU, APPE, LIST,
    NLST, MLSD, ABOR, DELE, RNFR, RNTO, MKD, XMKD, RMD, XRMD, SITE, AUTH, CCC, PROT, PBSZ, FEAT,
    MFMT, MFCT, MFF, NOOP, TYPE, REST,
);

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// Nothing but white space.
    #[error("empty command line")]
    Empty,
    /// The verb is not 1 to 8 ASCII letters.
    #[error("not a command verb")]
    BadVerb,
    /// A NUL byte, which no command may carry (it truncates strings in
    /// C servers, hiding the rest of the line from the gateway's view).
    #[error("NUL byte in command line")]
    Nul,
    /// A CR that does not end the line: servers that end lines at CR
    /// would read the rest as a second command the gateway never checked.
    #[error("CR inside a command line")]
    Cr,
}

/// A parsed command: its verb and the bytes after the first space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command<'a> {
    /// The verb, upper case.
    pub verb: Verb,
    /// The argument as sent; path names may be in any encoding.
    pub arg: &'a [u8],
}

/// Parses a command line (without terminator, telnet already removed).
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, CommandError> {
    if let Some(p) = line.iter().position(|&b| b == 0 || b == b'\r') {
        return Err(if line[p] == 0 {
            CommandError::Nul
        } else {
            CommandError::Cr
        });
    }
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(CommandError::Empty);
    }
    let (verb, arg) = match line.iter().position(|&b| b == b' ') {
        Some(p) => (&line[..p], &line[p + 1..]),
        None => (line, &line[line.len()..]),
    };
    let verb = Verb::parse(verb).ok_or(CommandError::BadVerb)?;
    Ok(Command { verb, arg })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_any_case() {
        let c = parse_command(b"pasv").unwrap();
        assert_eq!(c.verb, PASV);
        assert_eq!(c.arg, b"");
        let c = parse_command(b"Port 1,2,3,4,5,6").unwrap();
        assert_eq!(c.verb, PORT);
        assert_eq!(c.arg, b"1,2,3,4,5,6");
        assert_eq!(
            parse_command(b"RETR  two spaces").unwrap().arg,
            b" two spaces"
        );
        assert_eq!(parse_command(b"XYZZY").unwrap().verb.as_str(), "XYZZY");
    }

    #[test]
    fn rejects() {
        assert_eq!(parse_command(b""), Err(CommandError::Empty));
        assert_eq!(parse_command(b"   "), Err(CommandError::Empty));
        assert_eq!(parse_command(b"RE\0TR x"), Err(CommandError::Nul));
        assert_eq!(parse_command(b"RETR x\0y"), Err(CommandError::Nul));
        assert_eq!(parse_command(b"RETR a\rDELE b"), Err(CommandError::Cr));
        assert_eq!(parse_command(b"123 x"), Err(CommandError::BadVerb));
        assert_eq!(parse_command(b"TOOLONGVERB x"), Err(CommandError::BadVerb));
        assert_eq!(parse_command(b"\xc3\xa9 x"), Err(CommandError::BadVerb));
        assert_eq!(parse_command(b" RETR"), Err(CommandError::BadVerb));
    }

    #[test]
    fn invalid_utf8_argument_is_kept() {
        assert_eq!(parse_command(b"RETR \xff\xfe").unwrap().arg, b"\xff\xfe");
    }

    #[test]
    fn classes() {
        assert!(RETR.is_transfer() && MLSD.is_transfer() && !PASV.is_transfer());
        assert!(DELE.is_write() && STOR.is_write() && !RETR.is_write());
    }
}

//! The bearer token that guards `/status` on the metrics endpoint
//! (`metrics.status_token_file`). Read from its own file so the secret is
//! not in the rules file, which is shown, diffed and shipped as an example.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use thiserror::Error;

/// Shortest token accepted: shorter ones can be guessed.
pub const MIN_LEN: usize = 16;
/// Longest token accepted; the file is never read further than this.
pub const MAX_LEN: usize = 1024;

/// A token file that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not an absolute path: a relative one would depend on the directory
    /// the gateway was started from.
    #[error("is not an absolute path")]
    Relative,
    /// Cannot be opened or read.
    #[error("cannot be read: {0}")]
    Read(String),
    /// A directory, a FIFO, a device: reading it could block or never end.
    #[error("is not a regular file")]
    NotAFile,
    /// Empty once the final newline is removed.
    #[error("holds no token")]
    Empty,
    /// Too short to resist guessing.
    #[error("holds a token of {0} characters; at least {MIN_LEN} are needed")]
    TooShort(usize),
    /// Longer than [`MAX_LEN`].
    #[error("holds more than {MAX_LEN} bytes")]
    TooLong,
    /// A character a bearer token may not hold (RFC 6750 `b64token`).
    #[error("holds a character a bearer token may not hold (letters, digits and -._~+/ only, = at the end)")]
    BadChar,
}

/// The secret a client must present as `Authorization: Bearer ...`.
/// Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct StatusToken(Vec<u8>);

impl fmt::Debug for StatusToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatusToken(<{} bytes>)", self.0.len())
    }
}

impl StatusToken {
    /// Reads and checks the token in `path`: one line, a final newline
    /// allowed. Reads no more than a few bytes past [`MAX_LEN`], and only from a
    /// regular file, so a wrong path cannot hang or exhaust the loader.
    pub fn read(path: &Path) -> Result<StatusToken, TokenError> {
        if !path.is_absolute() {
            return Err(TokenError::Relative);
        }
        let meta = std::fs::metadata(path).map_err(|e| TokenError::Read(e.to_string()))?;
        if !meta.is_file() {
            return Err(TokenError::NotAFile);
        }
        let mut raw = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_LEN as u64 + 3).read_to_end(&mut raw))
            .map_err(|e| TokenError::Read(e.to_string()))?;
        let text = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        StatusToken::new(text)
    }

    /// Checks `token` as a bearer token of acceptable strength.
    pub fn new(token: &[u8]) -> Result<StatusToken, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if token.len() > MAX_LEN {
            return Err(TokenError::TooLong);
        }
        let body = token
            .iter()
            .rposition(|&b| b != b'=')
            .map_or(&token[..0], |i| &token[..=i]);
        let ok = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(b);
        if body.is_empty() || !body.iter().all(ok) {
            return Err(TokenError::BadChar);
        }
        if token.len() < MIN_LEN {
            return Err(TokenError::TooShort(token.len()));
        }
        Ok(StatusToken(token.to_vec()))
    }

    /// Whether `presented` is the token. The time taken depends on the
    /// token's length only, never on how much of `presented` matches, so
    /// the token cannot be guessed byte by byte from response times.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let mut diff = self.0.len() ^ presented.len();
        for (i, b) in self.0.iter().enumerate() {
            let p = presented.get(i).copied().unwrap_or(!b);
            diff |= usize::from(b ^ p);
        }
        std::hint::black_box(diff) == 0
    }
}

/// Whether others than the file's owner and group may read `path`: the
/// token is then no secret on this host.
pub fn readable_by_others(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let t = StatusToken::new(b"abcdefghijklmnop0123").unwrap();
        assert!(t.matches(b"abcdefghijklmnop0123"));
        for wrong in [
            &b""[..],
            b"abcdefghijklmnop012",
            b"abcdefghijklmnop01234",
            b"abcdefghijklmnop0124",
            b"Abcdefghijklmnop0123",
            b"abcdefghijklmnop0123\0",
        ] {
            assert!(!t.matches(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn weak_or_malformed_tokens_are_refused() {
        assert_eq!(StatusToken::new(b""), Err(TokenError::Empty));
        assert_eq!(StatusToken::new(b"short"), Err(TokenError::TooShort(5)));
        assert_eq!(
            StatusToken::new(b"has a space in the middle"),
            Err(TokenError::BadChar)
        );
        assert_eq!(
            StatusToken::new(b"abcdefghijklmnop\x1b[2J"),
            Err(TokenError::BadChar)
        );
        assert_eq!(
            StatusToken::new(b"abcdefgh=ijklmnop"),
            Err(TokenError::BadChar)
        );
        assert_eq!(
            StatusToken::new(b"================"),
            Err(TokenError::BadChar)
        );
        assert_eq!(
            StatusToken::new(&[b'a'; MAX_LEN + 1]),
            Err(TokenError::TooLong)
        );
        assert!(StatusToken::new(b"k7Hq2-vX9_pL4mN8.rT6~wZ3+bY5/cD1==").is_ok());
    }

    #[test]
    fn debug_does_not_show_the_token() {
        let t = StatusToken::new(b"abcdefghijklmnop0123").unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains("abcdefgh"), "{shown}");
        assert_eq!(shown, "StatusToken(<20 bytes>)");
    }

    #[test]
    fn reads_one_line_from_a_regular_file_only() {
        let dir = std::env::temp_dir();
        let p = dir.join(format!("ftpalg-token-test-{}", std::process::id()));
        std::fs::write(&p, "abcdefghijklmnop0123\n").unwrap();
        let t = StatusToken::read(&p).unwrap();
        assert!(t.matches(b"abcdefghijklmnop0123"));
        std::fs::write(&p, "abcdefghijklmnop0123\nsecond line\n").unwrap();
        assert_eq!(StatusToken::read(&p), Err(TokenError::BadChar));
        std::fs::write(&p, vec![b'a'; 64 * 1024]).unwrap();
        assert_eq!(StatusToken::read(&p), Err(TokenError::TooLong));
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(StatusToken::read(&p), Err(TokenError::Read(_))));
        assert_eq!(StatusToken::read(&dir), Err(TokenError::NotAFile));
        assert_eq!(
            StatusToken::read(Path::new("token")),
            Err(TokenError::Relative)
        );
    }

    /// The key in a rules file: read at load, each fault an error at the
    /// key's position, a token readable by anyone and an unguarded
    /// endpoint beyond loopback warned about.
    #[test]
    fn status_token_file_in_the_rules() {
        use crate::rules::{from_str, Severity};
        let base = "listeners:\n  - name: a\n    listen: 127.0.0.1:2121\n    kind: explicit\n    upstream: 198.51.100.10:21\nmetrics:\n";
        let load = |extra: &str| from_str(&format!("{base}{extra}"));
        let p = std::env::temp_dir().join(format!("ftpalg-token-rules-{}", std::process::id()));
        std::fs::write(&p, "abcdefghijklmnop0123\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let good = format!(
            "  listen: 0.0.0.0:9121\n  status_token_file: {}\n",
            p.display()
        );
        let l = load(&good);
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let m = l.rules.unwrap().metrics.unwrap();
        assert_eq!(m.status_token_file.as_deref(), Some(p.as_path()));
        assert!(m.status_token.unwrap().matches(b"abcdefghijklmnop0123"));

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let l = load(&good);
        assert!(l.rules.is_some());
        assert_eq!(l.diagnostics.len(), 1, "{:?}", l.diagnostics);
        let d = &l.diagnostics[0];
        assert_eq!((d.severity, d.line, d.column), (Severity::Warning, 8, 22));
        assert!(d.message.contains("may be read by any user"), "{d}");

        std::fs::write(&p, "short\n").unwrap();
        let l = load(&good);
        assert!(l.rules.is_none());
        let d = &l.diagnostics[0];
        assert_eq!((d.severity, d.line, d.column), (Severity::Error, 8, 22));
        assert!(
            d.message
                .ends_with("holds a token of 5 characters; at least 16 are needed"),
            "{d}"
        );
        std::fs::remove_file(&p).unwrap();
        let d = &load(&good).diagnostics[0];
        assert!(d.message.contains("cannot be read"), "{d}");
        let d = &load("  listen: 127.0.0.1:9121\n  status_token_file: token.txt\n").diagnostics[0];
        assert_eq!(
            d.message,
            "metrics status_token_file 'token.txt' is not an absolute path"
        );

        // Beyond loopback with no token: a warning, the file still loads.
        let l = load("  listen: 0.0.0.0:9121\n");
        assert!(l.rules.is_some());
        let d = &l.diagnostics[0];
        assert_eq!((d.severity, d.line, d.column), (Severity::Warning, 7, 11));
        assert!(d.message.contains("/status has no token"), "{d}");
        for local in [
            "127.0.0.1:9121",
            "\"[::1]:9121\"",
            "\"[::ffff:127.0.0.1]:9121\"",
        ] {
            let l = load(&format!("  listen: {local}\n"));
            assert!(l.diagnostics.is_empty(), "{local}: {:?}", l.diagnostics);
        }
    }
}

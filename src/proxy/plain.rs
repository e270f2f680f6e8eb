//! Errors in plain words, for a client's reply and a log line: never an
//! OS error number (`Connection refused (os error 111)` reads
//! `connection refused`), never Rust's `Debug` form.

use std::io;

/// What `e` says, in lower case, without the OS error number.
pub fn plain_io_error(e: &io::Error) -> String {
    let words = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::TimedOut => "no answer in time",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::ConnectionReset => "connection reset",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::AddrInUse => "address in use",
        io::ErrorKind::AddrNotAvailable => "address not available",
        io::ErrorKind::PermissionDenied => "permission denied",
        _ => return without_os_error(&e.to_string()),
    };
    words.to_string()
}

/// `text` without any ` (os error N)`, its first letter in lower case.
pub fn without_os_error(text: &str) -> String {
    let mut rest = text;
    let mut out = String::with_capacity(text.len());
    while let Some(i) = rest.find(" (os error ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " (os error ".len()..];
        match after.find(')') {
            Some(j) if after[..j].bytes().all(|b| b.is_ascii_digit()) => rest = &after[j + 1..],
            _ => {
                out.push_str(" (os error ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    let mut chars = out.chars();
    match chars.next() {
        // An upper-case word is an acronym (`DNS`); keep it.
        Some(c) if !chars.clone().next().is_some_and(char::is_uppercase) => {
            c.to_lowercase().chain(chars).collect()
        }
        _ => out,
    }
}

/// A side's name in a log line: `client`, `server`.
pub(crate) fn side(s: crate::ftp::session::Side) -> &'static str {
    match s {
        crate::ftp::session::Side::Client => "client",
        crate::ftp::session::Side::Server => "server",
    }
}

/// Why a server could not be reached, as `ftpalg_upstream_failures_total`
/// counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// Its name did not resolve, or the resolver did not answer.
    Resolve,
    /// It refused the connection (nothing listens).
    Refused,
    /// It did not answer within `limits.connect_timeout`.
    Timeout,
    /// No route to it, or any other error of the connection.
    Unreachable,
}

impl UpstreamFailure {
    /// Every value, for the metric's series at zero.
    pub const ALL: [UpstreamFailure; 4] = [
        UpstreamFailure::Resolve,
        UpstreamFailure::Refused,
        UpstreamFailure::Timeout,
        UpstreamFailure::Unreachable,
    ];

    /// The class of a failed connection.
    pub fn of_connect(e: &io::Error) -> UpstreamFailure {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => UpstreamFailure::Refused,
            io::ErrorKind::TimedOut => UpstreamFailure::Timeout,
            _ => UpstreamFailure::Unreachable,
        }
    }

    /// The metric's `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamFailure::Resolve => "resolve",
            UpstreamFailure::Refused => "refused",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Unreachable => "unreachable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_os_error_number_is_left() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert!(refused.to_string().contains("os error"), "{refused}");
        assert_eq!(plain_io_error(&refused), "connection refused");
        let other = io::Error::from_raw_os_error(libc::EPROTO);
        let plain = plain_io_error(&other);
        assert!(!plain.contains("os error"), "{plain}");
        assert_eq!(plain, "protocol error");
        assert_eq!(
            without_os_error("DNS failed (os error 3)"),
            "DNS failed",
            "an acronym keeps its case"
        );
        assert_eq!(
            without_os_error("cannot read f: Is a directory (os error 21): x"),
            "cannot read f: Is a directory: x"
        );
        assert_eq!(
            UpstreamFailure::of_connect(&refused),
            UpstreamFailure::Refused
        );
    }
}

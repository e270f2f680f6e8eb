//! Routing: the client names its server with `USER name@host[:port]`; the
//! driver connects and reports.

use super::action::Denial;
use super::output::{reply, Refused};
use crate::ftp::command::{self as cmd, Command};

/// What the session knows of the route the client asked for.
#[derive(Debug, Default)]
pub(super) struct Route {
    /// The user part of `USER name@host`, as the client sent it.
    user: Option<Vec<u8>>,
    attempts: u32,
}

/// What a command before the route is chosen does.
pub(super) enum BeforeRoute {
    /// `USER name@host[:port]`: connect there, then log in as `user`.
    Connect {
        /// The name, decoded for the rules and the log.
        user: String,
        host: String,
        port: u16,
    },
    /// A reply, and nothing else.
    Reply(Vec<u8>),
    /// QUIT: `221`, and the session ends.
    Quit,
    /// A refusal.
    Refuse(Refused),
}

impl Route {
    /// What `command` does before the client has named a server; a USER
    /// that names one starts an attempt.
    pub(super) fn before(&mut self, command: Command<'_>) -> BeforeRoute {
        match command.verb {
            cmd::USER => {
                let arg = String::from_utf8_lossy(command.arg);
                let Some((user, host, port)) = split_user_host(&arg) else {
                    return BeforeRoute::Refuse(Refused::new(
                        530,
                        "Log in as USER name@host[:port] to choose a server.",
                        Denial::Syntax,
                        format!("USER without host: {arg}"),
                    ));
                };
                // The server gets the name as the client sent it, not as
                // decoded for the rules and the log.
                let raw = command.arg.trim_ascii();
                let at = raw.iter().rposition(|&b| b == b'@').unwrap_or(raw.len());
                self.user = Some(raw[..at].to_vec());
                self.attempts += 1;
                BeforeRoute::Connect { user, host, port }
            }
            cmd::QUIT => BeforeRoute::Quit,
            cmd::NOOP => BeforeRoute::Reply(reply(200, "NOOP ok.")),
            cmd::AUTH => BeforeRoute::Refuse(Refused::new(
                534,
                "TLS is not available before a server is chosen; continue without it.",
                Denial::Tls,
                "AUTH before USER name@host".into(),
            )),
            _ => BeforeRoute::Reply(reply(530, "Log in as USER name@host[:port] first.")),
        }
    }

    /// How many servers the client has named so far.
    pub(super) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The name to log in with at the server reached.
    pub(super) fn take_user(&mut self) -> Vec<u8> {
        self.user.take().unwrap_or_default()
    }
}

/// Why the server a client named was not reached, in plain words for the
/// client's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteFailure<'a> {
    /// The rules do not let the client reach it.
    NotAllowed(&'a str),
    /// It could not be reached: its name did not resolve, or no address
    /// of it answered.
    Unreachable(&'a str),
}

/// Splits `name@host[:port]`, `name@[v6]:port` or `name@v6` at the last `@`.
pub(super) fn split_user_host(arg: &str) -> Option<(String, String, u16)> {
    let (user, hostport) = arg.trim().rsplit_once('@')?;
    if user.is_empty() || hostport.is_empty() {
        return None;
    }
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) => (h.to_string(), p.parse().ok()?),
            None if after.is_empty() => (h.to_string(), 21),
            None => return None,
        }
    } else if hostport.matches(':').count() == 1 {
        let (h, p) = hostport.split_once(':')?;
        (h.to_string(), p.parse().ok()?)
    } else {
        (hostport.to_string(), 21)
    };
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((user.to_string(), host, port))
}

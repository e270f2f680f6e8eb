//! The `421`s a client gets when the gateway closes its control connection
//! outside a session's dialogue: at admission, before the server is
//! reached, or while the session has not logged in. A typed reason in,
//! the reply's bytes out, so every text the client sees is written by the
//! protocol layer and tested here; the driver only chooses the reason.

use std::net::SocketAddr;

/// Why the gateway closes a client's control connection before its
/// session's dialogue could go on.
#[derive(Debug, Clone, Copy)]
pub enum Refusal<'a> {
    /// A session limit is reached; `limit` names it ("too many
    /// sessions from this address").
    Busy {
        /// The limit, in lower case, as the log says it.
        limit: &'a str,
    },
    /// The listener that accepted the connection was removed by a reload.
    ListenerRemoved,
    /// A transparent listener could not learn where the client was going.
    UnknownDestination,
    /// The client's destination is one of the gateway's own listeners.
    SelfDestination,
    /// The rules do not let this listener reach the destination.
    ServerNotAllowed,
    /// The server could not be reached.
    Unreachable {
        /// Where the gateway tried to connect.
        server: SocketAddr,
        /// What the connection attempt said.
        error: &'a str,
    },
    /// A silent session, not logged in, made room for a newcomer.
    Evicted,
    /// The session did not log in within its time.
    LoginTimeout,
}

impl Refusal<'_> {
    /// The reply's bytes, CRLF-terminated.
    pub fn reply(&self) -> Vec<u8> {
        let text = match self {
            Refusal::Busy { limit } => format!("{}; try again later.", capitalised(limit)),
            Refusal::ListenerRemoved => "This address no longer takes connections.".into(),
            Refusal::UnknownDestination => {
                "Cannot tell which server this connection is for.".into()
            }
            Refusal::SelfDestination => {
                "This connection is addressed to the gateway itself, not to an FTP server.".into()
            }
            Refusal::ServerNotAllowed => {
                "That server is not reachable through this gateway.".into()
            }
            Refusal::Unreachable { server, error } => {
                format!("Cannot reach the server {server}: {error}.")
            }
            Refusal::Evicted => {
                "Too many sessions; closing this one, which has not logged in.".into()
            }
            Refusal::LoginTimeout => "Too slow to log in; closing control connection.".into(),
        };
        // One line whatever the reason's words: a CR or LF in an error
        // text must not start a second reply.
        let text = text.replace(['\r', '\n'], " ");
        format!("421 {text}\r\n").into_bytes()
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: Refusal<'_>) -> String {
        String::from_utf8(r.reply()).unwrap()
    }

    #[test]
    fn every_refusal_is_one_421_line() {
        let err = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).to_string();
        let all = [
            Refusal::Busy {
                limit: "too many sessions",
            },
            Refusal::ListenerRemoved,
            Refusal::UnknownDestination,
            Refusal::SelfDestination,
            Refusal::ServerNotAllowed,
            Refusal::Unreachable {
                server: "198.51.100.10:21".parse().unwrap(),
                error: &err,
            },
            Refusal::Evicted,
            Refusal::LoginTimeout,
        ];
        for r in all {
            let t = text(r);
            assert!(t.starts_with("421 ") && t.ends_with(".\r\n"), "{t:?}");
            assert_eq!(t.matches("\r\n").count(), 1, "{t:?}");
        }
    }

    #[test]
    fn the_limit_and_the_server_are_named() {
        assert_eq!(
            text(Refusal::Busy {
                limit: "too many sessions from this address"
            }),
            "421 Too many sessions from this address; try again later.\r\n"
        );
        let err = "no route\r\n230 forged";
        let t = text(Refusal::Unreachable {
            server: "198.51.100.10:21".parse().unwrap(),
            error: err,
        });
        assert_eq!(
            t,
            "421 Cannot reach the server 198.51.100.10:21: no route  230 forged.\r\n"
        );
    }
}

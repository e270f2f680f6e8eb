//! How a session ended, as its `session end` line says.

use std::net::SocketAddr;

/// How a session ended, for its `session end` line.
pub(super) struct Ended {
    /// The user, once known.
    pub user: Option<String>,
    /// The server, once known.
    pub server: Option<String>,
    /// Why, in a few words (`docs/logs.md` lists them).
    pub reason: &'static str,
}

impl Ended {
    /// A session that ended before its driver ran.
    pub(super) fn early(server: Option<SocketAddr>, reason: &'static str) -> Ended {
        Ended {
            user: None,
            server: server.map(|s| s.to_string()),
            reason,
        }
    }
}

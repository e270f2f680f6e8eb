//! Routing: the client names its server with `USER name@host[:port]`; the
//! driver connects and reports.

use super::*;

impl Session {
    /// Commands before the client has named a server (user@host routing).
    pub(super) fn before_route(&mut self, command: Command<'_>) {
        match command.verb {
            cmd::USER => {
                let arg = String::from_utf8_lossy(command.arg);
                match split_user_host(&arg) {
                    Some((user, host, port)) => {
                        self.proposed = Some(user.clone());
                        self.event(Event::User { name: user.clone() });
                        // The server gets the name as the client sent it,
                        // not as decoded for the rules and the log.
                        let raw = command.arg.trim_ascii();
                        let at = raw.iter().rposition(|&b| b == b'@').unwrap_or(raw.len());
                        self.route_user = Some(raw[..at].to_vec());
                        self.route_attempts += 1;
                        self.phase = Phase::Routing;
                        self.push(Action::Connect { host, port });
                    }
                    None => self.deny(
                        530,
                        "Log in as USER name@host[:port] to choose a server.",
                        Denial::Syntax,
                        format!("USER without host: {arg}"),
                    ),
                }
            }
            cmd::QUIT => {
                self.send_client(reply(221, "Goodbye."));
                self.close();
            }
            cmd::NOOP => self.send_client(reply(200, "NOOP ok.")),
            cmd::AUTH => self.deny(
                534,
                "TLS is not available before a server is chosen; continue without it.",
                Denial::Tls,
                "AUTH before USER name@host".into(),
            ),
            _ => self.send_client(reply(530, "Log in as USER name@host[:port] first.")),
        }
    }

    /// The driver connected to the server the client named.
    pub fn upstream_connected(&mut self, server: SocketAddr) {
        if self.phase != Phase::Routing {
            return;
        }
        self.server = Some(ServerAddr::new(server));
        self.phase = Phase::Greeting;
        self.pending.push_back(Pending::RoutedGreeting);
    }

    /// The driver could not reach (or the policy refused) the server the
    /// client named.
    pub fn upstream_failed(&mut self, reason: &str, policy: &dyn Policy) {
        if self.phase != Phase::Routing {
            return;
        }
        self.event(Event::Denied {
            reason: Denial::Rule("route".into()),
            detail: reason.to_string(),
        });
        if self.route_attempts >= self.cfg.max_route_attempts {
            self.send_client(reply(
                421,
                &format!("{reason}; too many attempts, closing."),
            ));
            self.close();
            return;
        }
        self.phase = Phase::WaitUser;
        self.proposed = None;
        self.send_client(reply(530, &format!("{reason}.")));
        self.drain_held(policy);
    }
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

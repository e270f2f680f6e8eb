//! Rules as the session engine consults them.

use super::{DataModeMatch, Listener, Rule, RuleAction, Rules};
use crate::ftp::session::{ClientMode, CommandContext, Policy, ServerDataMode, TlsPolicy, Verdict};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The rules seen from one listener. Cheap to build per command from the
/// current rules, so a reload applies to the next command.
#[derive(Debug, Clone)]
pub struct RulesPolicy {
    rules: Arc<Rules>,
    listener: usize,
}

/// `*` matches any run of characters; everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == t[ti] || p[pi] == b'?') {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether the user-name pattern `pattern` matches `user` the way servers
/// read names: without regard to ASCII case (Windows servers and several
/// Unix ones fold it, so a deny rule must not be dodged by `BOB`), and with
/// `anonymous` and `ftp` one user under two names (RFC 1635; vsftpd,
/// proftpd and pure-ftpd take either, in any case).
fn user_matches(pattern: &str, user: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let user = user.to_ascii_lowercase();
    if user == "anonymous" || user == "ftp" {
        return glob(&pattern, "anonymous") || glob(&pattern, "ftp");
    }
    glob(&pattern, &user)
}

impl RulesPolicy {
    /// The policy for listener number `listener` of `rules`.
    pub fn new(rules: Arc<Rules>, listener: usize) -> RulesPolicy {
        RulesPolicy { rules, listener }
    }

    /// The listener.
    pub fn listener(&self) -> &Listener {
        &self.rules.listeners[self.listener.min(self.rules.listeners.len() - 1)]
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    fn matches(&self, rule: &Rule, ctx: &CommandContext<'_>) -> bool {
        if let Some(names) = &rule.listener {
            if !names.iter().any(|n| *n == self.listener().name) {
                return false;
            }
        }
        if let Some(c) = &rule.client {
            if !c.iter().any(|s| s.contains(ctx.client)) {
                return false;
            }
        }
        if let Some(s) = &rule.server {
            match ctx.server {
                Some(server) if s.iter().any(|n| n.contains(server.ip())) => {}
                _ => return false,
            }
        }
        if let Some(users) = &rule.user {
            match ctx.user {
                Some(u) if users.iter().any(|p| user_matches(p, u)) => {}
                _ => return false,
            }
        }
        if let Some(cmds) = &rule.command {
            if !cmds.contains(ctx.verb) {
                return false;
            }
        }
        if let Some(mode) = rule.data_mode {
            let active = matches!(
                ctx.data_mode,
                Some(ClientMode::Port | ClientMode::Eprt | ClientMode::Lprt)
            );
            let passive = matches!(ctx.data_mode, Some(m) if m.is_passive());
            let hit = match mode {
                DataModeMatch::Active => active,
                DataModeMatch::Passive => passive,
            };
            if !hit {
                return false;
            }
        }
        true
    }

    /// The first rule matching, if any.
    pub fn decide(&self, ctx: &CommandContext<'_>) -> Option<&Rule> {
        self.rules.rules.iter().find(|r| self.matches(r, ctx))
    }
}

impl Policy for RulesPolicy {
    fn check_command(&self, ctx: &CommandContext<'_>) -> Verdict {
        match self.decide(ctx) {
            Some(r) if r.action == RuleAction::Deny => Verdict::Deny {
                code: r.reply_code,
                text: r.reply_text.clone(),
                rule: r.name.clone(),
            },
            _ => Verdict::Allow,
        }
    }

    fn server_mode(&self, _client: IpAddr, _server: SocketAddr) -> ServerDataMode {
        self.listener().server_mode
    }

    fn tls(&self) -> TlsPolicy {
        self.rules.security.tls
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("*", "anyone"));
        assert!(glob("anon*", "anonymous"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("anon*", "bob"));
        assert!(glob("*@example.org", "me@example.org"));
        assert!(!glob("", "x"));
    }

    #[test]
    fn users_match_the_way_servers_read_them() {
        use super::user_matches;
        // One anonymous user under two names, in any case.
        assert!(user_matches("anonymous", "ftp"));
        assert!(user_matches("anonymous", "FTP"));
        assert!(user_matches("ftp", "Anonymous"));
        assert!(user_matches("anon*", "ftp"));
        assert!(user_matches("f?p", "ANONYMOUS"));
        assert!(user_matches("bob", "BOB"));
        assert!(!user_matches("anonymous", "bob"));
        assert!(!user_matches("ftp", "ftpuser"));
        assert!(!user_matches("bob", "anonymous"));
    }
}

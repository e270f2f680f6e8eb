//! Who the session is for: the name the client proposes, the one the
//! server is taking a password for, and the identity the server accepted.
//! Rules match the user the server accepted with its 230, not the last
//! USER sent.

/// The session's login.
#[derive(Debug, Default)]
pub(super) struct Login {
    /// The identity the server accepted with its last 230.
    user: Option<String>,
    /// The name in the last USER sent: what rules see before a login.
    proposed: Option<String>,
    /// The name of the USER the server is taking a password for: bound by
    /// the 230 that ends the exchange, forgotten when the USER is refused.
    candidate: Option<String>,
    logged_in: bool,
}

impl Login {
    /// The user rules see: the identity the server accepted while logged
    /// in, else the name proposed in the last USER.
    pub(super) fn user(&self) -> Option<&str> {
        if self.logged_in {
            self.user.as_deref()
        } else {
            self.proposed.as_deref()
        }
    }

    pub(super) fn logged_in(&self) -> bool {
        self.logged_in
    }

    /// A USER for `name` goes to the server (or names the server to route
    /// to). Logged in, the accepted identity stays until a new 230: a
    /// refused USER leaves the server's login as it was.
    pub(super) fn propose(&mut self, name: String) {
        self.proposed = Some(name);
    }

    /// The route to the server the client named failed: its USER named
    /// nobody.
    pub(super) fn withdraw(&mut self) {
        self.proposed = None;
    }

    /// The server's final reply to a USER for `name`; returns whether it
    /// logged the session in.
    pub(super) fn user_answered(&mut self, name: String, code: u16) -> bool {
        match code {
            230 => {
                self.accept(Some(name));
                return true;
            }
            331 | 332 => self.candidate = Some(name),
            _ => self.candidate = None,
        }
        false
    }

    /// A 230 to PASS or ACCT ends the exchange for the candidate.
    pub(super) fn password_accepted(&mut self) {
        let name = self.candidate.take();
        self.accept(name);
    }

    /// A 230 ended a login exchange for `name`; without one (a 230 to a
    /// PASS whose USER was refused, as vsftpd's "Already logged in") the
    /// identity already accepted stays.
    fn accept(&mut self, name: Option<String>) {
        if let Some(name) = name {
            self.user = Some(name);
        } else if !self.logged_in {
            self.user = self.proposed.clone();
        }
        self.candidate = None;
        self.logged_in = true;
    }

    /// REIN: the server forgets the login, and so does the session.
    pub(super) fn reset(&mut self) {
        *self = Login::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_user_leaves_the_accepted_identity() {
        let mut l = Login::default();
        l.propose("anonymous".into());
        assert!(!l.user_answered("anonymous".into(), 331));
        l.password_accepted();
        assert_eq!(l.user(), Some("anonymous"));
        l.propose("root".into());
        assert!(!l.user_answered("root".into(), 530));
        l.password_accepted();
        assert_eq!(l.user(), Some("anonymous"), "no candidate: the login stays");
    }

    #[test]
    fn before_a_login_rules_see_the_proposed_name() {
        let mut l = Login::default();
        assert_eq!(l.user(), None);
        l.propose("bob".into());
        assert_eq!(l.user(), Some("bob"));
        l.withdraw();
        assert_eq!(l.user(), None);
        assert!(l.user_answered("carol".into(), 230));
        assert_eq!(l.user(), Some("carol"));
        l.reset();
        assert!(!l.logged_in());
        assert_eq!(l.user(), None);
    }
}

//! The gateway's last words on a session it ends itself.
//!
//! The driver notices what ends a session outside the protocol (a server
//! that hangs up, a silent client, a gateway that stops); what the client
//! is told then is the engine's to say, like every other reply.

use super::output::reply;

/// Why the driver ends a session the engine did not close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The server closed its control connection.
    ServerClosed,
    /// Neither peer spoke for the control idle timeout.
    IdleTimeout,
    /// The gateway is stopping.
    Shutdown,
}

impl CloseReason {
    /// The `421` the client gets.
    pub(super) fn reply(self) -> Vec<u8> {
        let text = match self {
            CloseReason::ServerClosed => "The server closed the control connection.",
            CloseReason::IdleTimeout => "Idle timeout; closing control connection.",
            CloseReason::Shutdown => "The gateway is shutting down.",
        };
        reply(421, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftp::session::{Session, SessionConfig, Upstream};

    #[test]
    fn each_reason_has_its_421() {
        let s = Session::new(SessionConfig::new(
            "100.64.0.2:40000".parse().unwrap(),
            Upstream::Fixed("198.51.100.2:21".parse().unwrap()),
        ));
        let text = |why| String::from_utf8(s.close_reply(why)).unwrap();
        assert_eq!(
            text(CloseReason::ServerClosed),
            "421 The server closed the control connection.\r\n"
        );
        assert_eq!(
            text(CloseReason::IdleTimeout),
            "421 Idle timeout; closing control connection.\r\n"
        );
        assert_eq!(
            text(CloseReason::Shutdown),
            "421 The gateway is shutting down.\r\n"
        );
    }
}

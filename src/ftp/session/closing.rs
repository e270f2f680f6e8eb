//! The gateway's last words on a session it ends itself.
//!
//! The driver notices what ends a session outside the protocol (a server
//! that hangs up, a gateway that stops, admission making room); what the
//! client is told then is the engine's to say, like every other reply.
//! The session's own timeouts end it from `handle_timeout`.

use super::output::reply;
use crate::ftp::refusal::Refusal;

/// Why the driver ends a session the engine did not close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The server closed its control connection: the client gets `421`
    /// after the replies still waiting for their data.
    ServerClosed,
    /// The gateway is stopping (no transfer runs, no setup is under way).
    Shutdown,
    /// The gateway's shutdown grace is over: the session's channels are
    /// reset.
    GraceOver,
    /// Admission made room for a newcomer (the session was silent and not
    /// logged in): the client gets what it was owed, as it stands, and
    /// `421`.
    Evicted,
}

/// The `421` for the control idle timeout.
pub(super) fn idle_reply() -> Vec<u8> {
    reply(421, "Idle timeout; closing control connection.")
}

impl CloseReason {
    /// The `421` the client gets.
    pub(super) fn reply(self) -> Vec<u8> {
        match self {
            CloseReason::ServerClosed => reply(421, "The server closed the control connection."),
            CloseReason::Shutdown | CloseReason::GraceOver => {
                reply(421, "The gateway is shutting down.")
            }
            CloseReason::Evicted => Refusal::Evicted.reply(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_421() {
        let text = |why: CloseReason| String::from_utf8(why.reply()).unwrap();
        assert_eq!(
            text(CloseReason::ServerClosed),
            "421 The server closed the control connection.\r\n"
        );
        assert_eq!(
            String::from_utf8(idle_reply()).unwrap(),
            "421 Idle timeout; closing control connection.\r\n"
        );
        assert_eq!(
            text(CloseReason::Shutdown),
            "421 The gateway is shutting down.\r\n"
        );
        assert_eq!(text(CloseReason::GraceOver), text(CloseReason::Shutdown));
        assert_eq!(
            CloseReason::Evicted.reply(),
            Refusal::Evicted.reply(),
            "the refusal's text"
        );
    }
}

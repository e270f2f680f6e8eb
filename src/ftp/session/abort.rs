//! Cancelling a transfer: `ABOR`, and a data connection cut before the
//! server answered the transfer.
//!
//! A reply held behind a data channel waits for the data to reach the
//! client; a client that stops reading and sends `ABOR` would wait for
//! ever behind it. So `ABOR` cuts the channel first ([`Action::Cut`]):
//! the driver resets both data connections, the held reply is settled as
//! failed (`426`), and the server, whose data connection is gone, answers
//! the transfer and then `ABOR` itself. A server that stays silent about a
//! transfer whose data was cut is answered for by the gateway after
//! `cut_reply_timeout` (the reply deadline, in `timers.rs`).
//!
//! [`Action::Cut`]: super::Action::Cut

use super::action::DataId;
use crate::ftp::reply::ReplyCode;

/// The session's transfers as `ABOR` sees them.
#[derive(Debug, Default)]
pub(super) struct Transfers {
    /// The channel of the last transfer command, whose data may still flow
    /// (what ABOR cuts).
    current: Option<DataId>,
    /// The transfer ABOR cut.
    cut: Option<DataId>,
    /// The transfer whose preliminary reply has passed: a second
    /// preliminary after the cut ends it.
    began: Option<DataId>,
}

/// What becomes of a preliminary reply line while a transfer's reply is
/// owed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Preliminary {
    /// It passes as usual.
    Passes,
    /// A line of the reply that ends a cut transfer: dropped.
    Dropped,
    /// The last line of it: the transfer has ended, answered `426`.
    EndsCutTransfer,
}

impl Transfers {
    /// A transfer command uses channel `id`.
    pub(super) fn bind(&mut self, id: DataId) {
        self.current = Some(id);
    }

    /// Channel `id`'s transfer is over (delivered, or refused by the
    /// server): an ABOR from now on has no data to cut.
    pub(super) fn over(&mut self, id: DataId) {
        if self.current == Some(id) {
            self.current = None;
        }
    }

    /// `ABOR`: the transfer whose data is to be cut, if any.
    pub(super) fn cut(&mut self) -> Option<DataId> {
        let id = self.current.take()?;
        self.cut = Some(id);
        Some(id)
    }

    /// One line of a preliminary reply from the server while the reply to
    /// the transfer on channel `owed` is owed. The first `1xx` of a
    /// transfer passes. A second one after ABOR cut the transfer is how
    /// pure-ftpd ends it (`150 0.010 seconds (measured here)`, then only
    /// ABOR's `226`): taken as the transfer's end and answered `426`, so
    /// the client gets one final reply per command and later replies stay
    /// matched to their commands.
    pub(super) fn preliminary(&mut self, owed: DataId, code: ReplyCode, last: bool) -> Preliminary {
        if !code.is_preliminary() {
            return Preliminary::Passes;
        }
        if self.began != Some(owed) {
            if last {
                self.began = Some(owed);
            }
            return Preliminary::Passes;
        }
        if self.cut != Some(owed) {
            return Preliminary::Passes;
        }
        if last {
            Preliminary::EndsCutTransfer
        } else {
            Preliminary::Dropped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_second_preliminary_after_a_cut_ends_the_transfer() {
        let mut t = Transfers::default();
        let id = DataId(1);
        t.bind(id);
        let p = ReplyCode(150);
        assert_eq!(t.preliminary(id, p, true), Preliminary::Passes);
        assert_eq!(t.preliminary(id, p, true), Preliminary::Passes, "not cut");
        assert_eq!(t.cut(), Some(id));
        assert_eq!(t.cut(), None, "cut once");
        assert_eq!(t.preliminary(id, p, false), Preliminary::Dropped);
        assert_eq!(t.preliminary(id, p, true), Preliminary::EndsCutTransfer);
        assert_eq!(
            t.preliminary(id, ReplyCode(226), true),
            Preliminary::Passes,
            "a final reply is never taken here"
        );
    }
}

//! Cancelling a transfer: `ABOR`, and a data connection cut before the
//! server answered the transfer.
//!
//! A reply held behind a data channel (`ToClientAfterData`) waits for the
//! data to reach the client; a client that stops reading and sends `ABOR`
//! would wait for ever behind it. So `ABOR` cuts the channel first
//! ([`Action::Cut`]): the driver resets both data connections, which
//! settles the held reply as failed (`426`), and the server, whose data
//! connection is gone, answers the transfer and then `ABOR` itself. A
//! server that stays silent about a transfer whose data was cut is answered
//! for by the gateway after a deadline the driver times
//! ([`Action::ReplyDeadline`], [`Session::reply_overdue`]).

use super::{reply, Action, DataId, Event, Pending, Phase, Session};
use crate::ftp::reply::ReplyCode;

impl Session {
    /// `ABOR` from the client: releases a data channel set up for no
    /// transfer yet, and cuts the one of the last transfer. `ABOR` itself
    /// is forwarded by the caller, after this.
    pub(super) fn cut_transfer(&mut self) {
        if let Some(id) = self.ready.take() {
            self.push(Action::Release { id });
        }
        let Some(id) = self.transfer.take() else {
            return;
        };
        self.event(Event::Aborted { id });
        self.cut = Some(id);
        self.push(Action::Cut { id });
        self.arm_reply_deadline(id);
    }

    /// Whether the server still owes the final reply to the transfer on
    /// channel `id`.
    fn unanswered(&self, id: DataId) -> bool {
        self.pending
            .iter()
            .any(|p| matches!(p, Pending::Forward { data: Some(d), .. } if *d == id))
    }

    fn arm_reply_deadline(&mut self, id: DataId) {
        if self.unanswered(id) {
            self.push(Action::ReplyDeadline {
                id,
                after: self.cfg.cut_reply_timeout,
            });
        }
    }

    /// The driver's report that the relay of channel `id` has ended, `Err`
    /// with the reason when it failed (a client that closed its data
    /// connection early, a reset, a stall). A failed relay whose transfer
    /// the server has not answered yet arms the reply deadline.
    pub fn data_ended(&mut self, id: DataId, outcome: Result<(), &str>) {
        if matches!(self.phase, Phase::Closed | Phase::Opaque) {
            return;
        }
        if outcome.is_err() {
            self.arm_reply_deadline(id);
        }
    }

    /// The deadline of [`Action::ReplyDeadline`] for channel `id` passed.
    /// If the transfer's reply is still the next one owed, the client gets
    /// `426` from the gateway and the server's late reply will be dropped;
    /// otherwise (answered meanwhile, or other replies owed first) nothing
    /// happens.
    pub fn reply_overdue(&mut self, id: DataId) {
        if matches!(self.phase, Phase::Closed | Phase::Opaque) {
            return;
        }
        if !matches!(self.pending.front(), Some(Pending::Forward { data: Some(d), .. }) if *d == id)
        {
            return;
        }
        // A multi-line reply the server has begun is left to finish: only
        // silence is answered.
        if self.replies.in_reply() {
            return;
        }
        self.pending[0] = Pending::Overdue;
        self.event(Event::ReplyOverdue { id });
        self.push(Action::Release { id });
        self.send_client(reply(426, "Connection closed; transfer aborted."));
        self.flush_local();
    }

    /// One line of a preliminary reply from the server while a transfer's
    /// reply is owed; returns whether it was taken here. The first `1xx`
    /// of a transfer passes. A second one after ABOR cut the transfer is
    /// how pure-ftpd ends it (`150 0.010 seconds (measured here)`, then
    /// only ABOR's `226`): taken as the transfer's end and answered `426`,
    /// so the client gets one final reply per command and later replies
    /// stay matched to their commands.
    pub(super) fn late_preliminary(&mut self, code: ReplyCode, last: bool) -> bool {
        let Some(&Pending::Forward { data: Some(id), .. }) = self.pending.front() else {
            return false;
        };
        if !code.is_preliminary() {
            return false;
        }
        if self.began != Some(id) {
            if last {
                self.began = Some(id);
            }
            return false;
        }
        if self.cut != Some(id) {
            return false;
        }
        if last {
            self.pending.pop_front();
            self.push(Action::Release { id });
            self.send_client(reply(426, "Connection closed; transfer aborted."));
            self.flush_local();
        }
        true
    }
}

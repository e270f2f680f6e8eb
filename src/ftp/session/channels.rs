//! The session's data channels as its driver holds them, and the bounds on
//! them: at most one channel in preparation and one running, whichever way
//! each is carried (through the gateway, or beside it as the kernel
//! forwards it; the driver says which when it starts one).
//!
//! A channel that has delivered (the server said its transfer succeeded,
//! and every byte was handed on) but whose relay still waits for a peer to
//! close its data socket counts as running: when a newer channel starts it
//! is retired, and if none does, it is retired [`DELIVERED_LINGER`] after
//! it delivered. Either way it loses nothing and its transfer is logged as
//! complete. The one exception to "one running" is a channel still
//! delivering a transfer the server already reported complete (a client
//! that sends its next data command before it has read the last file):
//! closing it would cut a file the server sent whole, so the newest such
//! channel is left to finish, bounded by its relay's deadlines.
//!
//! The table also remembers the last few channels whose data path failed,
//! for a transfer's reply that arrives after its channel has ended.
//! Everything here is decided from what the session asked of the driver
//! and what the driver reported; `output.rs` turns the decisions into
//! actions.

use super::action::{Cancel, Carriage, DataId};
use super::timers::Time;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// How long a relay that has delivered its transfer waits for the peers to
/// close the data connection before the gateway closes it. The client has
/// every byte, its FIN behind them, and the server's success reply: all
/// that is left are the closing handshakes, a round trip each. A client
/// that keeps its data socket open (some close theirs only at QUIT, some
/// never) would otherwise hold the relay and its two descriptors until
/// `transfer_idle_timeout`, one per transfer. A few seconds let any client
/// that closes at all do so cleanly; closing after them resets only the
/// server's end, which has sent everything and said so.
pub(super) const DELIVERED_LINGER: Duration = Duration::from_secs(3);

/// How many failed channels a session remembers, for a reply that arrives
/// after its relay has already ended. One transfer runs at a time; a few
/// are plenty.
const REMEMBER_FAILED: usize = 4;

#[derive(Debug, Default)]
struct Channel {
    /// Started, and how its data is carried (through the gateway until the
    /// driver says otherwise).
    running: Option<Carriage>,
    /// How the relay's server-to-client direction ended, once it has.
    delivered: Option<Result<(), String>>,
    /// The server's reply to the transfer on it said success: it is let
    /// finish even when released (its deadlines still bound it).
    success: bool,
    /// When it is retired if its peers keep the delivered connection open;
    /// `Some` once armed, which is once.
    linger: Option<Option<Time>>,
}

impl Channel {
    /// Its data is through as far as the gateway can tell: the relay
    /// delivered it, or it goes beside the gateway (the reply need not
    /// wait for bytes that never pass the gateway: holding it until the
    /// kernel's next look at the connection would only delay every
    /// transfer).
    fn through(&self) -> bool {
        matches!(self.delivered, Some(Ok(()))) || self.running == Some(Carriage::Beside)
    }

    /// Its transfer is over but for the closing: the server said success,
    /// and its data is through.
    fn has_delivered(&self) -> bool {
        self.success && self.running.is_some() && self.through()
    }
}

/// What becomes of a transfer's success reply line.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ReplyFate {
    /// It waits until the channel's data path has ended.
    Hold,
    /// The data path has ended: settled as it ended.
    Settle(Result<(), String>),
    /// Nothing is known against it: it goes as it is.
    Pass,
}

/// How a newer channel's start closes an older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closing {
    /// It has delivered: closed as complete.
    Retire,
    /// It is reset.
    Cancel,
}

/// What the table learned from a channel's end.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Ended {
    /// How it was carried, if it had started.
    pub(super) carriage: Option<Carriage>,
    /// The replies held behind it settle with this.
    pub(super) settle: Option<Result<(), String>>,
}

/// The session's data channels.
#[derive(Debug, Default)]
pub(super) struct Channels {
    table: BTreeMap<DataId, Channel>,
    /// Channels whose data path failed, newest last.
    failed: VecDeque<(DataId, String)>,
}

impl Channels {
    /// Whether the driver holds channel `id`.
    pub(super) fn has(&self, id: DataId) -> bool {
        self.table.contains_key(&id)
    }

    /// Channel `id` is being prepared. Returns the channels to cancel: one
    /// in preparation per session.
    pub(super) fn prepare(&mut self, id: DataId) -> Vec<DataId> {
        if self.has(id) {
            return Vec::new();
        }
        let idle = self
            .table
            .iter()
            .filter(|(_, c)| c.running.is_none())
            .map(|(o, _)| *o)
            .collect();
        self.table.insert(id, Channel::default());
        idle
    }

    /// Channel `id` starts. Returns the channels to close first, so it is
    /// the one running: a delivered one as complete, except the newest one
    /// still delivering a transfer the server reported complete.
    pub(super) fn start(&mut self, id: DataId) -> Vec<(DataId, Closing)> {
        let delivering = self
            .table
            .iter()
            .filter(|(o, c)| **o != id && c.success && !c.has_delivered())
            .map(|(o, _)| *o)
            .max();
        let room = self
            .table
            .iter()
            .filter(|(o, _)| **o != id && Some(**o) != delivering)
            .map(|(o, c)| {
                let how = if c.has_delivered() {
                    Closing::Retire
                } else {
                    Closing::Cancel
                };
                (*o, how)
            })
            .collect();
        if let Some(c) = self.table.get_mut(&id) {
            c.running = Some(Carriage::Through);
        }
        room
    }

    /// The driver says how started channel `id`'s bytes are carried.
    /// Returns whether its data is now through (it goes beside the
    /// gateway) while its server's success reply waits for it: what is
    /// held behind it is to go.
    pub(super) fn carried(&mut self, id: DataId, carriage: Carriage) -> bool {
        let Some(c) = self.table.get_mut(&id) else {
            return false;
        };
        if c.running.is_none() {
            return false;
        }
        c.running = Some(carriage);
        c.success && c.through()
    }

    /// Whether releasing channel `id` closes it: not when the server said
    /// its transfer succeeded.
    pub(super) fn release_closes(&self, id: DataId) -> bool {
        self.table.get(&id).is_some_and(|c| !c.success)
    }

    /// Channel `id` is cancelled (reset) for `why`. Returns whether it was
    /// held, and whether the replies held behind it are to settle as failed
    /// (its data was not through), which the table then remembers.
    pub(super) fn cancel(&mut self, id: DataId, why: Cancel) -> Option<bool> {
        let c = self.table.remove(&id)?;
        let failed = !c.through();
        if failed {
            self.remember(id, why.as_str());
        }
        Some(failed)
    }

    /// Channel `id` is retired (its transfer delivered); false if it was
    /// not held.
    pub(super) fn retire(&mut self, id: DataId) -> bool {
        self.table.remove(&id).is_some()
    }

    /// Every channel held.
    pub(super) fn ids(&self) -> Vec<DataId> {
        self.table.keys().copied().collect()
    }

    /// A line of the server's success reply to the transfer on channel
    /// `id`, at `now`.
    pub(super) fn success_reply(&mut self, id: DataId, now: Time) -> ReplyFate {
        let Some(c) = self.table.get_mut(&id) else {
            return match self.failed.iter().find(|(f, _)| *f == id) {
                Some((_, reason)) => ReplyFate::Settle(Err(reason.clone())),
                // Its relay finished cleanly already.
                None => ReplyFate::Pass,
            };
        };
        c.success = true;
        let fate = match (&c.delivered, c.running) {
            (_, Some(Carriage::Beside)) => ReplyFate::Settle(Ok(())),
            (None, _) => ReplyFate::Hold,
            (Some(outcome), _) => ReplyFate::Settle(outcome.clone()),
        };
        self.arm_linger(id, now);
        fate
    }

    /// The relay of channel `id` reports how its server-to-client direction
    /// ended, at `now`. Returns false for a channel not held.
    pub(super) fn delivered(&mut self, id: DataId, result: Result<(), &str>, now: Time) -> bool {
        let Some(c) = self.table.get_mut(&id) else {
            return false;
        };
        c.delivered = Some(result.map_err(String::from));
        self.arm_linger(id, now);
        true
    }

    /// Channel `id` ended: its relay task finished, its connection beside
    /// the gateway closed or failed, or it could not start.
    pub(super) fn ended(&mut self, id: DataId, result: Result<(), &str>) -> Option<Ended> {
        let c = self.table.remove(&id)?;
        let mut settle = None;
        match (c.running, result) {
            // A transfer beside the gateway that fails before the server
            // answered it must not be reported complete when the server
            // does.
            (Some(Carriage::Beside), Err(e)) if !c.success => {
                settle = Some(Err(e.to_string()));
                self.remember(id, e);
            }
            (Some(Carriage::Beside), _) => {}
            (_, result) => {
                if c.delivered.is_none() {
                    // It never got to delivering (no connection in time).
                    settle = Some(result.map_err(String::from));
                }
                if let Err(e) = result {
                    if !matches!(c.delivered, Some(Ok(()))) {
                        self.remember(id, e);
                    }
                }
            }
        }
        Some(Ended {
            carriage: c.running,
            settle,
        })
    }

    /// Arms channel `id`'s [`DELIVERED_LINGER`] once its relay has
    /// delivered a transfer the server reported complete.
    fn arm_linger(&mut self, id: DataId, now: Time) {
        let Some(c) = self.table.get_mut(&id) else {
            return;
        };
        let relay_delivered =
            c.running == Some(Carriage::Through) && matches!(c.delivered, Some(Ok(())));
        if c.linger.is_none() && relay_delivered && c.success {
            c.linger = Some(Some(now + DELIVERED_LINGER));
        }
    }

    /// The earliest [`DELIVERED_LINGER`] still to pass.
    pub(super) fn next_linger(&self) -> Option<Time> {
        self.table.values().filter_map(|c| c.linger.flatten()).min()
    }

    /// The channels whose [`DELIVERED_LINGER`] has passed at `now` and that
    /// are still only waiting for their peers to close: to retire.
    pub(super) fn lingered(&mut self, now: Time) -> Vec<DataId> {
        let mut due = Vec::new();
        for (id, c) in self.table.iter_mut() {
            if let Some(Some(at)) = c.linger {
                if at <= now {
                    c.linger = Some(None);
                    if c.has_delivered() {
                        due.push(*id);
                    }
                }
            }
        }
        due
    }

    /// Whether a transfer is under way (it holds the control idle timer).
    pub(super) fn running(&self) -> bool {
        self.table.values().any(|c| c.running.is_some())
    }

    /// The channels whose transfer is over but for the closing.
    pub(super) fn delivered_ids(&self) -> Vec<DataId> {
        self.table
            .iter()
            .filter(|(_, c)| c.has_delivered())
            .map(|(id, _)| *id)
            .collect()
    }

    fn remember(&mut self, id: DataId, reason: &str) {
        if self.failed.len() >= REMEMBER_FAILED {
            self.failed.pop_front();
        }
        self.failed.push_back((id, reason.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Time = Time::ZERO;

    fn at(secs: u64) -> Time {
        Time::from_start(Duration::from_secs(secs))
    }

    /// Channel `id` started, carried as the driver then says.
    fn running(c: &mut Channels, id: u64, carriage: Carriage) -> DataId {
        let id = DataId(id);
        c.prepare(id);
        c.start(id);
        c.carried(id, carriage);
        id
    }

    #[test]
    fn one_channel_in_preparation() {
        let mut c = Channels::default();
        assert_eq!(c.prepare(DataId(1)), vec![]);
        assert_eq!(c.prepare(DataId(1)), vec![], "its other side");
        assert_eq!(c.prepare(DataId(2)), vec![DataId(1)]);
        running(&mut c, 3, Carriage::Through);
        assert_eq!(
            c.prepare(DataId(4)),
            vec![DataId(1), DataId(2)],
            "a running one stays"
        );
    }

    #[test]
    fn one_running_a_delivered_one_retired_a_delivering_one_left_to_finish() {
        let mut c = Channels::default();
        let delivered = running(&mut c, 1, Carriage::Through);
        assert!(c.delivered(delivered, Ok(()), T0));
        assert_eq!(c.success_reply(delivered, T0), ReplyFate::Settle(Ok(())));
        let delivering = running(&mut c, 2, Carriage::Through);
        assert_eq!(c.success_reply(delivering, T0), ReplyFate::Hold);
        let stale = running(&mut c, 3, Carriage::Through);
        let newest = DataId(4);
        c.prepare(newest);
        assert_eq!(
            c.start(newest),
            vec![(delivered, Closing::Retire), (stale, Closing::Cancel)],
            "the newest channel still delivering a complete transfer is left"
        );
    }

    #[test]
    fn a_kernel_transfer_counts_as_delivered_and_its_reply_is_not_held() {
        let mut c = Channels::default();
        let k = running(&mut c, 1, Carriage::Beside);
        assert_eq!(c.success_reply(k, T0), ReplyFate::Settle(Ok(())));
        assert_eq!(c.delivered_ids(), vec![k]);
        assert_eq!(c.next_linger(), None, "no linger: nothing to close");
        c.prepare(DataId(2));
        assert_eq!(c.start(DataId(2)), vec![(k, Closing::Retire)]);
    }

    #[test]
    fn a_channel_is_through_the_gateway_until_the_driver_says_beside() {
        let mut c = Channels::default();
        let id = DataId(1);
        c.prepare(id);
        assert!(!c.carried(id, Carriage::Beside), "not started");
        c.start(id);
        assert_eq!(c.success_reply(id, T0), ReplyFate::Hold);
        assert!(!c.carried(id, Carriage::Through), "still waits");
        assert!(c.carried(id, Carriage::Beside), "the held reply may go");
        assert_eq!(c.delivered_ids(), vec![id]);
    }

    #[test]
    fn a_released_channel_closes_unless_its_transfer_succeeded() {
        let mut c = Channels::default();
        let a = running(&mut c, 1, Carriage::Through);
        assert!(c.release_closes(a));
        c.success_reply(a, T0);
        assert!(!c.release_closes(a));
        assert!(!c.release_closes(DataId(9)), "not held");
    }

    #[test]
    fn a_failure_is_remembered_for_a_reply_that_comes_after_the_channel() {
        let mut c = Channels::default();
        let a = running(&mut c, 1, Carriage::Through);
        assert_eq!(
            c.ended(a, Err("stalled")),
            Some(Ended {
                carriage: Some(Carriage::Through),
                settle: Some(Err("stalled".into()))
            })
        );
        assert_eq!(
            c.success_reply(a, T0),
            ReplyFate::Settle(Err("stalled".into()))
        );
        let b = running(&mut c, 2, Carriage::Through);
        assert_eq!(c.ended(b, Ok(())).map(|e| e.settle), Some(Some(Ok(()))));
        assert_eq!(c.success_reply(b, T0), ReplyFate::Pass);
        for id in 3..3 + REMEMBER_FAILED as u64 {
            let x = running(&mut c, id, Carriage::Through);
            c.cancel(x, Cancel::Superseded);
        }
        assert_eq!(c.success_reply(a, T0), ReplyFate::Pass, "forgotten");
    }

    #[test]
    fn a_delivered_relay_is_not_failed_by_its_later_end() {
        let mut c = Channels::default();
        let a = running(&mut c, 1, Carriage::Through);
        c.delivered(a, Ok(()), T0);
        let ended = c.ended(a, Err("reset by the client")).unwrap();
        assert_eq!(ended.settle, None, "settled when it delivered");
        assert_eq!(c.success_reply(a, T0), ReplyFate::Pass);
        let b = running(&mut c, 2, Carriage::Through);
        c.delivered(b, Ok(()), T0);
        assert_eq!(c.cancel(b, Cancel::Shutdown), Some(false));
    }

    #[test]
    fn a_kernel_transfer_failing_before_its_reply_is_remembered() {
        let mut c = Channels::default();
        let k = running(&mut c, 1, Carriage::Beside);
        let ended = c.ended(k, Err("no connection in time")).unwrap();
        assert_eq!(ended.carriage, Some(Carriage::Beside));
        assert_eq!(
            c.success_reply(k, T0),
            ReplyFate::Settle(Err("no connection in time".into()))
        );
        let ok = running(&mut c, 2, Carriage::Beside);
        c.success_reply(ok, T0);
        assert_eq!(c.ended(ok, Err("table lost")).unwrap().settle, None);
        assert_eq!(c.success_reply(ok, T0), ReplyFate::Pass);
    }

    #[test]
    fn a_delivered_relay_lingers_once_then_is_retired() {
        let mut c = Channels::default();
        let a = running(&mut c, 1, Carriage::Through);
        c.delivered(a, Ok(()), at(1));
        assert_eq!(c.next_linger(), None, "not before the server's success");
        c.success_reply(a, at(2));
        assert_eq!(c.next_linger(), Some(at(2) + DELIVERED_LINGER));
        c.success_reply(a, at(3));
        assert_eq!(
            c.next_linger(),
            Some(at(2) + DELIVERED_LINGER),
            "armed once"
        );
        assert_eq!(c.lingered(at(4)), vec![]);
        assert_eq!(c.lingered(at(5)), vec![a]);
        assert_eq!(c.next_linger(), None);
        assert_eq!(c.lingered(at(9)), vec![], "fires once");
    }

    #[test]
    fn only_a_running_channel_holds_the_idle_timer() {
        let mut c = Channels::default();
        c.prepare(DataId(1));
        assert!(!c.running());
        c.start(DataId(1));
        assert!(c.running());
        c.ended(DataId(1), Ok(()));
        assert!(!c.running());
    }
}

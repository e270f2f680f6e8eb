//! The session's bound on its data channels: at most one in preparation
//! and one running, relayed or forwarded by the kernel alike.
//!
//! A channel that has delivered (the server said its transfer succeeded,
//! and every byte was handed on) but whose relay still waits for a peer to
//! close its data socket counts as running: when a newer channel starts it
//! is closed, and if none does, it is closed [`DELIVERED_LINGER`] after it
//! delivered. Either way it loses nothing and its transfer is logged as
//! complete. The one exception to "one running" is a channel still
//! delivering a transfer the server already reported complete (a client
//! that sends its next data command before it has read the last file):
//! closing it would cut a file the server sent whole, so the newest such
//! channel is left to finish, bounded by its relay's deadlines.

use super::*;

/// How long a relay that has delivered its transfer waits for the peers to
/// close the data connection before the gateway closes it. The client has
/// every byte, its FIN behind them, and the server's success reply: all
/// that is left are the closing handshakes, a round trip each. A client
/// that keeps its data socket open (some close theirs only at QUIT, some
/// never) would otherwise hold the relay and its two descriptors until
/// `transfer_idle_timeout`, one per transfer. A few seconds let any client
/// that closes at all do so cleanly; closing after them resets only the
/// server's end, which has sent everything and said so.
pub(in crate::proxy::control) const DELIVERED_LINGER: Duration = Duration::from_secs(3);

impl Driver {
    /// Closes every channel other than `keep` that `which` selects.
    pub(in crate::proxy::control) fn close_others(
        &mut self,
        keep: DataId,
        which: fn(&Channel) -> bool,
        why: Cancel,
    ) {
        let others: Vec<DataId> = self
            .channels
            .iter()
            .filter(|(id, c)| **id != keep && which(c))
            .map(|(id, _)| *id)
            .collect();
        for id in others {
            self.kill(id, why);
        }
    }

    /// Makes room for channel `id`, which starts running now: every other
    /// channel is closed, a delivered one as complete, except the newest
    /// one still delivering a transfer the server reported complete.
    pub(in crate::proxy::control) fn make_room(&mut self, id: DataId) {
        let delivering = self
            .channels
            .iter()
            .filter(|(o, c)| **o != id && c.success_reply && !c.has_delivered())
            .map(|(o, _)| *o)
            .max();
        let others: Vec<(DataId, bool)> = self
            .channels
            .iter()
            .filter(|(o, _)| **o != id && Some(**o) != delivering)
            .map(|(o, c)| (*o, c.has_delivered()))
            .collect();
        for (other, delivered) in others {
            if delivered {
                self.close_delivered(other, "a newer data channel started");
            } else {
                self.kill(other, Cancel::Superseded);
            }
        }
    }

    /// Closes channel `id`, which has delivered its transfer: a relay is
    /// aborted as it drops (the client's end closes after what is queued,
    /// the server's end resets) and the transfer logged as complete with
    /// its counts; a transfer beside the gateway (the kernel's) has its
    /// pinhole withdrawn and its connection left to end on its own, since
    /// the gateway cannot tell whether its last bytes are still in flight.
    pub(in crate::proxy::control) fn close_delivered(&mut self, id: DataId, why: &'static str) {
        let Some(mut c) = self.channels.remove(&id) else {
            return;
        };
        if c.path.carriage() == Carriage::Beside {
            c.path.leave_to_finish(Leave::Closed(why));
            return;
        }
        debug!(
            session = self.id,
            channel = id.0,
            reason = why,
            "delivered data channel closed"
        );
        let moved = c
            .status
            .as_ref()
            .map(|s| Moved {
                up: s.progress().up.load(Ordering::Relaxed),
                down: s.progress().down.load(Ordering::Relaxed),
            })
            .unwrap_or_default();
        let elapsed = c.started.map(|s| s.elapsed()).unwrap_or_default();
        self.log_transfer(id, &c, Ok(moved), elapsed);
    }

    /// Arms channel `id`'s [`DELIVERED_LINGER`] once its relay has
    /// delivered a transfer the server reported complete. The timer task is
    /// tiny and ends by itself; a report after the session ended goes
    /// nowhere.
    pub(in crate::proxy::control) fn arm_linger(&mut self, id: DataId) {
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        if c.linger_armed || !c.relay_delivered() || !c.success_reply {
            return;
        }
        c.linger_armed = true;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DELIVERED_LINGER).await;
            let _ = tx.send(DataEvent::Lingered { id });
        });
    }

    /// Channel `id`'s [`DELIVERED_LINGER`] has passed.
    pub(in crate::proxy::control) fn lingered(&mut self, id: DataId) {
        if self.channels.get(&id).is_some_and(Channel::has_delivered) {
            self.close_delivered(id, "the peers kept the delivered data connection open");
        }
    }
}

//! What the session has for its driver, in order: the actions, the
//! client's output held behind data channels (`held.rs`), and the data
//! channels the driver holds for it (`channels.rs`). Every action about a
//! channel goes out through here, so the channel table always matches what
//! the driver was asked to do.

use super::action::{
    Action, Cancel, Carriage, ClientMode, DataId, Denial, Endpoint, Event, Retire, ServerMode, Side,
};
use super::channels::{Channels, Closing, ReplyFate};
use super::held::{self, Held};
use super::timers::Time;
use std::collections::VecDeque;

/// The actions waiting for the driver, and what the session keeps of
/// what it asked for.
#[derive(Debug, Default)]
pub(super) struct Output {
    actions: VecDeque<Action>,
    held: Held,
    channels: Channels,
}

impl Output {
    /// The next action, if any.
    pub(super) fn pop(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub(super) fn push(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    /// Bytes for the client, after anything still held for it.
    pub(super) fn send_client(&mut self, bytes: Vec<u8>) {
        if self.held.is_empty() {
            self.push(Action::ToClient(bytes));
        } else {
            self.held.push(None, bytes);
        }
    }

    pub(super) fn send_server(&mut self, bytes: Vec<u8>) {
        self.push(Action::ToServer(bytes));
    }

    pub(super) fn event(&mut self, e: Event) {
        self.push(Action::Event(e));
    }

    /// Bytes of client output held behind data channels.
    pub(super) fn held_bytes(&self) -> usize {
        self.held.bytes()
    }

    /// Whether client output waits for a data channel.
    pub(super) fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    // -------------------------------------------------------------- channels

    /// Asks the driver to prepare `side` of channel `id`, closing any other
    /// channel still in preparation first.
    pub(super) fn prepare(&mut self, id: DataId, side: Side, endpoint: Endpoint) {
        for other in self.channels.prepare(id) {
            self.cancel(other, Cancel::AnotherPrepared);
        }
        self.push(Action::Prepare { id, side, endpoint });
    }

    /// Asks the driver to start channel `id`, closing the channels it
    /// supersedes first.
    pub(super) fn start(&mut self, id: DataId, client_mode: ClientMode, server_mode: ServerMode) {
        for (other, how) in self.channels.start(id) {
            match how {
                Closing::Retire => self.retire(other, Retire::Superseded),
                Closing::Cancel => self.cancel(other, Cancel::Superseded),
            }
        }
        self.push(Action::Start {
            id,
            client_mode,
            server_mode,
        });
    }

    /// The driver says how started channel `id`'s bytes are carried.
    /// Returns whether a reply held behind it went out as a delivered
    /// transfer's (it goes beside the gateway: nothing to wait for).
    pub(super) fn carried(&mut self, id: DataId, carriage: Carriage) -> bool {
        self.channels.carried(id, carriage) && self.settle(id, Ok(()))
    }

    /// Channel `id` is no longer needed: it is reset, unless it carries a
    /// transfer the server said succeeded (that one is let finish).
    pub(super) fn release(&mut self, id: DataId) {
        if self.channels.release_closes(id) {
            self.cancel(id, Cancel::Released);
        }
    }

    /// Resets channel `id` for `why`; what waited for its data learns that
    /// it failed.
    pub(super) fn cancel(&mut self, id: DataId, why: Cancel) {
        let Some(failed) = self.channels.cancel(id, why) else {
            return;
        };
        self.push(Action::Reset { id, why });
        if failed {
            self.settle(id, Err(why.as_str()));
        }
    }

    /// `ABOR` cuts channel `id` (the driver hears of it even when the
    /// channel has already ended, and ignores it then).
    pub(super) fn cut(&mut self, id: DataId) {
        self.push(Action::Cut { id });
        if self.channels.cancel(id, Cancel::Cut) == Some(true) {
            self.settle(id, Err(Cancel::Cut.as_str()));
        }
    }

    /// Resets every channel for `why`.
    pub(super) fn cancel_all(&mut self, why: Cancel) {
        for id in self.channels.ids() {
            self.cancel(id, why);
        }
    }

    /// Closes channel `id`, which has delivered its transfer.
    fn retire(&mut self, id: DataId, why: Retire) {
        if self.channels.retire(id) {
            self.push(Action::Retire { id, why });
        }
    }

    /// A line of the server's success reply to the transfer on channel
    /// `id`: it must not overtake the transfer's data. Returns whether it
    /// went out as a delivered transfer's.
    pub(super) fn success_reply(&mut self, id: DataId, bytes: Vec<u8>, now: Time) -> bool {
        match self.channels.success_reply(id, now) {
            ReplyFate::Hold => {
                self.held.push(Some(id), bytes);
                false
            }
            ReplyFate::Settle(Ok(())) => {
                self.send_client(bytes);
                true
            }
            ReplyFate::Settle(Err(reason)) => {
                let now = held::failed(&bytes);
                self.rewritten(id, &reason, &bytes, &now);
                if !now.is_empty() {
                    self.send_client(now);
                }
                false
            }
            ReplyFate::Pass => {
                self.send_client(bytes);
                false
            }
        }
    }

    /// The relay of channel `id` reports how its server-to-client
    /// direction ended, at `now`. Returns whether a reply held behind it
    /// went out as a delivered transfer's.
    pub(super) fn delivered(&mut self, id: DataId, result: Result<(), &str>, now: Time) -> bool {
        self.channels.delivered(id, result, now) && self.settle(id, result)
    }

    /// Channel `id` ended. Returns how it was carried, if it was held,
    /// and whether a reply held behind it went out as a delivered
    /// transfer's.
    pub(super) fn ended(
        &mut self,
        id: DataId,
        result: Result<(), &str>,
    ) -> Option<(Option<Carriage>, bool)> {
        let ended = self.channels.ended(id, result)?;
        let delivered = match &ended.settle {
            Some(outcome) => self.settle(id, outcome.as_ref().map(|_| ()).map_err(|e| e.as_str())),
            None => false,
        };
        Some((ended.carriage, delivered))
    }

    /// Retires the channels whose linger has passed at `now`.
    pub(super) fn lingered(&mut self, now: Time) {
        for id in self.channels.lingered(now) {
            self.retire(id, Retire::Lingered);
        }
    }

    /// The earliest linger still to pass.
    pub(super) fn next_linger(&self) -> Option<Time> {
        self.channels.next_linger()
    }

    /// Whether a transfer is under way.
    pub(super) fn running(&self) -> bool {
        self.channels.running()
    }

    /// The channels whose transfer is over but for the closing.
    pub(super) fn delivered_ids(&self) -> Vec<DataId> {
        self.channels.delivered_ids()
    }

    /// Lets every held line go as it is.
    pub(super) fn release_held(&mut self) {
        self.held.settle_all();
        self.send_free();
    }

    /// Settles what waits for channel `id`, whose data path ended with
    /// `outcome`, and sends what no longer waits. Returns whether a line
    /// went out as a delivered transfer's.
    fn settle(&mut self, id: DataId, outcome: Result<(), &str>) -> bool {
        let (settled, changed) = self.held.settle(id, outcome.is_ok());
        if let Err(reason) = outcome {
            for r in changed {
                self.rewritten(id, reason, &r.held, &r.now);
            }
        }
        self.send_free();
        settled > 0 && outcome.is_ok()
    }

    /// A held line the client gets otherwise, because the data path of
    /// channel `id` failed: worth a log line when the client is told so.
    fn rewritten(&mut self, id: DataId, reason: &str, held: &[u8], now: &[u8]) {
        if now != held && !now.is_empty() {
            self.event(Event::DataPathFailed {
                id,
                reason: reason.to_string(),
                held: String::from_utf8_lossy(held).trim_end().to_string(),
            });
        }
    }

    fn send_free(&mut self) {
        while let Some(bytes) = self.held.next_free() {
            if !bytes.is_empty() {
                self.push(Action::ToClient(bytes));
            }
        }
    }
}

/// A client request the gateway refuses: the reply the client gets, and
/// the denial the driver logs.
#[derive(Debug)]
pub(super) struct Refused {
    pub(super) code: u16,
    pub(super) text: String,
    pub(super) reason: Denial,
    pub(super) detail: String,
}

impl Refused {
    pub(super) fn new(code: u16, text: impl Into<String>, reason: Denial, detail: String) -> Self {
        Refused {
            code,
            text: text.into(),
            reason,
            detail,
        }
    }
}

/// One reply line of the gateway's own.
pub(super) fn reply(code: u16, text: &str) -> Vec<u8> {
    format!("{code} {text}\r\n").into_bytes()
}

/// Bytes from a peer as text for logs and replies: lossily decoded, cut
/// at 200 bytes.
pub(super) fn lossy(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.into_owned()
    }
}

/// The first line of a reply text the engine collected.
pub(super) fn first_line(text: &[u8]) -> String {
    lossy(text.split(|&b| b == b'\n').next().unwrap_or_default())
}

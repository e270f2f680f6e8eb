//! What the session has for its driver, in order: the actions, and the
//! reply texts the gateway writes itself.

use super::action::{Action, DataId, Denial, Event};
use std::collections::VecDeque;

/// The actions waiting for the driver, in the order they must be carried
/// out.
#[derive(Debug, Default)]
pub(super) struct Output {
    actions: VecDeque<Action>,
}

impl Output {
    /// The next action, if any.
    pub(super) fn pop(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub(super) fn push(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    pub(super) fn send_client(&mut self, bytes: Vec<u8>) {
        self.push(Action::ToClient(bytes));
    }

    pub(super) fn send_server(&mut self, bytes: Vec<u8>) {
        self.push(Action::ToServer(bytes));
    }

    pub(super) fn event(&mut self, e: Event) {
        self.push(Action::Event(e));
    }

    /// A line of a transfer's reply that must not overtake its data.
    pub(super) fn after_data(&mut self, id: DataId, bytes: Vec<u8>) {
        self.push(Action::ToClientAfterData { id, bytes });
    }

    /// Channel `id` is no longer needed.
    pub(super) fn release(&mut self, id: DataId) {
        self.push(Action::Release { id });
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

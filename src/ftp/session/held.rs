//! The client's output held behind a data channel. The server's success
//! reply to a transfer must not overtake the transfer's last bytes, so it
//! waits until the channel's data path has ended, and everything the
//! client is sent after it waits behind it. When the data path failed, a
//! broken transfer is never reported complete: its success reply becomes
//! `426` ([`failed`]).

use super::action::DataId;
use crate::ftp::reply::ReplyCode;
use std::collections::VecDeque;

/// The reply a transfer whose data path failed ends with.
pub(super) const ABORTED: &[u8] = b"426 Connection closed; transfer aborted.\r\n";

/// Client output waiting for data channels, in order. Empty, or its first
/// line waits for a channel.
#[derive(Debug, Default)]
pub(super) struct Held {
    lines: VecDeque<(Option<DataId>, Vec<u8>)>,
    bytes: usize,
}

/// A held line the engine rewrote because its channel failed.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Rewritten {
    /// The line as the server sent it.
    pub(super) held: Vec<u8>,
    /// What the client gets instead (nothing for a leading line).
    pub(super) now: Vec<u8>,
}

impl Held {
    /// Whether nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The bytes waiting.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues `bytes`, waiting for channel `wait` (or only for the lines
    /// before it).
    pub(super) fn push(&mut self, wait: Option<DataId>, bytes: Vec<u8>) {
        self.bytes += bytes.len();
        self.lines.push_back((wait, bytes));
    }

    /// Settles the lines waiting for channel `id`, whose data path ended:
    /// as they are when it delivered, else as [`failed`] has them. Returns
    /// how many lines waited for it, and those that changed.
    pub(super) fn settle(&mut self, id: DataId, delivered: bool) -> (usize, Vec<Rewritten>) {
        let mut changed = Vec::new();
        let mut settled = 0;
        for (wait, bytes) in self.lines.iter_mut().filter(|l| l.0 == Some(id)) {
            *wait = None;
            settled += 1;
            if delivered {
                continue;
            }
            let held = std::mem::take(bytes);
            let now = failed(&held);
            self.bytes = self.bytes - held.len() + now.len();
            if now != held {
                changed.push(Rewritten {
                    held,
                    now: now.clone(),
                });
            }
            *bytes = now;
        }
        (settled, changed)
    }

    /// Lets every line go as it is (the session is being dismissed: the
    /// client is told why, after what it was owed).
    pub(super) fn settle_all(&mut self) {
        self.lines.iter_mut().for_each(|l| l.0 = None);
    }

    /// The next line that waits for nothing any more, in order.
    pub(super) fn next_free(&mut self) -> Option<Vec<u8>> {
        if self.lines.front()?.0.is_some() {
            return None;
        }
        let (_, bytes) = self.lines.pop_front()?;
        self.bytes -= bytes.len();
        Some(bytes)
    }
}

/// What one line of a transfer's reply becomes when the transfer's data
/// path failed: a final success reply becomes `426`; a leading or middle
/// line of a multi-line success reply is dropped (only its last line says
/// what the reply means, and it is answered so); anything else stays.
pub(super) fn failed(held: &[u8]) -> Vec<u8> {
    let code = held
        .get(..3)
        .filter(|c| c.iter().all(u8::is_ascii_digit))
        .and_then(|c| std::str::from_utf8(c).ok()?.parse().ok())
        .map(ReplyCode);
    let last = code.is_some() && held.get(3).is_none_or(|&b| b != b'-');
    match code {
        Some(c) if last && !c.is_success() => held.to_vec(),
        Some(_) if last => ABORTED.to_vec(),
        _ if code.is_none_or(|c| c.is_success()) => Vec::new(),
        _ => held.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_transfer_is_never_reported_complete() {
        assert_eq!(failed(b"226 Transfer complete.\r\n"), ABORTED);
        assert_eq!(failed(b"250 Done.\r\n"), ABORTED);
        assert_eq!(failed(b"226-Statistics follow\r\n"), b"");
        assert_eq!(failed(b" 1000 bytes\r\n"), b"", "a middle line");
        assert_eq!(failed(b"451 Local error.\r\n"), b"451 Local error.\r\n");
        assert_eq!(failed(b"451-Local\r\n"), b"451-Local\r\n");
    }

    #[test]
    fn output_behind_a_held_line_waits_with_it() {
        let mut h = Held::default();
        let (a, b) = (DataId(1), DataId(2));
        h.push(Some(a), b"226 Done.\r\n".to_vec());
        h.push(None, b"200 NOOP ok.\r\n".to_vec());
        h.push(Some(b), b"226 Also.\r\n".to_vec());
        assert_eq!(h.bytes(), 11 + 14 + 11);
        assert_eq!(h.next_free(), None, "the first line waits");
        assert_eq!(h.settle(b, true), (1, vec![]), "settled, but behind a");
        assert_eq!(h.next_free(), None);
        let (settled, changed) = h.settle(a, false);
        assert_eq!(settled, 1);
        assert_eq!(
            changed,
            vec![Rewritten {
                held: b"226 Done.\r\n".to_vec(),
                now: ABORTED.to_vec()
            }]
        );
        assert_eq!(h.next_free(), Some(ABORTED.to_vec()));
        assert_eq!(h.next_free(), Some(b"200 NOOP ok.\r\n".to_vec()));
        assert_eq!(h.next_free(), Some(b"226 Also.\r\n".to_vec()));
        assert_eq!(h.next_free(), None);
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
    }

    #[test]
    fn a_dismissed_session_lets_every_line_go_as_it_is() {
        let mut h = Held::default();
        h.push(Some(DataId(1)), b"226 Done.\r\n".to_vec());
        h.push(None, b"200 NOOP ok.\r\n".to_vec());
        h.settle_all();
        assert_eq!(h.next_free(), Some(b"226 Done.\r\n".to_vec()));
        assert_eq!(h.next_free(), Some(b"200 NOOP ok.\r\n".to_vec()));
    }
}

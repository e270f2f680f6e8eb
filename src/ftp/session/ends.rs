//! How each transfer ended, classified once: the engine notes what the
//! peers and the rules decided about a data channel (the transfer command
//! bound to it, the server's refusal, the rules' denial, the client's
//! ABOR), and when the driver reports how the channel's data path ended,
//! [`Ends::end`] gives the one class the transfer is logged and counted
//! under. A channel no transfer command was bound to, or denied on, is no
//! transfer.

use super::DataId;
use std::collections::VecDeque;

/// Channels whose notes are kept: one transfer runs at a time, one more is
/// prepared; the rest are channels the driver dropped without a report.
const MAX_NOTES: usize = 8;

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEnd {
    /// The data moved, and the server did not refuse it.
    Completed,
    /// The server refused the command or said it failed (`550 No such
    /// file`): its reply line.
    RefusedByServer {
        /// The server's reply, code and text.
        reply: String,
    },
    /// The rules refused the transfer command.
    RefusedByPolicy {
        /// The denial's class (`rule:NAME`).
        reason: String,
        /// The refused command.
        command: String,
        /// Its argument.
        file: String,
    },
    /// The client cut it with ABOR.
    AbortedByClient,
    /// The gateway could not carry it (its data path failed, or the server
    /// said its data connection broke: `425`, `426`).
    Failed {
        /// Why.
        reason: String,
    },
    /// No transfer used the channel: not a transfer.
    NotATransfer,
}

/// How a channel's data path ended, as the driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathEnd<'a> {
    /// Every byte was carried.
    Done,
    /// The client broke its data connection (a reset, a close in the
    /// middle): it went away.
    ClientLeft(&'a str),
    /// It failed otherwise (a deadline, the server's connection, a
    /// pinhole that expired, the kernel), or the driver cut it: why.
    Failed(&'a str),
}

#[derive(Debug, Default)]
struct Note {
    bound: bool,
    verdict: Option<Verdict>,
}

#[derive(Debug)]
enum Verdict {
    Refused(String),
    /// `425`/`426`: the data connection broke, as the server saw it.
    Broken(String),
    Denied {
        reason: String,
        command: String,
        file: String,
    },
    Aborted,
}

/// The notes on the session's recent channels.
#[derive(Debug, Default)]
pub(super) struct Ends {
    notes: VecDeque<(DataId, Note)>,
}

impl Ends {
    fn note(&mut self, id: DataId) -> &mut Note {
        if let Some(i) = self.notes.iter().position(|(n, _)| *n == id) {
            return &mut self.notes[i].1;
        }
        if self.notes.len() == MAX_NOTES {
            self.notes.pop_front();
        }
        self.notes.push_back((id, Note::default()));
        &mut self.notes.back_mut().expect("just pushed").1
    }

    /// A transfer command was forwarded on channel `id`.
    pub(super) fn bound(&mut self, id: DataId) {
        self.note(id).bound = true;
    }

    /// The server's final reply to the transfer on `id` said it failed.
    pub(super) fn server_refused(&mut self, id: DataId, code: u16, line: String) {
        let note = self.note(id);
        if note.verdict.is_none() {
            note.verdict = Some(match code {
                425 | 426 => Verdict::Broken(line),
                _ => Verdict::Refused(line),
            });
        }
    }

    /// The rules refused `command file`, for which channel `id` was ready.
    pub(super) fn denied(&mut self, id: DataId, reason: String, command: String, file: String) {
        self.note(id).verdict = Some(Verdict::Denied {
            reason,
            command,
            file,
        });
    }

    /// The client cut the transfer on `id` (ABOR).
    pub(super) fn aborted(&mut self, id: DataId) {
        self.note(id).verdict = Some(Verdict::Aborted);
    }

    /// The class of the transfer on `id`, whose data path ended with
    /// `path`; its notes are forgotten, so a channel is classified once.
    pub(super) fn end(&mut self, id: DataId, path: PathEnd<'_>) -> TransferEnd {
        let note = match self.notes.iter().position(|(n, _)| *n == id) {
            Some(i) => self.notes.remove(i).map(|(_, n)| n).unwrap_or_default(),
            None => return TransferEnd::NotATransfer,
        };
        match (note.verdict, path) {
            (Some(Verdict::Aborted), _) => TransferEnd::AbortedByClient,
            (
                Some(Verdict::Denied {
                    reason,
                    command,
                    file,
                }),
                _,
            ) => TransferEnd::RefusedByPolicy {
                reason,
                command,
                file,
            },
            _ if !note.bound => TransferEnd::NotATransfer,
            // The channel was released because of the refusal: the path's
            // end is its consequence, not its cause.
            (Some(Verdict::Refused(reply)), _) => TransferEnd::RefusedByServer { reply },
            // A client that went away is why the server saw its data
            // connection break.
            (_, PathEnd::ClientLeft(_)) => TransferEnd::AbortedByClient,
            // The path's own words say more than the server's 426.
            (_, PathEnd::Failed(reason)) => TransferEnd::Failed {
                reason: reason.to_string(),
            },
            (Some(Verdict::Broken(reply)), PathEnd::Done) => TransferEnd::Failed {
                reason: format!("the server said: {reply}"),
            },
            (None, PathEnd::Done) => TransferEnd::Completed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: DataId = DataId(1);

    #[test]
    fn each_end_has_one_class() {
        let mut e = Ends::default();
        e.bound(ID);
        assert_eq!(e.end(ID, PathEnd::Done), TransferEnd::Completed);
        assert_eq!(
            e.end(ID, PathEnd::Done),
            TransferEnd::NotATransfer,
            "classified once"
        );

        e.bound(ID);
        e.server_refused(ID, 550, "550 No such file".into());
        assert_eq!(
            e.end(ID, PathEnd::Failed("released")),
            TransferEnd::RefusedByServer {
                reply: "550 No such file".into()
            }
        );

        e.bound(ID);
        e.server_refused(ID, 426, "426 Connection closed".into());
        assert_eq!(
            e.end(ID, PathEnd::Failed("connection reset")),
            TransferEnd::Failed {
                reason: "connection reset".into()
            }
        );

        e.bound(ID);
        e.aborted(ID);
        e.server_refused(ID, 426, "426 Aborted".into());
        assert_eq!(
            e.end(ID, PathEnd::Failed("cut")),
            TransferEnd::AbortedByClient
        );

        e.bound(ID);
        e.server_refused(ID, 426, "426 Connection closed".into());
        assert_eq!(
            e.end(
                ID,
                PathEnd::ClientLeft("the client's data connection: connection reset")
            ),
            TransferEnd::AbortedByClient,
            "a client that went away aborted"
        );

        e.bound(ID);
        assert_eq!(
            e.end(ID, PathEnd::Failed("data connection idle for 3s")),
            TransferEnd::Failed {
                reason: "data connection idle for 3s".into()
            }
        );

        e.denied(ID, "rule:ro".into(), "RETR".into(), "f".into());
        assert!(matches!(
            e.end(ID, PathEnd::Failed("released")),
            TransferEnd::RefusedByPolicy { .. }
        ));
    }

    #[test]
    fn a_channel_no_transfer_used_is_none() {
        let mut e = Ends::default();
        assert_eq!(e.end(ID, PathEnd::Done), TransferEnd::NotATransfer);
        assert_eq!(
            e.end(ID, PathEnd::Failed("released")),
            TransferEnd::NotATransfer
        );
    }

    #[test]
    fn the_notes_are_bounded() {
        let mut e = Ends::default();
        for i in 0..100 {
            e.bound(DataId(i));
        }
        assert_eq!(e.notes.len(), MAX_NOTES);
        assert_eq!(e.end(DataId(99), PathEnd::Done), TransferEnd::Completed);
        assert_eq!(e.end(DataId(0), PathEnd::Done), TransferEnd::NotATransfer);
    }
}

//! What the server owes: one final reply per command sent, in order, each
//! forwarded to the client or consumed by the gateway (the greeting of a
//! routed server, its answers to the gateway's own PASV and PORT); and the
//! gateway's own replies, queued behind the ones still owed so the client
//! sees answers in command order.

use super::action::{DataId, Event, Side};
use super::output::{lossy, Output};
use crate::addrs::ServerAddr;
use crate::ftp::codec;
use crate::ftp::command::Verb;
use crate::ftp::framer::Frame;
use crate::ftp::reply::{ReplyCode, ReplyLine, ReplyTracker};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Cap on the text the engine collects from a reply it consumes itself.
const MAX_COLLECT: usize = 8 * 1024;

/// One reply owed to the client, in command order.
#[derive(Debug)]
pub(super) enum Pending {
    /// The server's greeting, forwarded.
    Greeting,
    /// The greeting of a server reached by user@host: swallowed, then USER.
    RoutedGreeting,
    /// A forwarded command whose reply is forwarded.
    Forward { verb: Verb, data: Option<DataId> },
    /// A forwarded USER: its reply says whether `name` is being logged in.
    User { name: String },
    /// Our PASV/EPSV to the server.
    ServerPassive { id: DataId, verb: Verb },
    /// Our PORT/EPRT to the server.
    ServerActive { id: DataId, verb: Verb },
    /// A reply of our own, waiting until earlier replies have been passed on.
    Local(Vec<u8>),
    /// A transfer the gateway answered itself (`426`) because the server
    /// stayed silent after its data was cut: the server's late reply is
    /// dropped, so the client never gets two answers to one command.
    Overdue,
}

impl Pending {
    /// Whether the gateway reads this reply itself instead of forwarding it.
    fn consumed(&self) -> bool {
        matches!(
            self,
            Pending::RoutedGreeting
                | Pending::ServerPassive { .. }
                | Pending::ServerActive { .. }
                | Pending::Overdue
        )
    }
}

/// The replies owed, and the reply line being read.
#[derive(Debug, Default)]
pub(super) struct Owed {
    pending: VecDeque<Pending>,
    replies: ReplyTracker,
    /// The text of a reply being consumed, up to [`MAX_COLLECT`].
    collected: Vec<u8>,
}

/// A server line, as the owed replies read it.
pub(super) enum Read {
    /// Nothing more to do: a line that is no reply line, passed through as
    /// it is, or a line of a reply the gateway consumes.
    Done,
    /// The last line of a reply the gateway consumed: what it answered,
    /// its code and its text.
    Consumed(Pending, ReplyCode, Vec<u8>),
    /// A line of a reply to forward, and its bytes (CRLF-terminated).
    Forward(ReplyLine, Vec<u8>),
}

impl Owed {
    /// How many replies are owed.
    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    /// A command went to the server (or a reply of the gateway's own waits).
    pub(super) fn expect(&mut self, p: Pending) {
        self.pending.push_back(p);
    }

    /// The reply owed first.
    pub(super) fn front(&self) -> Option<&Pending> {
        self.pending.front()
    }

    /// The reply owed first has come.
    pub(super) fn answered(&mut self) -> Option<Pending> {
        self.pending.pop_front()
    }

    /// Whether the server is in the middle of a multi-line reply.
    pub(super) fn in_reply(&self) -> bool {
        self.replies.in_reply()
    }

    /// The transfer on channel `id` whose final reply is owed first: the
    /// data channel's reply.
    pub(super) fn transfer_first(&self) -> Option<DataId> {
        match self.pending.front() {
            Some(&Pending::Forward { data: Some(id), .. }) => Some(id),
            _ => None,
        }
    }

    /// Whether the server still owes the final reply to the transfer on
    /// channel `id`.
    pub(super) fn unanswered(&self, id: DataId) -> bool {
        self.pending
            .iter()
            .any(|p| matches!(p, Pending::Forward { data: Some(d), .. } if *d == id))
    }

    /// The gateway answered the transfer owed first itself: the server's
    /// late reply to it will be dropped.
    pub(super) fn answered_for_the_server(&mut self) {
        if let Some(front) = self.pending.front_mut() {
            *front = Pending::Overdue;
        }
    }

    /// Sends a reply of the gateway's own, after any replies still owed for
    /// earlier commands, so the client sees answers in command order.
    pub(super) fn reply_local(&mut self, bytes: Vec<u8>, out: &mut Output) {
        if self.pending.is_empty() {
            out.send_client(bytes);
        } else {
            self.pending.push_back(Pending::Local(bytes));
        }
    }

    /// Sends the gateway's own replies no longer behind a server's.
    pub(super) fn flush_local(&mut self, out: &mut Output) {
        while let Some(Pending::Local(_)) = self.pending.front() {
            if let Some(Pending::Local(bytes)) = self.pending.pop_front() {
                out.send_client(bytes);
            }
        }
    }

    /// Reads one server frame against the replies owed.
    pub(super) fn read(&mut self, frame: Frame, out: &mut Output) -> Read {
        let mut raw = match frame {
            Frame::Line(line) => line.raw,
            Frame::TooLong { prefix } => {
                out.event(Event::Unparsed {
                    from: Side::Server,
                    line: format!(
                        "over-long line cut: {}",
                        lossy(&prefix[..prefix.len().min(60)])
                    ),
                });
                prefix
            }
        };
        let Some(rl) = self.replies.classify(&raw) else {
            out.event(Event::Unparsed {
                from: Side::Server,
                line: lossy(&raw),
            });
            raw.extend_from_slice(b"\r\n");
            out.send_client(raw);
            return Read::Done;
        };
        if !self.pending.front().is_some_and(Pending::consumed) {
            raw.extend_from_slice(b"\r\n");
            return Read::Forward(rl, raw);
        }
        if self.collected.len() < MAX_COLLECT {
            self.collected
                .extend_from_slice(&raw[rl.text_at.min(raw.len())..]);
            self.collected.push(b'\n');
        }
        if rl.last && !rl.code.is_preliminary() {
            let text = std::mem::take(&mut self.collected);
            if let Some(head) = self.pending.pop_front() {
                return Read::Consumed(head, rl.code, text);
            }
        } else if rl.last {
            self.collected.clear();
        }
        Read::Done
    }
}

/// Where the server's answer to the gateway's PASV/EPSV says to connect,
/// with the event worth logging about it; else why there is nowhere.
pub(super) fn passive_target(
    verb: Verb,
    code: ReplyCode,
    text: &[u8],
    server: ServerAddr,
    trust_passive_address: bool,
    out: &mut Output,
) -> Result<ServerAddr, String> {
    let parsed: Result<SocketAddr, String> = match code.0 {
        227 => codec::find_227(text)
            .map(|f| SocketAddr::V4(f.addr))
            .map_err(|e| e.to_string()),
        228 => codec::find_228(text).map_err(|e| e.to_string()),
        229 => codec::find_229(text)
            .map(|e| SocketAddr::new(e.addr.unwrap_or(server.ip()), e.port))
            .map_err(|e| e.to_string()),
        c => Err(format!(
            "the server answered {verb} with {c} {}",
            super::output::first_line(text)
        )),
    };
    let data = match parsed {
        Ok(a) => a,
        Err(reason) => {
            if code.is_success() {
                out.event(Event::Unparsed {
                    from: Side::Server,
                    line: format!("{} {}", code.0, lossy(text)),
                });
            }
            return Err(reason);
        }
    };
    let advertised = ServerAddr::new(data);
    if trust_passive_address && !advertised.ip().is_unspecified() {
        return Ok(advertised.scoped_like(server));
    }
    if advertised.ip() != server.ip() && !advertised.ip().is_unspecified() {
        out.event(Event::PassiveAddressIgnored {
            advertised: advertised.ip(),
            used: server.ip(),
        });
    }
    Ok(server.with_port(data.port()))
}

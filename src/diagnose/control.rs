//! One FTP control connection read from both directions: the stream is
//! reassembled, cut into lines by the engine's own framer, and read with
//! the engine's command, reply and address parsers.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use crate::ftp::codec;
use crate::ftp::command::{self, parse_command, Verb};
use crate::ftp::framer::{Frame, LineFramer, DEFAULT_MAX_LINE};
use crate::ftp::redact::{secret_verb, MASK};
use crate::ftp::reply::ReplyTracker;
use crate::packet::{Piece, Reassembler};

use super::model::{Close, ControlLine, Mode, Negotiation, Reply, Side, Stamp};

/// Most transcript lines kept per session; later ones are counted.
const MAX_TRANSCRIPT: usize = 400;
/// Most negotiations kept per session (the report as a whole keeps at most
/// [`MAX_REPORT_NEGOTIATIONS`]).
pub const MAX_NEGOTIATIONS: usize = 1000;
/// Most data negotiations kept in a report, all sessions together (each
/// keeps at most [`MAX_NEGOTIATIONS`]); later ones are counted, and the
/// report says so.
pub const MAX_REPORT_NEGOTIATIONS: usize = 100_000;
/// Most commands waiting for their reply (pipelining is short in practice).
const MAX_AWAITING: usize = 64;
/// Bytes held out of order per direction.
const MAX_PENDING: usize = 64 * 1024;
/// Longest text kept for one line.
const MAX_TEXT: usize = 200;

/// What the report keeps of a control session.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Session {
    /// Index of the capture it was seen in.
    pub capture: usize,
    /// The FTP client's end.
    pub client: SocketAddr,
    /// The FTP server's end.
    pub server: SocketAddr,
    /// First packet.
    pub first: Stamp,
    /// Last packet.
    pub last: Stamp,
    /// Whether the capture holds the connection's opening.
    pub saw_open: bool,
    /// The first FIN.
    pub fin: Option<Close>,
    /// A reset.
    pub reset: Option<Close>,
    /// The control lines, in order.
    pub transcript: Vec<ControlLine>,
    /// Lines not kept in the transcript (over the cap).
    pub transcript_dropped: u64,
    /// Data negotiations, in order.
    pub negotiations: Vec<Negotiation>,
    /// Negotiations not kept: over the session's cap or the report's.
    pub negotiations_dropped: u64,
    /// The 234 reply to AUTH: nothing after it is readable.
    pub tls: Option<Stamp>,
    /// Lines over the framer's cap.
    pub long_lines: u64,
    /// Stream bytes not captured (lost or cut by the snap length).
    pub gap_bytes: u64,
    /// The last control payload in each direction.
    #[serde(skip)]
    pub last_payload: [Option<Stamp>; 2],
    /// The last command line, kept whatever the transcript's cap.
    #[serde(skip)]
    pub last_command: Option<Stamp>,
}

#[derive(Debug)]
struct Awaiting {
    verb: Verb,
    negotiation: Option<usize>,
}

/// A control connection being read.
#[derive(Debug)]
pub struct ControlState {
    /// What is recorded.
    pub session: Session,
    streams: [Reassembler; 2],
    framers: [LineFramer; 2],
    replies: ReplyTracker,
    awaiting: VecDeque<Awaiting>,
    /// Lines produced by the current packet, to be read after the borrow
    /// of the reassembler ends.
    frames: Vec<Frame>,
    /// Most transcript lines this session may keep.
    transcript_cap: usize,
}

/// The negotiations the whole report may keep, shared by its sessions:
/// one session's cap times the sessions a report keeps would be far too
/// much memory, so what a capture crafted to grow it gets is bounded here.
#[derive(Debug, Default)]
pub struct NegotiationBudget {
    kept: usize,
    refused: u64,
}

impl NegotiationBudget {
    /// Takes one negotiation from the budget; false once it is spent.
    fn take(&mut self) -> bool {
        if self.kept < MAX_REPORT_NEGOTIATIONS {
            self.kept += 1;
            true
        } else {
            self.refused += 1;
            false
        }
    }

    /// Negotiations kept, all sessions together.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.kept
    }

    /// Negotiations not kept because the budget was spent.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

/// What the sessions of a report share while the captures are read.
#[derive(Debug, Default)]
pub struct Shared {
    /// The data connections the segment just read leads to expect, for
    /// the flow table to take.
    pub expects: Vec<Expect>,
    /// The data negotiations the whole report may keep.
    pub negotiations: NegotiationBudget,
}

/// A new expectation of a data connection, for the flow table.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// The negotiation's index in its session.
    pub negotiation: usize,
    /// Who will connect.
    pub mode: Mode,
    /// The address named, if any.
    pub address: Option<SocketAddr>,
    /// The port to connect to.
    pub port: u16,
}

fn text_of(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .take(MAX_TEXT)
        .collect();
    if s.chars().count() > MAX_TEXT {
        out.push('…');
    }
    out
}

/// A client line as the transcript shows it: a password (`PASS`, `ACCT`)
/// masked however the line is broken, see [`crate::ftp::redact`].
fn client_text(line: &[u8]) -> String {
    match secret_verb(line) {
        Some(verb) => format!("{verb} {MASK}"),
        None => text_of(line),
    }
}

fn is_negotiation(verb: Verb) -> Option<Mode> {
    match verb {
        command::PORT | command::EPRT | command::LPRT => Some(Mode::Active),
        command::PASV | command::EPSV | command::LPSV => Some(Mode::Passive),
        _ => None,
    }
}

impl ControlState {
    /// Starts reading a control connection.
    pub fn new(capture: usize, client: SocketAddr, server: SocketAddr, at: Stamp) -> ControlState {
        ControlState {
            session: Session {
                capture,
                client,
                server,
                first: at,
                last: at,
                saw_open: false,
                fin: None,
                reset: None,
                transcript: Vec::new(),
                transcript_dropped: 0,
                negotiations: Vec::new(),
                negotiations_dropped: 0,
                tls: None,
                long_lines: 0,
                gap_bytes: 0,
                last_payload: [None, None],
                last_command: None,
            },
            streams: [Reassembler::new(MAX_PENDING), Reassembler::new(MAX_PENDING)],
            framers: [
                LineFramer::new(DEFAULT_MAX_LINE),
                LineFramer::new(DEFAULT_MAX_LINE),
            ],
            replies: ReplyTracker::default(),
            awaiting: VecDeque::new(),
            frames: Vec::new(),
            transcript_cap: MAX_TRANSCRIPT,
        }
    }

    /// Lowers the transcript cap (the report's total budget is shared).
    pub fn limit_transcript(&mut self, cap: usize) {
        self.transcript_cap = cap.min(MAX_TRANSCRIPT);
    }

    /// The transcript cap.
    pub fn transcript_cap(&self) -> usize {
        self.transcript_cap
    }

    /// A SYN from one side: the stream's start.
    pub fn syn(&mut self, from: Side, seq: u32) {
        self.session.saw_open = true;
        self.streams[from as usize].syn(seq);
    }

    /// A segment's payload from one side; the data connections the lines it
    /// completed lead to expect go to `shared.expects`. Negotiations are
    /// kept while the shared budget lasts.
    pub fn payload(
        &mut self,
        from: Side,
        seq: u32,
        payload: &[u8],
        wire_len: u32,
        at: Stamp,
        shared: &mut Shared,
    ) {
        self.session.last = at;
        if wire_len == 0 {
            return;
        }
        self.session.last_payload[from as usize] = Some(at);
        if self.session.tls.is_some() {
            return;
        }
        let d = from as usize;
        let framer = &mut self.framers[d];
        let frames = &mut self.frames;
        let mut gap = 0u64;
        self.streams[d].push(seq, payload, wire_len, &mut |piece| match piece {
            Piece::Data(bytes) => framer.push(bytes, frames),
            Piece::Gap(n) => {
                // The line in progress is lost with the missing bytes.
                framer.take_buffered();
                gap += u64::from(n);
            }
        });
        self.session.gap_bytes += gap;
        let frames = std::mem::take(&mut self.frames);
        for frame in &frames {
            if self.session.tls.is_some() {
                break;
            }
            match frame {
                Frame::Line(line) => {
                    // A line the gateway would refuse is still shown as it came.
                    let text = line
                        .decode()
                        .map(|c| c.text)
                        .unwrap_or(std::borrow::Cow::Borrowed(&line.raw[..]));
                    match from {
                        Side::Client => self.client_line(&text, at, &mut shared.negotiations),
                        Side::Server => self.server_line(&text, at, &mut shared.expects),
                    }
                }
                Frame::TooLong { prefix } => {
                    self.session.long_lines += 1;
                    let mut text = match (from, secret_verb(prefix)) {
                        (Side::Client, Some(verb)) => format!("{verb} {MASK}"),
                        _ => text_of(&prefix[..prefix.len().min(60)]),
                    };
                    text.push_str(" [line over the 2048-byte cap]");
                    self.transcript(from, text, at);
                }
            }
        }
        self.frames = frames;
        self.frames.clear();
    }

    /// A FIN or RST.
    pub fn closed(&mut self, from: Side, reset: bool, at: Stamp) {
        self.session.last = at;
        let close = Some(Close { by: from, at });
        if reset {
            self.session.reset = self.session.reset.or(close);
        } else {
            self.session.fin = self.session.fin.or(close);
        }
    }

    /// Any other packet.
    pub fn seen(&mut self, at: Stamp) {
        self.session.last = at;
    }

    fn transcript(&mut self, from: Side, text: String, at: Stamp) {
        if self.session.transcript.len() < self.transcript_cap {
            self.session.transcript.push(ControlLine { at, from, text });
        } else {
            self.session.transcript_dropped += 1;
        }
    }

    fn client_line(&mut self, line: &[u8], at: Stamp, budget: &mut NegotiationBudget) {
        self.session.last_command = Some(at);
        self.transcript(Side::Client, client_text(line), at);
        let Ok(cmd) = parse_command(line) else {
            return;
        };
        let mut negotiation = None;
        if let Some(mode) = is_negotiation(cmd.verb) {
            if self.session.negotiations.len() >= MAX_NEGOTIATIONS || !budget.take() {
                self.session.negotiations_dropped += 1;
            } else {
                let (address, address_error) = match cmd.verb {
                    command::PORT => split(codec::parse_port(cmd.arg).map(SocketAddr::V4)),
                    command::EPRT => split(codec::parse_eprt(cmd.arg)),
                    command::LPRT => split(codec::parse_lprt(cmd.arg)),
                    _ => (None, None),
                };
                self.session.negotiations.push(Negotiation {
                    command: cmd.verb.as_str().to_string(),
                    argument: text_of(cmd.arg),
                    at,
                    mode,
                    address,
                    address_error,
                    reply: None,
                    transfer: None,
                    transfer_at: None,
                    started: None,
                    result: None,
                    data: None,
                });
                negotiation = Some(self.session.negotiations.len() - 1);
            }
        } else if cmd.verb.is_transfer() {
            // The transfer uses the latest negotiation that no transfer
            // has used yet.
            if let Some(i) = self
                .session
                .negotiations
                .iter()
                .rposition(|n| n.transfer.is_none())
            {
                if self.session.negotiations.len() - 1 == i {
                    let n = &mut self.session.negotiations[i];
                    n.transfer = Some(
                        format!("{} {}", cmd.verb, text_of(cmd.arg))
                            .trim_end()
                            .to_string(),
                    );
                    n.transfer_at = Some(at);
                    negotiation = Some(i);
                }
            }
        }
        if self.awaiting.len() < MAX_AWAITING {
            self.awaiting.push_back(Awaiting {
                verb: cmd.verb,
                negotiation,
            });
        }
    }

    fn server_line(&mut self, line: &[u8], at: Stamp, expects: &mut Vec<Expect>) {
        self.transcript(Side::Server, text_of(line), at);
        let Some(rl) = self.replies.classify(line) else {
            return;
        };
        if !rl.last {
            return;
        }
        let code = rl.code.0;
        let text = &line[rl.text_at.min(line.len())..];
        let reply = Reply {
            code,
            text: text_of(line),
            at,
        };
        if rl.code.is_preliminary() {
            if let Some(front) = self.awaiting.front() {
                if let Some(i) = front.negotiation {
                    self.session.negotiations[i].started.get_or_insert(reply);
                }
            }
            return;
        }
        let Some(front) = self.awaiting.pop_front() else {
            return;
        };
        if front.verb == command::AUTH && code == 234 {
            self.session.tls = Some(at);
            return;
        }
        let Some(i) = front.negotiation else {
            return;
        };
        let server_ip = self.session.server.ip();
        let n = &mut self.session.negotiations[i];
        if front.verb.is_transfer() {
            n.result = Some(reply);
            return;
        }
        n.reply = Some(reply);
        let addr: Option<SocketAddr> = match (front.verb, code) {
            (command::PASV, 227) => codec::find_227(text).ok().map(|f| SocketAddr::V4(f.addr)),
            (command::EPSV, 229) => codec::find_229(text)
                .ok()
                .map(|e| SocketAddr::new(e.addr.unwrap_or(server_ip), e.port)),
            (command::LPSV, 228) => codec::find_228(text).ok(),
            (_, 200..=299) if n.mode == Mode::Active => n.address,
            _ => None,
        };
        if n.mode == Mode::Passive {
            n.address = addr;
            if addr.is_none() && (200..300).contains(&code) {
                n.address_error = Some("no address in the reply".into());
            }
        }
        if let Some(addr) = addr {
            expects.push(Expect {
                negotiation: i,
                mode: n.mode,
                address: Some(addr),
                port: addr.port(),
            });
        }
    }
}

fn split(r: Result<SocketAddr, codec::CodecError>) -> (Option<SocketAddr>, Option<String>) {
    match r {
        Ok(a) => (Some(a), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// Whether an address is one the internet does not route: private,
/// carrier-grade NAT, loopback, link-local, unspecified, documentation
/// ranges excepted (the lab uses them as public addresses).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

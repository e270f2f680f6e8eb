//! The flow table: which TCP connection is a control connection (port 21,
//! or found by its content), which is the data connection a negotiation
//! announced, and which is neither. Bounded whatever the capture holds.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

use crate::packet::TcpSegment;

use super::control::{ControlState, Expect, Shared};
use super::model::{Close, DataConn, Mode, Side, Stamp};

/// Most connections followed at once; past it new unknown ones are skipped.
pub const MAX_FLOWS: usize = 65_536;
/// Most control sessions kept in a report.
pub const MAX_SESSIONS: usize = 10_000;
/// Most data connections kept in a report.
pub const MAX_DATA: usize = 100_000;
/// Most transcript lines kept in a report, all sessions together; each
/// new session reserves its share (at most 400) from what is left.
pub const MAX_TRANSCRIPT_LINES: usize = 400_000;
pub use super::control::MAX_REPORT_NEGOTIATIONS;
/// Most data connections expected and not yet seen, per capture.
const MAX_EXPECTS: usize = 4096;

#[derive(Debug)]
enum Flow {
    /// Index into `sessions`; `client` tells the direction.
    Control(usize),
    /// Index into `data`.
    Data(usize),
    /// Not known yet: the first payload in each direction decides.
    Probe(Probe),
    /// Not FTP.
    Other,
}

#[derive(Debug, Default)]
struct Probe {
    /// The SYN's sender and sequence number.
    syn: Option<(SocketAddr, u32)>,
    /// The SYN-ACK's sender and sequence number.
    synack: Option<(SocketAddr, u32)>,
    /// Payloads looked at.
    looked: u8,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    session: usize,
    expect: Expect,
    server_ip: std::net::IpAddr,
    /// Its place in the order expectations were added.
    serial: u64,
}

/// Follows the connections of one or more captures.
#[derive(Debug, Default)]
pub struct Tracker {
    flows: HashMap<(SocketAddr, SocketAddr), Flow>,
    /// Control connections, in the order they were found.
    pub sessions: Vec<ControlState>,
    /// Data connections.
    pub data: Vec<DataConn>,
    /// Expected data connections by the port they go to, oldest first.
    pending: HashMap<u16, VecDeque<Pending>>,
    /// The port of each `pending` entry by its serial: the oldest entry of
    /// all is the first, and any entry leaves in O(log n).
    pending_order: BTreeMap<u64, u16>,
    /// The next expectation's serial.
    next_serial: u64,
    /// Connections not followed because a table was full.
    pub untracked: u64,
    /// Per data connection: base and highest sequence end per direction.
    data_seq: Vec<[Option<(u32, u32)>; 2]>,
    /// Transcript lines reserved by the sessions so far.
    transcript_reserved: usize,
    /// Sessions given fewer transcript lines than their share because the
    /// report's budget ran out.
    pub transcript_short: usize,
    /// What the sessions share: the expectations of the segment just
    /// read, and the negotiation budget.
    pub shared: Shared,
}

fn key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Whether the first bytes of a stream look like FTP control: a server
/// greeting that names FTP, or a command only FTP has.
fn looks_like_ftp(payload: &[u8]) -> Option<Side> {
    let head = &payload[..payload.len().min(128)];
    if head.starts_with(b"220") && matches!(head.get(3), Some(b' ' | b'-')) {
        let lower = head.to_ascii_lowercase();
        if lower.windows(3).any(|w| w == b"ftp") {
            return Some(Side::Server);
        }
    }
    const VERBS: [&[u8]; 12] = [
        b"PASV\r", b"EPSV", b"PORT ", b"EPRT ", b"RETR ", b"STOR ", b"TYPE I", b"TYPE A",
        b"SYST\r", b"FEAT\r", b"MLSD", b"CWD ",
    ];
    if VERBS.iter().any(|v| head.starts_with(v)) {
        return Some(Side::Client);
    }
    None
}

impl Tracker {
    /// Adds a control session, reserving its transcript lines.
    fn add_session(&mut self, mut state: ControlState) -> usize {
        let share = state.transcript_cap();
        let cap = share.min(MAX_TRANSCRIPT_LINES.saturating_sub(self.transcript_reserved));
        if cap < share {
            self.transcript_short += 1;
        }
        state.limit_transcript(cap);
        self.transcript_reserved += cap;
        self.sessions.push(state);
        self.sessions.len() - 1
    }

    /// Forgets the flows of a finished capture, keeping what was found.
    pub fn end_capture(&mut self) {
        self.flows.clear();
        self.pending.clear();
        self.pending_order.clear();
    }

    /// Follows one segment of capture `capture`.
    pub fn segment(&mut self, capture: usize, seg: &TcpSegment<'_>, at: Stamp) {
        let k = key(seg.src, seg.dst);
        if !self.flows.contains_key(&k) {
            let Some(flow) = self.classify_new(capture, seg, at) else {
                self.untracked += 1;
                return;
            };
            self.flows.insert(k, flow);
        }
        let Some(flow) = self.flows.get_mut(&k) else {
            return;
        };
        match flow {
            Flow::Control(i) => {
                let i = *i;
                self.control_segment(i, seg, at);
            }
            Flow::Data(i) => {
                let i = *i;
                self.data_segment(i, seg, at);
            }
            Flow::Probe(probe) => {
                if seg.flags.syn {
                    if seg.flags.ack {
                        probe.synack = Some((seg.src, seg.seq));
                    } else {
                        probe.syn = Some((seg.src, seg.seq));
                    }
                }
                if seg.payload.is_empty() {
                    if seg.flags.fin || seg.flags.rst {
                        self.flows.remove(&k);
                    }
                    return;
                }
                probe.looked += 1;
                let verdict = looks_like_ftp(seg.payload);
                let (syn, synack, looked) = (probe.syn, probe.synack, probe.looked);
                match verdict {
                    Some(side) if self.sessions.len() < MAX_SESSIONS => {
                        let (client, server) = match side {
                            Side::Client => (seg.src, seg.dst),
                            Side::Server => (seg.dst, seg.src),
                        };
                        let mut state = ControlState::new(capture, client, server, at);
                        for (from, seq) in [syn, synack].into_iter().flatten() {
                            state.syn(
                                if from == client {
                                    Side::Client
                                } else {
                                    Side::Server
                                },
                                seq,
                            );
                        }
                        let i = self.add_session(state);
                        self.flows.insert(k, Flow::Control(i));
                        self.control_segment(i, seg, at);
                    }
                    _ if looked >= 2 => {
                        self.flows.insert(k, Flow::Other);
                    }
                    _ => {}
                }
            }
            Flow::Other => {
                if seg.flags.fin || seg.flags.rst {
                    self.flows.remove(&k);
                }
            }
        }
    }

    fn classify_new(&mut self, capture: usize, seg: &TcpSegment<'_>, at: Stamp) -> Option<Flow> {
        // A data connection someone announced?
        if let Some((from, to, p)) = self.match_pending(seg) {
            let port = to.port();
            let Some(list) = self.pending.get_mut(&port) else {
                return Some(Flow::Other);
            };
            let Some(pending) = list.remove(p) else {
                return Some(Flow::Other);
            };
            if list.is_empty() {
                self.pending.remove(&port);
            }
            self.pending_order.remove(&pending.serial);
            if self.data.len() >= MAX_DATA {
                return Some(Flow::Other);
            }
            self.data.push(DataConn {
                capture,
                from,
                to,
                first: at,
                syns: 0,
                answered: None,
                reset: None,
                fin: None,
                bytes_up: 0,
                bytes_down: 0,
                last: at,
                owner: Some((pending.session, pending.expect.negotiation)),
            });
            self.data_seq.push([None, None]);
            let d = self.data.len() - 1;
            let n = &mut self.sessions[pending.session].session.negotiations
                [pending.expect.negotiation];
            n.data.get_or_insert(d);
            return Some(Flow::Data(d));
        }
        if self.flows.len() >= MAX_FLOWS {
            // Make room from connections that can no longer matter.
            self.flows
                .retain(|_, f| matches!(f, Flow::Control(_) | Flow::Data(_)));
            if self.flows.len() >= MAX_FLOWS {
                return None;
            }
        }
        let port21 = |a: SocketAddr| a.port() == 21;
        if (port21(seg.src) || port21(seg.dst)) && self.sessions.len() < MAX_SESSIONS {
            let (client, server) = if port21(seg.dst) {
                (seg.src, seg.dst)
            } else {
                (seg.dst, seg.src)
            };
            let state = ControlState::new(capture, client, server, at);
            return Some(Flow::Control(self.add_session(state)));
        }
        Some(Flow::Probe(Probe::default()))
    }

    /// The expected connection this segment opens (or belongs to): the
    /// connecting end, the end connected to, and the entry's index under
    /// the port connected to.
    fn match_pending(&self, seg: &TcpSegment<'_>) -> Option<(SocketAddr, SocketAddr, usize)> {
        let opening = seg.flags.syn && !seg.flags.ack;
        // The connecting end and the end connected to, both ways round
        // for a connection seen after its SYN.
        let ways: &[(SocketAddr, SocketAddr)] = if opening {
            &[(seg.src, seg.dst)]
        } else {
            &[(seg.src, seg.dst), (seg.dst, seg.src)]
        };
        for &(from, to) in ways {
            let Some(list) = self.pending.get(&to.port()) else {
                continue;
            };
            let found = list.iter().position(|p| match p.expect.mode {
                Mode::Passive => {
                    (Some(to.ip()) == p.expect.address.map(|a| a.ip()) || to.ip() == p.server_ip)
                        && from.ip() != p.server_ip
                }
                Mode::Active => {
                    Some(to) == p.expect.address
                        || (from.ip() == p.server_ip && to.ip() != p.server_ip)
                }
            });
            if let Some(i) = found {
                return Some((from, to, i));
            }
        }
        None
    }

    fn control_segment(&mut self, i: usize, seg: &TcpSegment<'_>, at: Stamp) {
        let state = &mut self.sessions[i];
        let from = if seg.src == state.session.client {
            Side::Client
        } else {
            Side::Server
        };
        if seg.flags.syn {
            state.syn(from, seg.seq);
        }
        self.shared.expects.clear();
        if seg.wire_len > 0 {
            let seq = if seg.flags.syn {
                seg.seq.wrapping_add(1)
            } else {
                seg.seq
            };
            state.payload(from, seq, seg.payload, seg.wire_len, at, &mut self.shared);
        } else {
            state.seen(at);
        }
        if seg.flags.rst || seg.flags.fin {
            state.closed(from, seg.flags.rst, at);
        }
        let server_ip = state.session.server.ip();
        let expects = std::mem::take(&mut self.shared.expects);
        for &e in &expects {
            self.expect(i, e, server_ip);
        }
        self.shared.expects = expects;
    }

    /// Adds an expected data connection; when the table is full the
    /// oldest expectation of all makes room, in O(log n).
    fn expect(&mut self, session: usize, expect: Expect, server_ip: std::net::IpAddr) {
        if self.pending_order.len() >= MAX_EXPECTS {
            if let Some((serial, port)) = self.pending_order.pop_first() {
                if let Some(list) = self.pending.get_mut(&port) {
                    // A port's list is in serial order: the oldest of all
                    // is the oldest of its port.
                    if list.front().is_some_and(|p| p.serial == serial) {
                        list.pop_front();
                    } else {
                        list.retain(|p| p.serial != serial);
                    }
                    if list.is_empty() {
                        self.pending.remove(&port);
                    }
                }
            }
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        self.pending_order.insert(serial, expect.port);
        self.pending
            .entry(expect.port)
            .or_default()
            .push_back(Pending {
                session,
                expect,
                server_ip,
                serial,
            });
    }

    /// Expected data connections not yet seen.
    #[cfg(test)]
    fn pending_len(&self) -> usize {
        self.pending.values().map(VecDeque::len).sum()
    }

    fn data_segment(&mut self, i: usize, seg: &TcpSegment<'_>, at: Stamp) {
        let d = &mut self.data[i];
        let from = if seg.src == d.from {
            Side::Client
        } else {
            Side::Server
        };
        d.last = at;
        if seg.flags.syn {
            match (from, seg.flags.ack) {
                (Side::Client, false) => d.syns += 1,
                (Side::Server, true) => {
                    d.answered.get_or_insert(at);
                }
                _ => {}
            }
        }
        if seg.flags.rst {
            d.reset.get_or_insert(Close { by: from, at });
        }
        if seg.flags.fin {
            d.fin.get_or_insert(Close { by: from, at });
        }
        if seg.wire_len > 0 {
            let seq = if seg.flags.syn {
                seg.seq.wrapping_add(1)
            } else {
                seg.seq
            };
            let end = seq.wrapping_add(seg.wire_len);
            let slot = &mut self.data_seq[i][from as usize];
            let (_, high) = slot.get_or_insert((seq, seq));
            let advance = end.wrapping_sub(*high) as i32;
            if advance > 0 {
                *high = end;
                match from {
                    Side::Client => d.bytes_up += advance as u64,
                    Side::Server => d.bytes_down += advance as u64,
                }
            }
        }
    }

    /// End of all captures: every stream is flushed.
    pub fn finish(&mut self) {
        self.flows.clear();
        self.pending.clear();
        self.pending_order.clear();
    }
}

#[cfg(test)]
mod tests;

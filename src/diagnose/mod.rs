//! `ftpalg diagnose`: reads captures (or a live interface) and explains why
//! FTP through NAT failed and what to change.
//!
//! Control connections are found by port or by content and read with the
//! engine's own framer and parsers (`crate::ftp`); every data negotiation
//! is followed to its data connection; each session gets findings of stable
//! kinds (see [`Kind`]). Two captures from the two sides of a NAT are
//! paired, showing what the NAT or a helper changed. Synchronous: no tokio.

mod control;
mod findings;
mod flows;
mod model;
mod pair;
mod report;
pub mod svg;

use std::io::Read;
use std::time::Duration;

use thiserror::Error;

use crate::packet::{decode, CaptureError, CaptureReader, Packet};

pub use findings::{Finding, Kind};
pub use model::{Close, ControlLine, DataConn, Mode, Negotiation, Reply, Side, Stamp};
pub use report::{CaptureSummary, NatPair, Report, SessionReport};

/// Why a capture could not be read at all.
#[derive(Debug, Error)]
pub enum DiagnoseError {
    /// The file is not a capture, or its header is broken.
    #[error("{file}: {source}")]
    Capture {
        /// The file.
        file: String,
        /// What was wrong.
        source: CaptureError,
    },
}

/// `ok`: nothing went wrong, or only a refused EPSV/EPRT the client got
/// round; `recovered`: something failed but the last transfer worked;
/// `failed`; `unreadable`: encrypted, with no failure seen before.
fn verdict(findings: &[Finding], encrypted: bool) -> &'static str {
    let failing = |f: &&Finding| {
        f.kind.is_problem() && !matches!(f.kind, Kind::ExtendedModeRefused | Kind::ControlEncrypted)
    };
    let last_failure = findings.iter().rposition(|f| failing(&f));
    let last_ok = findings.iter().rposition(|f| f.kind == Kind::TransferOk);
    match (last_failure, last_ok) {
        (None, _) if encrypted => "unreadable",
        (None, _) => "ok",
        (Some(fail), Some(ok)) if ok > fail => "recovered",
        _ => "failed",
    }
}

/// Reads captures one after the other and builds the report.
#[derive(Debug, Default)]
pub struct Diagnoser {
    tracker: flows::Tracker,
    captures: Vec<CaptureSummary>,
    /// Absolute time of each capture's first packet.
    origins: Vec<Option<Duration>>,
    /// The last segments seen, to drop the copies `tcpdump -i any` makes
    /// of a frame that crosses two interfaces (a bridge and its port).
    recent: [(u64, Duration); RECENT],
    recent_at: usize,
}

/// Segments remembered for duplicate detection.
const RECENT: usize = 16;
/// A copy of a frame on another interface arrives within this time; a
/// retransmission takes far longer (200 ms at least).
const DUPLICATE_WINDOW: Duration = Duration::from_millis(2);

/// Everything that makes two captured segments the same segment.
fn signature(seg: &crate::packet::TcpSegment<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (seg.src, seg.dst, seg.seq, seg.ack, seg.wire_len).hash(&mut h);
    (seg.flags.syn, seg.flags.ack, seg.flags.fin, seg.flags.rst).hash(&mut h);
    h.finish()
}

impl Diagnoser {
    /// An empty diagnoser.
    pub fn new() -> Diagnoser {
        Diagnoser::default()
    }

    /// Reads a whole capture. A capture that breaks off part-way is
    /// reported with a warning, not refused.
    pub fn add_capture<R: Read>(&mut self, file: &str, input: R) -> Result<(), DiagnoseError> {
        let mut reader = CaptureReader::new(input).map_err(|source| DiagnoseError::Capture {
            file: file.to_string(),
            source,
        })?;
        let index = self.begin_capture(file);
        let mut error = None;
        while let Some(next) = reader.next_packet() {
            match next {
                Ok(p) => self.packet(index, &p),
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        self.captures[index].error = error;
        self.end_capture();
        Ok(())
    }

    /// Starts a capture fed packet by packet (live capture); returns its
    /// index for [`Diagnoser::packet`].
    pub fn begin_capture(&mut self, file: &str) -> usize {
        self.captures.push(CaptureSummary {
            file: file.to_string(),
            packets: 0,
            tcp_segments: 0,
            error: None,
            untracked: 0,
            duplicates: 0,
        });
        self.recent = [(0, Duration::ZERO); RECENT];
        self.origins.push(None);
        self.captures.len() - 1
    }

    /// Ends the current capture.
    pub fn end_capture(&mut self) {
        if let Some(c) = self.captures.last_mut() {
            c.untracked = self.tracker.untracked;
        }
        self.tracker.untracked = 0;
        self.tracker.end_capture();
    }

    /// Follows one packet of capture `index`.
    pub fn packet(&mut self, index: usize, p: &Packet<'_>) {
        let Some(summary) = self.captures.get_mut(index) else {
            return;
        };
        summary.packets += 1;
        let origin = *self.origins[index].get_or_insert(p.ts);
        let time = p.ts.saturating_sub(origin).as_secs_f64();
        let Some(seg) = decode(p.link, p.data, p.orig_len) else {
            return;
        };
        summary.tcp_segments += 1;
        let sig = signature(&seg);
        if self
            .recent
            .iter()
            .any(|&(s, t)| s == sig && p.ts.saturating_sub(t) <= DUPLICATE_WINDOW && t <= p.ts)
        {
            summary.duplicates += 1;
            return;
        }
        self.recent[self.recent_at] = (sig, p.ts);
        self.recent_at = (self.recent_at + 1) % RECENT;
        self.tracker.segment(
            index,
            &seg,
            Stamp {
                packet: p.number,
                time,
            },
        );
    }

    /// The report: findings per session, sessions paired across captures.
    pub fn report(mut self) -> Report {
        self.tracker.finish();
        let names: Vec<String> = self.captures.iter().map(|c| c.file.clone()).collect();
        let data = &self.tracker.data;
        let sessions: Vec<SessionReport> = self
            .tracker
            .sessions
            .iter()
            // Stray packets of a connection seen neither opening nor
            // carrying a line are no session to report.
            .filter(|state| state.session.saw_open || !state.session.transcript.is_empty())
            .map(|state| {
                let s = &state.session;
                let findings = findings::session_findings(s, data);
                let verdict = verdict(&findings, s.tls.is_some());
                let own: Vec<DataConn> = s
                    .negotiations
                    .iter()
                    .filter_map(|n| n.data.and_then(|d| data.get(d)).cloned())
                    .collect();
                let origin = self
                    .origins
                    .get(s.capture)
                    .copied()
                    .flatten()
                    .unwrap_or_default();
                SessionReport {
                    capture: names.get(s.capture).cloned().unwrap_or_default(),
                    client: s.client.to_string(),
                    server: s.server.to_string(),
                    verdict: verdict.to_string(),
                    first: s.first,
                    last: s.last,
                    findings,
                    negotiations: s.negotiations.clone(),
                    data: own,
                    transcript: s.transcript.clone(),
                    transcript_dropped: s.transcript_dropped,
                    negotiations_dropped: s.negotiations_dropped,
                    nat: None,
                    abs_start: origin.as_secs_f64() + s.first.time,
                }
            })
            .collect();
        let sessions = pair::pair_sessions(sessions);
        let notes = self.notes();
        Report {
            captures: self.captures,
            sessions,
            notes,
        }
    }

    /// What the report's own limits left out, never silently.
    fn notes(&self) -> Vec<String> {
        let t = &self.tracker;
        let mut notes = Vec::new();
        let full = t
            .sessions
            .iter()
            .map(|s| &s.session)
            .filter(|s| {
                s.negotiations_dropped > 0 && s.negotiations.len() >= control::MAX_NEGOTIATIONS
            })
            .count();
        if full > 0 {
            notes.push(format!(
                "data negotiations: {full} session(s) had more than the {} a session keeps; the rest were not kept",
                control::MAX_NEGOTIATIONS
            ));
        }
        if t.shared.negotiations.refused() > 0 {
            notes.push(format!(
                "data negotiations: the report keeps at most {} in all; {} more were not kept (each session counts its own)",
                flows::MAX_REPORT_NEGOTIATIONS,
                t.shared.negotiations.refused()
            ));
        }
        if t.transcript_short > 0 {
            notes.push(format!(
                "transcripts: the report keeps at most {} lines in all; {} session(s) show fewer lines than their share",
                flows::MAX_TRANSCRIPT_LINES,
                t.transcript_short
            ));
        }
        notes
    }
}

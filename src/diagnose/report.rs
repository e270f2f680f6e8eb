//! The report: sessions with their verdicts and findings, as text or JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::findings::Finding;
use super::model::{ControlLine, DataConn, Negotiation, Side, Stamp};

/// One capture file read.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureSummary {
    /// The file name as given.
    pub file: String,
    /// Frames read.
    pub packets: u64,
    /// TCP segments among them.
    pub tcp_segments: u64,
    /// Why reading stopped early, if it did.
    pub error: Option<String>,
    /// Connections not followed because the flow table was full.
    pub untracked: u64,
    /// Segments seen twice within 2 ms (one frame on two interfaces), not
    /// counted again.
    pub duplicates: u64,
}

/// The same session seen in another capture (the other side of a NAT),
/// and what changed between the two.
#[derive(Debug, Clone, Serialize)]
pub struct NatPair {
    /// The other capture's file.
    pub capture: String,
    /// The client's address as the other capture saw it.
    pub client: String,
    /// The changes, one sentence each.
    pub changes: Vec<String>,
    /// The session as the other capture saw it: its own verdict, findings
    /// (packet numbers in that capture), transcript and data connections;
    /// its `nat` is always empty.
    pub leg: Box<SessionReport>,
}

/// One control session in the report.
#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    /// The capture it was seen in.
    pub capture: String,
    /// The client's end, `ADDR:PORT`.
    pub client: String,
    /// The server's end, `ADDR:PORT`.
    pub server: String,
    /// `ok`, `recovered`, `failed` or `unreadable`; seen in two captures,
    /// the worse of the two.
    pub verdict: String,
    /// First packet.
    pub first: Stamp,
    /// Last packet.
    pub last: Stamp,
    /// What went wrong, and what went right.
    pub findings: Vec<Finding>,
    /// The data negotiations.
    pub negotiations: Vec<Negotiation>,
    /// The data connections that belong to them.
    pub data: Vec<DataConn>,
    /// The control lines.
    pub transcript: Vec<ControlLine>,
    /// Control lines left out of the transcript.
    pub transcript_dropped: u64,
    /// Data negotiations left out (over the session's cap of 1,000 or the
    /// report's of 100,000); in JSON only when some were.
    #[serde(skip_serializing_if = "is_zero")]
    pub negotiations_dropped: u64,
    /// The same session in another capture, across a NAT: each session
    /// is reported once, from the client's side.
    pub nat: Option<NatPair>,
    /// Absolute start time, for pairing.
    #[serde(skip)]
    pub(crate) abs_start: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The captures read.
    pub captures: Vec<CaptureSummary>,
    /// Every FTP control session found.
    pub sessions: Vec<SessionReport>,
    /// Limits of the report itself that were reached, one sentence each:
    /// what they left out; in JSON only when there are some.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Report {
    /// Whether any session failed or could not be read.
    pub fn has_problems(&self) -> bool {
        self.sessions
            .iter()
            .any(|s| matches!(s.verdict.as_str(), "failed" | "unreadable"))
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report as text for a person.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.captures {
            let _ = writeln!(
                out,
                "capture {}: {} packets, {} TCP segments",
                c.file, c.packets, c.tcp_segments
            );
            if let Some(e) = &c.error {
                let _ = writeln!(out, "  warning: {e}; the report covers what was read");
            }
            if c.untracked > 0 {
                let _ = writeln!(
                    out,
                    "  warning: {} connections not followed (flow table full)",
                    c.untracked
                );
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "warning: {n}");
        }
        if self.sessions.is_empty() {
            out.push_str("\nno FTP control connection found\n");
        }
        for (i, s) in self.sessions.iter().enumerate() {
            let _ = writeln!(
                out,
                "\nsession {}: {} -> {}  ({}, packets {}-{}, {:.3}-{:.3} s)",
                i + 1,
                s.client,
                s.server,
                s.capture,
                s.first.packet,
                s.last.packet,
                s.first.time,
                s.last.time
            );
            let legs = std::iter::once(s).chain(s.nat.as_ref().map(|n| &*n.leg));
            let mut problems: Vec<&str> = Vec::new();
            for f in legs.flat_map(|l| &l.findings) {
                if f.kind.is_problem() && !problems.contains(&f.kind.name()) {
                    problems.push(f.kind.name());
                }
            }
            if problems.is_empty() {
                let _ = writeln!(out, "verdict: {}", s.verdict);
            } else {
                let _ = writeln!(out, "verdict: {} ({})", s.verdict, problems.join(", "));
            }
            if let Some(nat) = &s.nat {
                if nat.client == s.client {
                    let _ = writeln!(
                        out,
                        "  also seen in {}, with the same addresses",
                        nat.capture
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "  across the NAT: seen in {} as client {}",
                        nat.capture, nat.client
                    );
                }
                for c in &nat.changes {
                    let _ = writeln!(out, "    {c}");
                }
            }
            let mut fixes_shown = Vec::new();
            leg_text(&mut out, s, "  ", &mut fixes_shown);
            if let Some(nat) = &s.nat {
                let l = &nat.leg;
                let _ = writeln!(
                    out,
                    "  in {} (packets {}-{}, {:.3}-{:.3} s), as client {}, verdict there: {}",
                    l.capture,
                    l.first.packet,
                    l.last.packet,
                    l.first.time,
                    l.last.time,
                    l.client,
                    l.verdict
                );
                leg_text(&mut out, l, "    ", &mut fixes_shown);
            }
        }
        out
    }
}

/// One capture's view of a session: its control lines, data connections
/// and findings, indented by `pad`. A fix already shown in this session
/// is not repeated.
fn leg_text<'a>(out: &mut String, s: &'a SessionReport, pad: &str, fixes_shown: &mut Vec<&'a str>) {
    let _ = writeln!(out, "{pad}control:");
    for l in &s.transcript {
        let arrow = match l.from {
            Side::Client => "C>",
            Side::Server => "S<",
        };
        let _ = writeln!(
            out,
            "{pad}  #{:<5} {:>9.3}  {} {}",
            l.at.packet, l.at.time, arrow, l.text
        );
    }
    if s.transcript_dropped > 0 {
        let _ = writeln!(out, "{pad}  ... {} more lines", s.transcript_dropped);
    }
    if s.negotiations_dropped > 0 {
        let _ = writeln!(
            out,
            "{pad}  ... {} more data negotiations not kept (over the report's limits)",
            s.negotiations_dropped
        );
    }
    if !s.data.is_empty() {
        let _ = writeln!(out, "{pad}data connections:");
        for d in &s.data {
            let state = if let Some(r) = d.reset.filter(|_| d.answered.is_none()) {
                format!("reset by the {} at #{}", side_name(r.by), r.at.packet)
            } else if !d.established() {
                format!("{} SYN, no answer", d.syns)
            } else {
                let end = match (d.reset, d.fin) {
                    (Some(r), _) => {
                        format!(", reset by the {} at #{}", side_name(r.by), r.at.packet)
                    }
                    (None, Some(f)) => {
                        format!(", closed by the {} at #{}", side_name(f.by), f.at.packet)
                    }
                    (None, None) => ", still open at the end of the capture".to_string(),
                };
                format!(
                    "open, {} bytes up, {} bytes down{}",
                    d.bytes_up, d.bytes_down, end
                )
            };
            let _ = writeln!(
                out,
                "{pad}  #{:<5} {:>9.3}  {} -> {}: {}",
                d.first.packet, d.first.time, d.from, d.to, state
            );
        }
    }
    let _ = writeln!(out, "{pad}findings:");
    if s.findings.is_empty() {
        let _ = writeln!(out, "{pad}  none (no transfer was attempted)");
    }
    for f in &s.findings {
        let packets: Vec<String> = f.packets.iter().map(|p| format!("#{p}")).collect();
        let _ = writeln!(
            out,
            "{pad}  [{}] packets {}",
            f.kind.name(),
            packets.join(" ")
        );
        let _ = writeln!(out, "{pad}    {}", f.explanation);
        if f.kind.is_problem() {
            if fixes_shown.contains(&f.fix.as_str()) {
                let _ = writeln!(out, "{pad}    fix: as above");
            } else {
                fixes_shown.push(&f.fix);
                let _ = writeln!(out, "{pad}    fix: {}", f.fix);
            }
        }
    }
}

fn side_name(s: Side) -> &'static str {
    match s {
        Side::Client => "connecting end",
        Side::Server => "accepting end",
    }
}

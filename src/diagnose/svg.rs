//! A timeline per session as SVG: a ladder between client and server with
//! every control line and data connection in packet order, failed data
//! connections in red, and the findings under it, so a person sees at a
//! glance where it broke.

use std::fmt::Write as _;

use super::model::Side;
use super::report::{Report, SessionReport};

const WIDTH: i64 = 900;
const ROW: i64 = 18;
const LEFT: i64 = 230;
const RIGHT: i64 = 670;

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

enum Row<'a> {
    Line {
        packet: u64,
        time: f64,
        from: Side,
        text: &'a str,
    },
    Data {
        packet: u64,
        time: f64,
        text: String,
        ok: bool,
        active: bool,
    },
}

fn rows(s: &SessionReport) -> Vec<Row<'_>> {
    let mut rows: Vec<Row<'_>> = s
        .transcript
        .iter()
        .map(|l| Row::Line {
            packet: l.at.packet,
            time: l.at.time,
            from: l.from,
            text: &l.text,
        })
        .collect();
    for (d, n) in s
        .data
        .iter()
        .zip(s.negotiations.iter().filter(|n| n.data.is_some()))
    {
        let ok = d.established() && d.reset.is_none();
        let state = if !d.established() {
            if d.reset.is_some() {
                "reset".to_string()
            } else {
                format!("{} SYN, no answer", d.syns)
            }
        } else if d.reset.is_some() {
            format!("{} bytes, then reset", d.bytes())
        } else {
            format!("{} bytes", d.bytes())
        };
        rows.push(Row::Data {
            packet: d.first.packet,
            time: d.first.time,
            text: format!("data {} -> {}: {}", d.from, d.to, state),
            ok,
            active: n.mode == super::model::Mode::Active,
        });
    }
    rows.sort_by_key(|r| match r {
        Row::Line { packet, .. } | Row::Data { packet, .. } => *packet,
    });
    rows
}

/// Draws one capture's ladder of session `s` from `y`: the lines, the
/// data connections and the findings; returns where the next one starts.
fn ladder(body: &mut String, mut y: i64, s: &SessionReport) -> i64 {
    let _ = writeln!(
        body,
        r#"<text x="{LEFT}" y="{y}" text-anchor="middle">client</text><text x="{RIGHT}" y="{y}" text-anchor="middle">server</text>"#
    );
    let rows = rows(s);
    let top = y + 4;
    let bottom = top + ROW * rows.len() as i64 + 6;
    let _ = writeln!(
        body,
        r##"<line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}" stroke="#888"/><line x1="{RIGHT}" y1="{top}" x2="{RIGHT}" y2="{bottom}" stroke="#888"/>"##
    );
    y = top;
    for r in &rows {
        y += ROW;
        match r {
            Row::Line {
                packet,
                time,
                from,
                text,
            } => {
                let (x1, x2, anchor, tx) = match from {
                    Side::Client => (LEFT, RIGHT, "start", LEFT + 6),
                    Side::Server => (RIGHT, LEFT, "end", RIGHT - 6),
                };
                let _ = writeln!(
                    body,
                    r##"<text x="10" y="{y}" fill="#666">#{packet} {time:.3}s</text><line x1="{x1}" y1="{}" x2="{x2}" y2="{}" stroke="#1565c0" marker-end="url(#arrow)"/><text x="{tx}" y="{}" text-anchor="{anchor}">{}</text>"##,
                    y - 4,
                    y - 4,
                    y - 7,
                    esc(&text.chars().take(52).collect::<String>())
                );
            }
            Row::Data {
                packet,
                time,
                text,
                ok,
                active,
            } => {
                let colour = if *ok { "#2e7d32" } else { "#c62828" };
                let (x1, x2) = if *active {
                    (RIGHT, LEFT)
                } else {
                    (LEFT, RIGHT)
                };
                let dash = if *ok {
                    ""
                } else {
                    r#" stroke-dasharray="6,4""#
                };
                let _ = writeln!(
                    body,
                    r##"<text x="10" y="{y}" fill="#666">#{packet} {time:.3}s</text><line x1="{x1}" y1="{}" x2="{x2}" y2="{}" stroke="{colour}" stroke-width="3"{dash}/><text x="{}" y="{}" text-anchor="middle" fill="{colour}">{}</text>"##,
                    y - 4,
                    y - 4,
                    (LEFT + RIGHT) / 2,
                    y - 7,
                    esc(text)
                );
            }
        }
    }
    y = bottom + ROW;
    for f in &s.findings {
        let colour = if f.kind.is_problem() {
            "#c62828"
        } else {
            "#2e7d32"
        };
        let packets: Vec<String> = f.packets.iter().map(|p| format!("#{p}")).collect();
        let _ = writeln!(
            body,
            r#"<text x="10" y="{y}" fill="{colour}" font-weight="bold">{} ({})</text>"#,
            f.kind.name(),
            packets.join(" ")
        );
        y += ROW;
    }
    y += ROW * 2;
    y
}

/// Renders the report's sessions as one SVG document: a ladder for each,
/// and for a session seen in two captures, a second ladder for the other
/// one under the first.
pub fn render(report: &Report) -> String {
    let mut body = String::new();
    let mut y: i64 = 20;
    for (i, s) in report.sessions.iter().enumerate() {
        let colour = match s.verdict.as_str() {
            "ok" => "#2e7d32",
            "recovered" => "#ef6c00",
            _ => "#c62828",
        };
        let _ = writeln!(
            body,
            r#"<text x="10" y="{y}" font-weight="bold">session {}: {} -&gt; {} ({})</text><text x="{}" y="{y}" text-anchor="end" fill="{colour}" font-weight="bold">{}</text>"#,
            i + 1,
            esc(&s.client),
            esc(&s.server),
            esc(&s.capture),
            WIDTH - 10,
            esc(&s.verdict)
        );
        y += ROW + 4;
        y = ladder(&mut body, y, s);
        if let Some(nat) = &s.nat {
            let l = &nat.leg;
            let _ = writeln!(
                body,
                r#"<text x="10" y="{y}" font-weight="bold">the same session in {}: {} -&gt; {}, {}</text>"#,
                esc(&l.capture),
                esc(&l.client),
                esc(&l.server),
                esc(&l.verdict)
            );
            y += ROW + 4;
            y = ladder(&mut body, y, l);
        }
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" font-family="monospace" font-size="12">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#1565c0"/></marker></defs>
<rect width="100%" height="100%" fill="white"/>
{body}</svg>
"##
    )
}

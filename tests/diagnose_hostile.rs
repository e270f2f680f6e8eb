//! `ftpalg diagnose` on control sessions written to hurt it: passwords in
//! lines the engine would refuse must not reach the report, and a capture
//! crafted to grow memory is held to the report's budget, which the report
//! says was reached.

mod diagnose_util;

use std::time::Duration;

use diagnose_util::{diagnose, pcap, tcp, Frame};
use pcap_file::DataLink;

const SRV: ([u8; 4], u16) = ([198, 51, 100, 10], 21);

/// Negotiations a report keeps, all sessions together (docs/diagnose.md).
const BUDGET: usize = 100_000;
/// Negotiations one session keeps.
const PER_SESSION: usize = 1_000;

/// One control connection to `SRV`, its segments appended to a capture.
struct Control {
    cli: ([u8; 4], u16),
    cseq: u32,
    sseq: u32,
}

impl Control {
    fn open(frames: &mut Vec<Frame>, cli: ([u8; 4], u16)) -> Control {
        let mut c = Control {
            cli,
            cseq: 100,
            sseq: 500,
        };
        push(frames, tcp(cli, SRV, 99, true, b""));
        c.server(frames, b"220 FTP server ready\r\n");
        c
    }
    fn client(&mut self, frames: &mut Vec<Frame>, bytes: &[u8]) {
        for chunk in bytes.chunks(1400) {
            push(frames, tcp(self.cli, SRV, self.cseq, false, chunk));
            self.cseq += chunk.len() as u32;
        }
    }
    fn server(&mut self, frames: &mut Vec<Frame>, bytes: &[u8]) {
        push(frames, tcp(SRV, self.cli, self.sseq, false, bytes));
        self.sseq += bytes.len() as u32;
    }
}

fn push(frames: &mut Vec<Frame>, data: Vec<u8>) {
    let n = frames.len() as u64;
    frames.push(Frame {
        ts: Duration::from_millis(n),
        orig_len: data.len() as u32,
        data,
    });
}

#[test]
fn passwords_are_masked_in_the_report_however_the_line_is_broken() {
    let mut f = Vec::new();
    let mut c = Control::open(&mut f, ([100, 64, 0, 2], 40100));
    c.client(&mut f, b"USER u\r\n");
    c.server(&mut f, b"331 Password please\r\n");
    let long = format!("PASS hunter{}\r\n", "2".repeat(3000));
    let lines: [&[u8]; 9] = [
        b"PASS hunter\xffX2\r\n",
        b"pass hunter\x002\r\n",
        b"PASS hunter\r2\r\n",
        b"ACCT hunter2\r\n",
        b"acct hunter2\r\n",
        b" PASS hunter2\r\n",
        b"\xff\xf1PASS hunter2\r\n",
        b"PASS hunt\xfcr2\r\n",
        long.as_bytes(),
    ];
    for line in lines {
        c.client(&mut f, line);
        c.server(&mut f, b"530 Login incorrect.\r\n");
    }
    let r = diagnose(&[("secrets", &pcap(&f, DataLink::ETHERNET))]);
    let transcript: Vec<&str> = r.sessions[0]
        .transcript
        .iter()
        .map(|l| l.text.as_str())
        .collect();
    let masked = transcript.iter().filter(|t| t.contains("****")).count();
    assert_eq!(masked, lines.len(), "{transcript:#?}");
    for text in [r.to_text(), r.to_json()] {
        assert!(
            !text.contains("hunt"),
            "the password in the report:\n{text}"
        );
    }
}

#[test]
fn negotiations_are_held_to_one_budget_for_the_whole_report() {
    // More sessions than the budget covers, each past its own cap: PASV
    // lines only, many to a segment.
    let sessions = BUDGET / PER_SESSION + 10;
    let lines = "PASV\r\n".repeat(PER_SESSION + 1);
    let mut f = Vec::new();
    for i in 0..sessions {
        let cli = (
            [100, 64, 0, 2 + (i / 20_000) as u8],
            20_000 + (i % 20_000) as u16,
        );
        let mut c = Control::open(&mut f, cli);
        c.client(&mut f, lines.as_bytes());
    }
    let r = diagnose(&[("many", &pcap(&f, DataLink::ETHERNET))]);
    assert_eq!(r.sessions.len(), sessions);
    let kept: usize = r.sessions.iter().map(|s| s.negotiations.len()).sum();
    assert!(kept <= BUDGET, "{kept} negotiations kept");
    assert!(r
        .sessions
        .iter()
        .all(|s| s.negotiations.len() <= PER_SESSION));
    // Never silent: every session says how many it left out, and the
    // report says the budget ran out.
    let dropped: u64 = r.sessions.iter().map(|s| s.negotiations_dropped).sum();
    assert_eq!(kept as u64 + dropped, (sessions * (PER_SESSION + 1)) as u64);
    assert!(
        r.notes.iter().any(|n| n.contains("negotiations")),
        "{:?}",
        r.notes
    );
    let text = r.to_text();
    assert!(
        text.contains("more data negotiations not kept"),
        "{}",
        &text[..2000]
    );
    assert!(text.contains("warning:"), "{}", &text[..2000]);
}

//! The flow table's bounds: flows, transcripts, expectations.

use super::*;
use crate::packet::TcpFlags;

/// Feeds a SYN from `src` to `dst` as packet `packet`, with sequence `seq`.
fn syn_from(t: &mut Tracker, src: SocketAddr, dst: SocketAddr, seq: u32, packet: u64) {
    let seg = TcpSegment {
        src,
        dst,
        seq,
        ack: 0,
        flags: TcpFlags {
            syn: true,
            ..TcpFlags::default()
        },
        payload: &[],
        wire_len: 0,
    };
    t.segment(0, &seg, Stamp { packet, time: 0.0 });
}

/// Feeds the `i`-th SYN of a distinct client towards `port`, as packet `i`.
fn syn(t: &mut Tracker, i: u32, port: u16) {
    syn_from(
        t,
        SocketAddr::from(([100, 64, (i / 60_000) as u8, 2], 1024 + (i % 60_000) as u16)),
        SocketAddr::from(([198, 51, 100, 10], port)),
        i,
        u64::from(i),
    );
}

#[test]
fn flow_table_is_bounded() {
    let mut t = Tracker::default();
    for i in 0..(MAX_FLOWS as u32 * 2) {
        syn(&mut t, i, 8080);
        assert!(t.flows.len() <= MAX_FLOWS);
    }
    assert!(t.sessions.is_empty() && t.data.is_empty());
}

#[test]
fn transcripts_share_one_budget() {
    let mut t = Tracker::default();
    let n = MAX_TRANSCRIPT_LINES / 400 + 5;
    for i in 0..n as u32 {
        syn(&mut t, i, 21);
    }
    assert_eq!(t.sessions.len(), n);
    let caps: usize = t.sessions.iter().map(|s| s.transcript_cap()).sum();
    assert_eq!(caps, MAX_TRANSCRIPT_LINES);
    assert_eq!(t.sessions[n - 1].transcript_cap(), 0);
    // The report's note counts them.
    assert_eq!(t.transcript_short, 5);
}

/// Feeds a payload of an established connection.
fn data(t: &mut Tracker, src: SocketAddr, dst: SocketAddr, seq: u32, payload: &[u8]) {
    let seg = TcpSegment {
        src,
        dst,
        seq,
        ack: 1,
        flags: TcpFlags {
            ack: true,
            ..TcpFlags::default()
        },
        payload,
        wire_len: payload.len() as u32,
    };
    t.segment(
        0,
        &seg,
        Stamp {
            packet: 0,
            time: 0.0,
        },
    );
}

/// `sessions` control connections (client ports from `first` on), each
/// with `per_session` PASV answered
/// by a 227 naming the same port, in rounds of 50 (replies are matched to
/// at most 64 commands waiting).
fn passive_sessions(t: &mut Tracker, first: u16, sessions: u16, per_session: usize) {
    let server = SocketAddr::from(([198, 51, 100, 10], 21));
    let commands = "PASV\r\n".repeat(50);
    let replies = "227 Entering Passive Mode (198,51,100,10,117,48)\r\n".repeat(50);
    for s in 0..sessions {
        let client = SocketAddr::from(([100, 64, 0, 2], first + s));
        let (mut cseq, mut sseq) = (1u32, 1u32);
        for _ in 0..per_session / 50 {
            data(t, client, server, cseq, commands.as_bytes());
            cseq += commands.len() as u32;
            data(t, server, client, sseq, replies.as_bytes());
            sseq += replies.len() as u32;
        }
    }
}

#[test]
fn expectations_leave_oldest_first_and_when_matched() {
    let mut t = Tracker::default();
    passive_sessions(&mut t, 20_000, 1, 50);
    assert_eq!(t.pending_len(), 50);
    assert_eq!(t.pending_order.len(), 50);
    // The client connects to the port: its oldest expectation is used.
    let client = SocketAddr::from(([100, 64, 0, 2], 41_000));
    let port = SocketAddr::from(([198, 51, 100, 10], 30_000));
    syn_from(&mut t, client, port, 0, 1);
    assert_eq!(t.data.len(), 1);
    assert_eq!(t.data[0].owner, Some((0, 0)));
    assert_eq!(t.pending_len(), 49);
    assert_eq!(t.pending_order.len(), 49);
    assert_eq!(t.pending_order.keys().next(), Some(&1));
    // A full table pushes out the oldest of all (from the front of its
    // port's queue, without shifting the rest).
    passive_sessions(&mut t, 30_000, 100, MAX_EXPECTS / 100 + 50);
    assert_eq!(t.pending_len(), MAX_EXPECTS);
    assert_eq!(t.pending_order.len(), MAX_EXPECTS);
    let oldest = *t.pending_order.keys().next().unwrap();
    assert_eq!(oldest, t.next_serial - MAX_EXPECTS as u64);
    assert_eq!(t.pending[&30_000].front().map(|p| p.serial), Some(oldest));
}

#[test]
fn negotiations_share_one_budget() {
    let mut t = Tracker::default();
    let sessions = (MAX_REPORT_NEGOTIATIONS / 1000 + 3) as u16;
    passive_sessions(&mut t, 20_000, sessions, 1000);
    assert_eq!(t.shared.negotiations.kept(), MAX_REPORT_NEGOTIATIONS);
    assert_eq!(t.shared.negotiations.refused(), 3000);
    let kept: usize = t
        .sessions
        .iter()
        .map(|s| s.session.negotiations.len())
        .sum();
    assert_eq!(kept, MAX_REPORT_NEGOTIATIONS);
    assert_eq!(
        t.sessions.last().unwrap().session.negotiations_dropped,
        1000
    );
}

//! The capture reader and reassembly under real-world and hostile input:
//! other containers and link types, reordering, a capture that starts
//! mid-session, truncated and garbage files, a gigantic line, 10^5 flows.
//! A clear error or a report, never a panic; memory bounded.

mod diagnose_util;

use std::time::{Duration, Instant};

use diagnose_util::{diagnose, frames, kinds, pcap, pcapng, tcp, Frame};
use etherparse::PacketBuilder;
use ftpalg::diagnose::Diagnoser;
use pcap_file::DataLink;

const SEED: &str = "passive-21-only.inside.pcap";

fn transcript(r: &ftpalg::diagnose::Report) -> Vec<Vec<String>> {
    r.sessions
        .iter()
        .map(|s| s.transcript.iter().map(|l| l.text.clone()).collect())
        .collect()
}

#[test]
fn pcap_of_either_byte_order_and_resolution() {
    let mut f = frames(SEED);
    // Nanoseconds that microseconds could not carry.
    for (i, fr) in f.iter_mut().enumerate() {
        fr.ts += Duration::from_nanos(i as u64 * 7 + 1);
    }
    let big_micro = diagnose(&[("a", &pcap(&f, DataLink::ETHERNET))]);
    let little_nano = diagnose(&[("b", &diagnose_util::pcap_nanos(&f))]);
    assert_eq!(kinds(&big_micro), kinds(&little_nano));
    let t = little_nano.sessions[1].first.time;
    let expected = (f[25].ts - f[0].ts).as_secs_f64();
    assert!((t - expected).abs() < 1e-9, "{t} {expected}");
}

#[test]
fn pcapng_with_nanosecond_timestamps_reads_like_pcap() {
    let f = frames(SEED);
    let a = diagnose(&[("a", &pcap(&f, DataLink::ETHERNET))]);
    let b = diagnose(&[("b", &pcapng(&f))]);
    assert_eq!(kinds(&a), kinds(&b));
    assert_eq!(transcript(&a), transcript(&b));
    assert_eq!(a.sessions[1].first.time, b.sessions[1].first.time);
    assert!(b.sessions[1].first.time > 4.0, "{:?}", b.sessions[1].first);
}

/// Replaces each Ethernet header by another link layer's.
fn relink(f: &[Frame], header: impl Fn(&[u8]) -> Vec<u8>) -> Vec<Frame> {
    f.iter()
        .map(|fr| {
            let mut data = header(&fr.data[12..14]);
            data.extend_from_slice(&fr.data[14..]);
            Frame {
                ts: fr.ts,
                orig_len: fr.orig_len - 14 + data.len() as u32 - (fr.data.len() as u32 - 14),
                data,
            }
        })
        .collect()
}

#[test]
fn cooked_and_raw_link_types() {
    let f = frames(SEED);
    let expected = kinds(&diagnose(&[("eth", &pcap(&f, DataLink::ETHERNET))]));
    assert_eq!(expected, vec![vec!["passive-data-blocked"]; 2]);
    let sll = relink(&f, |et| {
        let mut h = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
        h.extend_from_slice(et);
        h
    });
    let sll2 = relink(&f, |et| {
        let mut h = et.to_vec();
        h.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        h
    });
    let raw = relink(&f, |_| Vec::new());
    for (link, frames) in [
        (DataLink::LINUX_SLL, sll),
        (DataLink::LINUX_SLL2, sll2),
        (DataLink::RAW, raw),
    ] {
        let r = diagnose(&[("x", &pcap(&frames, link))]);
        assert_eq!(kinds(&r), expected, "{link:?}");
    }
}

#[test]
fn reordered_and_retransmitted_segments() {
    let f = frames(SEED);
    let clean = diagnose(&[("a", &pcap(&f, DataLink::ETHERNET))]);
    // Swap neighbouring segments of one direction of the control
    // connection (reordering that a capture point can see) and send every third frame
    // twice. (A data connection's SYN cannot precede the reply that
    // announced it at any capture point, so those are not swapped.)
    let control = |fr: &Frame| fr.data[34..38].windows(2).any(|w| w == [0, 21]);
    let mut shuffled = Vec::new();
    let mut swaps = 0;
    let mut i = 0;
    while i < f.len() {
        if i + 1 < f.len()
            && i % 2 == 1
            && control(&f[i])
            && f[i].data[26..38] == f[i + 1].data[26..38]
        {
            shuffled.push(f[i + 1].clone());
            shuffled.push(f[i].clone());
            swaps += 1;
            i += 2;
        } else {
            shuffled.push(f[i].clone());
            if i % 3 == 0 {
                // A retransmission comes a retransmission timeout later.
                let mut again = f[i].clone();
                again.ts += Duration::from_millis(300);
                shuffled.push(again);
            }
            i += 1;
        }
    }
    assert!(swaps >= 3, "{swaps}");
    let r = diagnose(&[("b", &pcap(&shuffled, DataLink::ETHERNET))]);
    assert_eq!(kinds(&r), kinds(&clean));
    assert_eq!(transcript(&r), transcript(&clean));
}

#[test]
fn capture_starting_mid_session() {
    let f = frames(SEED);
    // From the EPSV on: no SYN, no greeting, no login.
    let r = diagnose(&[("late", &pcap(&f[12..], DataLink::ETHERNET))]);
    assert_eq!(kinds(&r)[0], ["passive-data-blocked"]);
    assert_eq!(r.sessions[0].transcript[0].text, "EPSV");
}

#[test]
fn control_port_other_than_21_found_by_content() {
    let mut f = frames(SEED);
    for fr in &mut f {
        let ihl = usize::from(fr.data[14] & 0x0f) * 4;
        for at in [14 + ihl, 14 + ihl + 2] {
            if fr.data[at..at + 2] == [0, 21] {
                fr.data[at..at + 2].copy_from_slice(&2121u16.to_be_bytes());
            }
        }
    }
    let r = diagnose(&[("p", &pcap(&f, DataLink::ETHERNET))]);
    assert_eq!(kinds(&r), vec![vec!["passive-data-blocked"]; 2]);
    assert!(r.sessions[0].server.ends_with(":2121"));
}

/// What a capture cut after `cut` bytes reads as: its packets and the
/// error it broke off with, or the error that refused it.
fn read_cut(bytes: &[u8], cut: usize) -> Result<(u64, Option<String>), String> {
    let mut d = Diagnoser::new();
    d.add_capture("cut", &bytes[..cut])
        .map_err(|e| e.to_string())?;
    let r = d.report();
    Ok((r.captures[0].packets, r.captures[0].error.clone()))
}

/// A pcap cut inside its file header is refused; cut at the end of a
/// record it is a whole, shorter capture (nothing in the format tells the
/// two apart); cut anywhere else it is reported truncated after its last
/// whole packet, never as clean.
#[test]
fn truncated_files_give_a_report_or_an_error() {
    let bytes = std::fs::read(diagnose_util::path(SEED)).unwrap();
    // Where each record ends: the 24-byte file header, then each packet's
    // 16-byte record header and its bytes.
    let ends: Vec<usize> = std::iter::once(24)
        .chain(frames(SEED).iter().scan(24, |at, f| {
            *at += 16 + f.data.len();
            Some(*at)
        }))
        .collect();
    assert_eq!(ends.last(), Some(&bytes.len()));
    for cut in 0..24 {
        let r = read_cut(&bytes, cut);
        assert!(
            matches!(&r, Err(e) if e.contains("truncated")),
            "cut {cut}: {r:?}"
        );
    }
    for (whole, w) in ends.windows(2).enumerate() {
        let (at, next) = (w[0], w[1]);
        let whole = whole as u64;
        assert_eq!(read_cut(&bytes, at), Ok((whole, None)), "cut {at}");
        let truncated = format!("capture truncated after packet {whole}");
        for cut in [at + 1, at + 15, at + 16, at + 17, (at + next) / 2, next - 1] {
            assert_eq!(
                read_cut(&bytes, cut),
                Ok((whole, Some(truncated.clone()))),
                "cut {cut}"
            );
        }
    }
    assert_eq!(
        read_cut(&bytes, bytes.len()),
        Ok((ends.len() as u64 - 1, None))
    );
    // Half a capture still shows the first session's failure.
    let mut d = Diagnoser::new();
    d.add_capture("half", &bytes[..bytes.len() / 2]).unwrap();
    let r = d.report();
    assert!(r.captures[0]
        .error
        .as_deref()
        .unwrap()
        .contains("truncated"));
    assert_eq!(kinds(&r)[0], ["passive-data-blocked"]);
}

#[test]
fn garbage_is_an_error_or_a_report() {
    let mut d = Diagnoser::new();
    let e = d
        .add_capture("text", &b"USER anonymous\r\n"[..])
        .unwrap_err();
    assert!(
        e.to_string().contains("not a pcap or pcapng capture"),
        "{e}"
    );
    assert!(d.add_capture("empty", &b""[..]).is_err());
    // A valid header followed by noise; and noise in every byte of a real
    // capture's frames.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let real = std::fs::read(diagnose_util::path(SEED)).unwrap();
    for round in 0..300 {
        let mut bytes = real.clone();
        let flips = 1 + (rand() % 64) as usize;
        for _ in 0..flips {
            let at = 24 + (rand() as usize) % (bytes.len() - 24);
            bytes[at] = rand() as u8;
        }
        if round % 3 == 0 {
            bytes.truncate(24 + (rand() as usize) % (bytes.len() - 24));
        }
        let mut d = Diagnoser::new();
        if d.add_capture("noise", &bytes[..]).is_ok() {
            let r = d.report();
            let _ = (r.to_text(), r.to_json());
        }
    }
    for magic in [[0xd4u8, 0xc3, 0xb2, 0xa1], [0x0a, 0x0d, 0x0d, 0x0a]] {
        for _ in 0..100 {
            let mut bytes = magic.to_vec();
            bytes.extend((0..(rand() % 4096)).map(|_| rand() as u8));
            let mut d = Diagnoser::new();
            if d.add_capture("noise", &bytes[..]).is_ok() {
                let _ = d.report().to_text();
            }
        }
    }
}

fn frame(n: u64, data: Vec<u8>) -> Frame {
    Frame {
        ts: Duration::from_millis(n),
        orig_len: data.len() as u32,
        data,
    }
}

#[test]
fn gigantic_line_is_cut_and_the_session_goes_on() {
    let cli = ([100, 64, 0, 2], 40000);
    let srv = ([198, 51, 100, 10], 21);
    let mut f = vec![frame(0, tcp(srv, cli, 1000, false, b"220 FTP ready\r\n"))];
    let mut seq = 1u32;
    // 4 MiB without a line end, in 1400-byte segments.
    let chunk = [b'A'; 1400];
    for i in 0..3000 {
        f.push(frame(1 + i, tcp(cli, srv, seq, false, &chunk)));
        seq += 1400;
    }
    f.push(frame(4000, tcp(cli, srv, seq, false, b"\r\nPASV\r\n")));
    f.push(frame(
        4001,
        tcp(
            srv,
            cli,
            1015,
            false,
            b"227 Entering Passive Mode (198,51,100,10,117,48)\r\n",
        ),
    ));
    let r = diagnose(&[("long", &pcap(&f, DataLink::ETHERNET))]);
    let s = &r.sessions[0];
    let texts: Vec<&str> = s.transcript.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert!(
        texts[1].ends_with("[line over the 2048-byte cap]"),
        "{}",
        texts[1]
    );
    assert!(texts[1].len() < 200);
    assert_eq!(texts[2], "PASV");
    assert_eq!(
        s.negotiations[0].address.unwrap().to_string(),
        "198.51.100.10:30000"
    );
}

#[test]
fn a_hundred_thousand_flows_stay_bounded() {
    let mut f = Vec::with_capacity(200_001);
    for i in 0..100_000u32 {
        let src = ([100, 64, 0, 2], 1024 + (i % 60000) as u16);
        let dst = ([198, 51, 100, 10 + (i / 60000) as u8], 8080);
        f.push(frame(u64::from(i), tcp(src, dst, i, true, b"")));
        // Half of them send a first payload that is not FTP.
        if i % 2 == 0 {
            f.push(frame(
                u64::from(i),
                tcp(src, dst, i + 1, false, b"GET / HTTP/1.1\r\n"),
            ));
        }
    }
    // And the seed's session after them.
    let base = Duration::from_secs(1000);
    f.extend(frames(SEED).into_iter().map(|mut fr| {
        fr.ts = base + (fr.ts - frames(SEED)[0].ts);
        fr
    }));
    let bytes = pcap(&f, DataLink::ETHERNET);
    let t = Instant::now();
    let r = diagnose(&[("many", &bytes)]);
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    assert_eq!(kinds(&r), vec![vec!["passive-data-blocked"]; 2]);
    assert_eq!(
        r.captures[0].tcp_segments,
        150_000 + frames(SEED).len() as u64
    );
}

/// A scripted control session on port 21 and the data connections it
/// asks for, as Ethernet frames.
struct Script {
    frames: Vec<Frame>,
    cseq: u32,
    sseq: u32,
}

const CLI: ([u8; 4], u16) = ([100, 64, 0, 2], 40100);
const SRV: ([u8; 4], u16) = ([198, 51, 100, 10], 21);

impl Script {
    fn new() -> Script {
        let mut s = Script {
            frames: Vec::new(),
            cseq: 100,
            sseq: 500,
        };
        s.push(tcp(CLI, SRV, 99, true, b""));
        s.server("220 FTP server ready");
        s
    }
    fn push(&mut self, data: Vec<u8>) {
        let n = self.frames.len() as u64;
        self.frames.push(frame(n, data));
    }
    fn client(&mut self, line: &str) {
        let bytes = format!("{line}\r\n");
        self.push(tcp(CLI, SRV, self.cseq, false, bytes.as_bytes()));
        self.cseq += bytes.len() as u32;
    }
    fn server(&mut self, line: &str) {
        let bytes = format!("{line}\r\n");
        self.push(tcp(SRV, CLI, self.sseq, false, bytes.as_bytes()));
        self.sseq += bytes.len() as u32;
    }
    /// A connection that is answered and carries `bytes` from `to`.
    fn data(&mut self, from: ([u8; 4], u16), to: ([u8; 4], u16), bytes: usize) {
        self.push(tcp(from, to, 9, true, b""));
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(to.0, from.0, 64)
            .tcp(to.1, from.1, 19, 64240)
            .syn()
            .ack(10);
        let mut synack = Vec::new();
        b.write(&mut synack, &[]).unwrap();
        self.push(synack);
        self.push(tcp(to, from, 20, false, &vec![b'x'; bytes]));
    }
}

#[test]
fn long_forms_lpsv_and_lprt_are_followed() {
    let mut s = Script::new();
    s.client("LPSV");
    s.server("228 Entering Long Passive Mode (4,4,198,51,100,10,2,117,48)");
    s.client("RETR a");
    s.data(([100, 64, 0, 2], 41000), ([198, 51, 100, 10], 30000), 700);
    s.server("150 Opening");
    s.server("226 Done");
    s.client("LPRT 4,4,100,64,0,2,2,160,10");
    s.server("200 LPRT ok");
    s.client("STOR b");
    s.data(([198, 51, 100, 10], 20), ([100, 64, 0, 2], 40970), 300);
    s.server("150 Opening");
    s.server("226 Done");
    let r = diagnose(&[("long", &pcap(&s.frames, DataLink::ETHERNET))]);
    assert_eq!(kinds(&r), vec![vec!["transfer-ok", "transfer-ok"]]);
    let session = &r.sessions[0];
    assert_eq!(
        session.negotiations[0].address.unwrap().to_string(),
        "198.51.100.10:30000"
    );
    assert_eq!(
        session.negotiations[1].address.unwrap().to_string(),
        "100.64.0.2:40970"
    );
    assert_eq!(session.data[0].bytes_down, 700);
    assert_eq!(session.data[1].from.to_string(), "198.51.100.10:20");
    assert_eq!(session.data[1].bytes_down, 300);
}

#[test]
fn multi_line_replies_and_pipelined_commands() {
    let mut s = Script::new();
    // Two commands in one segment, two replies in the next.
    s.client("TYPE I\r\nEPSV");
    s.server("200 Binary\r\n229 Entering Extended Passive Mode (|||30002|)");
    s.client("FEAT");
    s.server("211-Features:");
    s.server("227 this continuation line is not a reply");
    s.server("211 End");
    s.client("PASV");
    s.server("227 Entering Passive Mode (198,51,100,10,117,49)");
    let r = diagnose(&[("ml", &pcap(&s.frames, DataLink::ETHERNET))]);
    let n = &r.sessions[0].negotiations;
    assert_eq!(n.len(), 2);
    assert_eq!(n[0].reply.as_ref().unwrap().code, 229);
    assert_eq!(n[0].address.unwrap().to_string(), "198.51.100.10:30002");
    assert_eq!(n[1].reply.as_ref().unwrap().code, 227);
    assert_eq!(n[1].address.unwrap().to_string(), "198.51.100.10:30001");
}

#[test]
fn data_connection_seen_without_its_handshake() {
    // An active-mode transfer whose handshake was not captured, and whose
    // first packet seen comes from the end that accepted the connection
    // (the client's ACK): the direction must still be server -> client.
    let ports = |fr: &Frame| {
        let t = 14 + usize::from(fr.data[14] & 0x0f) * 4;
        let p = |at: usize| u16::from_be_bytes([fr.data[at], fr.data[at + 1]]);
        (p(t), p(t + 2), fr.data[t + 13] & 0x02 != 0)
    };
    let all = frames("helper-active-ok.outside.pcap");
    let first_ack = all
        .iter()
        .position(|fr| matches!(ports(fr), (_, 20, false)))
        .unwrap();
    let f: Vec<Frame> = all
        .into_iter()
        .enumerate()
        .filter(|(i, fr)| match ports(fr) {
            (20, _, syn) | (_, 20, syn) if syn => false,
            (20, _, _) => *i > first_ack,
            _ => true,
        })
        .map(|(_, fr)| fr)
        .collect();
    let r = diagnose(&[("nosyn", &pcap(&f, DataLink::ETHERNET))]);
    assert_eq!(kinds(&r), vec![vec!["transfer-ok"]]);
    let d = &r.sessions[0].data[0];
    assert_eq!(d.from.to_string(), "198.51.100.10:20");
    assert_eq!(d.syns, 0);
    assert!(d.bytes_up > 0 && d.bytes_down == 0, "{d:?}");
}

impl Script {
    /// A SYN sent `n` times and never answered.
    fn unanswered(&mut self, from: ([u8; 4], u16), to: ([u8; 4], u16), n: usize) {
        for k in 0..n {
            self.push(tcp(from, to, 9, true, b""));
            // Retransmitted after one, two, ... seconds.
            if let Some(last) = self.frames.last_mut() {
                last.ts += Duration::from_secs(k as u64);
            }
        }
    }
    /// A SYN answered with a reset.
    fn refused(&mut self, from: ([u8; 4], u16), to: ([u8; 4], u16)) {
        self.push(tcp(from, to, 9, true, b""));
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(to.0, from.0, 64)
            .tcp(to.1, from.1, 0, 0)
            .rst()
            .ack(10);
        let mut rst = Vec::new();
        b.write(&mut rst, &[]).unwrap();
        self.push(rst);
    }
}

/// The outside of a NAT: the client appears as 198.51.100.1.
const OUT: ([u8; 4], u16) = ([198, 51, 100, 1], 40100);

#[test]
fn untranslated_port_accepted_and_the_connect_goes_nowhere() {
    // Seen outside the NAT: a server that does not check PORT accepts the
    // client's private address and its SYN to it is never answered.
    let mut s = Script::new();
    s.client("PORT 100,64,0,2,156,64");
    s.server("200 PORT command successful");
    s.client("RETR f");
    s.unanswered(([198, 51, 100, 10], 20), ([100, 64, 0, 2], 40000), 3);
    s.server("425 Failed to establish connection");
    let mut frames = s.frames;
    // Move the client to the NAT's address: rewrite 100.64.0.2:40100.
    for fr in &mut frames {
        for at in [26, 30] {
            if fr.data[at..at + 4] == [100, 64, 0, 2]
                && fr.data[34..38].windows(2).any(|w| w == [0, 21])
            {
                fr.data[at..at + 4].copy_from_slice(&OUT.0);
            }
        }
    }
    let r = diagnose(&[("out", &pcap(&frames, DataLink::ETHERNET))]);
    assert_eq!(kinds(&r), vec![vec!["active-address-not-translated"]]);
    let e = &r.sessions[0].findings[0].explanation;
    assert!(
        e.contains("went nowhere") && e.contains("3 SYN(s), no answer"),
        "{e}"
    );
    assert!(
        e.contains("The server sees the client as 198.51.100.1"),
        "{e}"
    );
}

#[test]
fn passive_port_answered_with_a_reset() {
    let mut s = Script::new();
    s.client("EPSV");
    s.server("229 Entering Extended Passive Mode (|||30003|)");
    s.refused(([100, 64, 0, 2], 41001), ([198, 51, 100, 10], 30003));
    let r = diagnose(&[("rst", &pcap(&s.frames, DataLink::ETHERNET))]);
    assert_eq!(kinds(&r), vec![vec!["passive-data-blocked"]]);
    assert!(r.sessions[0].findings[0]
        .explanation
        .contains("answered with a reset"));
}

#[test]
fn eprt_refused_for_its_family_then_port() {
    let mut s = Script::new();
    s.client("EPRT |2|2001:db8:1::2|40000|");
    s.server("522 Network protocol not supported, use (1)");
    s.client("PORT 100,64,0,2,156,64");
    s.server("200 PORT command successful");
    s.client("RETR f");
    s.data(([198, 51, 100, 10], 20), ([100, 64, 0, 2], 40000), 10);
    s.server("150 Opening");
    s.server("226 Done");
    let r = diagnose(&[("eprt", &pcap(&s.frames, DataLink::ETHERNET))]);
    assert_eq!(
        kinds(&r),
        vec![vec!["extended-mode-refused", "transfer-ok"]]
    );
    assert_eq!(r.sessions[0].verdict, "ok");
    assert!(r.sessions[0].findings[0]
        .explanation
        .contains("then sent PORT 100,64,0,2,156,64"));
}

#[test]
fn one_frame_on_two_interfaces_counts_once() {
    // tcpdump -i any on a bridge: every frame twice, microseconds apart.
    let f = frames(SEED);
    let mut doubled = Vec::new();
    for fr in &f {
        doubled.push(fr.clone());
        let mut copy = fr.clone();
        copy.ts += Duration::from_micros(20);
        doubled.push(copy);
    }
    let once = diagnose(&[("once", &pcap(&f, DataLink::ETHERNET))]);
    let twice = diagnose(&[("twice", &pcap(&doubled, DataLink::ETHERNET))]);
    assert_eq!(twice.captures[0].duplicates, f.len() as u64);
    assert_eq!(kinds(&once), kinds(&twice));
    assert_eq!(
        once.sessions[0].data[0].syns,
        twice.sessions[0].data[0].syns
    );
    assert_eq!(twice.sessions[0].data[0].syns, 4);
}

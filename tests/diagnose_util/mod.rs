//! Helpers for the diagnose tests: read a lab capture's frames, change
//! them, and write them back as pcap or pcapng.
#![allow(dead_code)]

use std::borrow::Cow;
use std::time::Duration;

use ftpalg::diagnose::{Diagnoser, Report};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

/// One frame: time, bytes, length on the wire.
#[derive(Debug, Clone)]
pub struct Frame {
    pub ts: Duration,
    pub data: Vec<u8>,
    pub orig_len: u32,
}

pub fn path(name: &str) -> String {
    format!("tests/captures/{name}")
}

/// The frames of a recorded capture.
pub fn frames(name: &str) -> Vec<Frame> {
    let file = std::fs::File::open(path(name)).unwrap();
    let mut r = PcapReader::new(file).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_raw_packet() {
        let p = p.unwrap();
        out.push(Frame {
            ts: Duration::new(u64::from(p.ts_sec), p.ts_frac * 1000),
            data: p.data.to_vec(),
            orig_len: p.orig_len,
        });
    }
    out
}

/// Writes frames as a pcap of the given link type.
pub fn pcap(frames: &[Frame], link: DataLink) -> Vec<u8> {
    write_pcap(
        frames,
        PcapHeader {
            datalink: link,
            snaplen: 262_144,
            ..PcapHeader::default()
        },
    )
}

/// Writes Ethernet frames as a little-endian pcap with nanosecond
/// timestamps.
pub fn pcap_nanos(frames: &[Frame]) -> Vec<u8> {
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        snaplen: 262_144,
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        endianness: pcap_file::Endianness::Little,
        ..PcapHeader::default()
    };
    write_pcap(frames, header)
}

fn write_pcap(frames: &[Frame], header: PcapHeader) -> Vec<u8> {
    let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
    for f in frames {
        w.write_packet(&PcapPacket::new(
            f.ts,
            f.orig_len.max(f.data.len() as u32),
            &f.data,
        ))
        .unwrap();
    }
    w.into_writer()
}

/// Writes Ethernet frames as pcapng with nanosecond timestamps.
pub fn pcapng(frames: &[Frame]) -> Vec<u8> {
    let mut w = PcapNgWriter::new(Vec::new()).unwrap();
    let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 262_144);
    idb.options.push(InterfaceDescriptionOption::IfTsResol(9));
    w.write_pcapng_block(idb).unwrap();
    for f in frames {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: f.ts,
            original_len: f.orig_len,
            data: Cow::Borrowed(&f.data),
            options: vec![],
        };
        w.write_pcapng_block(epb).unwrap();
    }
    w.into_inner()
}

/// Diagnoses in-memory captures.
pub fn diagnose(captures: &[(&str, &[u8])]) -> Report {
    let mut d = Diagnoser::new();
    for (name, bytes) in captures {
        d.add_capture(name, *bytes).unwrap();
    }
    d.report()
}

/// Diagnoses recorded captures by name.
pub fn diagnose_files(names: &[&str]) -> Report {
    let mut d = Diagnoser::new();
    for name in names {
        let p = path(name);
        d.add_capture(&p, std::fs::File::open(&p).unwrap()).unwrap();
    }
    d.report()
}

/// Each session's finding kinds, in order.
pub fn kinds(report: &Report) -> Vec<Vec<&'static str>> {
    report
        .sessions
        .iter()
        .map(|s| s.findings.iter().map(|f| f.kind.name()).collect())
        .collect()
}

/// Each session's finding kinds as the other capture saw it (empty for a
/// session seen in one capture only).
pub fn leg_kinds(report: &Report) -> Vec<Vec<&'static str>> {
    report
        .sessions
        .iter()
        .map(|s| {
            s.nat
                .iter()
                .flat_map(|n| n.leg.findings.iter().map(|f| f.kind.name()))
                .collect()
        })
        .collect()
}

/// Each session's verdict.
pub fn verdicts(report: &Report) -> Vec<&str> {
    report.sessions.iter().map(|s| s.verdict.as_str()).collect()
}

/// An Ethernet frame of one IPv4 TCP segment: a SYN, or an ACK carrying
/// `payload`.
pub fn tcp(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    syn: bool,
    payload: &[u8],
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, seq, 64240);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

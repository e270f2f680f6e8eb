//! The capture container: pcap (micro- and nanosecond, either byte order)
//! and pcapng, read through the `pcap-file` crate, one packet at a time, so
//! memory does not grow with the file.

use std::io::{self, Chain, Cursor, Read};
use std::time::Duration;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{PcapError, TsResolution};
use thiserror::Error;

use super::decode::LinkType;

/// Why a capture cannot be read (further).
#[derive(Debug, Error)]
pub enum CaptureError {
    /// Reading the file failed.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    /// The first bytes are neither a pcap nor a pcapng header.
    #[error("not a pcap or pcapng capture (first bytes {0:02x?})")]
    NotACapture([u8; 4]),
    /// The file ends inside a header or a packet.
    #[error("capture truncated after packet {0}")]
    Truncated(u64),
    /// A header or block is malformed.
    #[error("malformed capture after packet {after}: {reason}")]
    Malformed {
        /// The last packet read whole.
        after: u64,
        /// What the container parser said.
        reason: String,
    },
}

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// 1-based position in the capture, as Wireshark numbers frames.
    pub number: u64,
    /// Capture time since the epoch.
    pub ts: Duration,
    /// The frame's link layer.
    pub link: LinkType,
    /// The captured bytes (at most the snap length).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub orig_len: u32,
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

type Input<R> = Chain<Cursor<[u8; 4]>, R>;

enum Inner<R: Read> {
    Pcap {
        reader: PcapReader<Input<R>>,
        link: LinkType,
    },
    PcapNg {
        reader: Box<PcapNgReader<Input<R>>>,
        /// Link type and nanoseconds per timestamp unit, per interface.
        ifaces: Vec<(LinkType, TsUnit)>,
    },
}

/// A pcapng interface's timestamp unit (`if_tsresol`).
#[derive(Debug, Clone, Copy)]
struct TsUnit {
    base2: bool,
    exp: u8,
}

impl TsUnit {
    const MICROS: TsUnit = TsUnit {
        base2: false,
        exp: 6,
    };

    fn from_option(v: u8) -> TsUnit {
        TsUnit {
            base2: v & 0x80 != 0,
            exp: v & 0x7f,
        }
    }

    /// pcap-file hands the raw 64-bit count over as nanoseconds.
    fn to_duration(self, raw: Duration) -> Duration {
        let raw = raw.as_nanos();
        let nanos = if self.base2 {
            let exp = u32::from(self.exp.min(64));
            raw.saturating_mul(1_000_000_000) >> exp
        } else if self.exp <= 9 {
            raw.saturating_mul(10u128.pow(9 - u32::from(self.exp)))
        } else {
            raw / 10u128.pow(u32::from(self.exp.min(38)) - 9)
        };
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Reads packets from a pcap or pcapng stream.
pub struct CaptureReader<R: Read> {
    inner: Inner<R>,
    number: u64,
    done: bool,
    /// pcapng packets are copied here, one at a time: the block borrowed
    /// from the reader cannot outlive the loop that skips other blocks.
    buf: Vec<u8>,
}

impl<R: Read> std::fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader")
            .field("number", &self.number)
            .finish_non_exhaustive()
    }
}

fn map_err(e: PcapError, after: u64) -> CaptureError {
    match e {
        PcapError::IncompleteBuffer => CaptureError::Truncated(after),
        PcapError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            CaptureError::Truncated(after)
        }
        PcapError::IoError(e) => CaptureError::Io(e),
        other => CaptureError::Malformed {
            after,
            reason: other.to_string(),
        },
    }
}

impl<R: Read> CaptureReader<R> {
    /// Opens a capture, telling pcap from pcapng by the first bytes.
    pub fn new(mut input: R) -> Result<CaptureReader<R>, CaptureError> {
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match input.read(&mut magic[got..]) {
                Ok(0) => return Err(CaptureError::Truncated(0)),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let chained = Cursor::new(magic).chain(input);
        let inner = if PCAP_MAGICS.contains(&magic) {
            let reader = PcapReader::new(chained).map_err(|e| map_err(e, 0))?;
            let link = LinkType(u32::from(reader.header().datalink));
            Inner::Pcap { reader, link }
        } else if magic == PCAPNG_MAGIC {
            let reader = PcapNgReader::new(chained).map_err(|e| map_err(e, 0))?;
            Inner::PcapNg {
                reader: Box::new(reader),
                ifaces: Vec::new(),
            }
        } else {
            return Err(CaptureError::NotACapture(magic));
        };
        Ok(CaptureReader {
            inner,
            number: 0,
            done: false,
            buf: Vec::new(),
        })
    }

    /// Packets read so far.
    pub fn packets_read(&self) -> u64 {
        self.number
    }

    /// The next packet; `None` at the end, or after an error was returned.
    pub fn next_packet(&mut self) -> Option<Result<Packet<'_>, CaptureError>> {
        if self.done {
            return None;
        }
        let after = self.number;
        let CaptureReader {
            inner,
            number,
            done,
            buf,
        } = self;
        match inner {
            Inner::Pcap { reader, link } => {
                let nanos = reader.header().ts_resolution == TsResolution::NanoSecond;
                match reader.next_raw_packet() {
                    None => {
                        *done = true;
                        None
                    }
                    Some(Err(e)) => {
                        *done = true;
                        Some(Err(map_err(e, after)))
                    }
                    Some(Ok(p)) => {
                        // The raw form: pcap-file's checked form refuses any
                        // frame longer than the snap length, which is every
                        // frame the snap length cut.
                        *number += 1;
                        let frac = if nanos {
                            p.ts_frac
                        } else {
                            p.ts_frac.saturating_mul(1000)
                        };
                        let ts = Duration::from_secs(u64::from(p.ts_sec))
                            + Duration::from_nanos(u64::from(frac.min(999_999_999)));
                        let data: &[u8] = match p.data {
                            std::borrow::Cow::Borrowed(b) => b,
                            // pcap-file only borrows when reading.
                            std::borrow::Cow::Owned(_) => &[],
                        };
                        Some(Ok(Packet {
                            number: *number,
                            ts,
                            link: *link,
                            data,
                            orig_len: p.orig_len.max(p.incl_len),
                        }))
                    }
                }
            }
            Inner::PcapNg { reader, ifaces } => {
                let (link, ts, orig_len) = loop {
                    let block = match reader.next_block() {
                        None => {
                            *done = true;
                            return None;
                        }
                        Some(Err(e)) => {
                            *done = true;
                            return Some(Err(map_err(e, after)));
                        }
                        Some(Ok(b)) => b,
                    };
                    let (iface, ts, orig_len, data) = match block {
                        Block::SectionHeader(_) => {
                            ifaces.clear();
                            continue;
                        }
                        Block::InterfaceDescription(idb) => {
                            let unit = idb
                                .options
                                .iter()
                                .find_map(|o| match o {
                                    InterfaceDescriptionOption::IfTsResol(v) => {
                                        Some(TsUnit::from_option(*v))
                                    }
                                    _ => None,
                                })
                                .unwrap_or(TsUnit::MICROS);
                            // A hostile file could declare interfaces without
                            // end; a real one has a handful.
                            if ifaces.len() < 1024 {
                                ifaces.push((LinkType(u32::from(idb.linktype)), unit));
                            }
                            continue;
                        }
                        Block::EnhancedPacket(epb) => (
                            usize::try_from(epb.interface_id).unwrap_or(usize::MAX),
                            Some(epb.timestamp),
                            epb.original_len,
                            epb.data,
                        ),
                        Block::SimplePacket(spb) => (0, None, spb.original_len, spb.data),
                        _ => continue,
                    };
                    let Some(&(link, unit)) = ifaces.get(iface) else {
                        *done = true;
                        return Some(Err(CaptureError::Malformed {
                            after,
                            reason: format!("packet on undeclared interface {iface}"),
                        }));
                    };
                    buf.clear();
                    buf.extend_from_slice(&data);
                    break (
                        link,
                        ts.map(|t| unit.to_duration(t)).unwrap_or_default(),
                        orig_len,
                    );
                };
                *number += 1;
                Some(Ok(Packet {
                    number: *number,
                    ts,
                    link,
                    data: buf,
                    orig_len,
                }))
            }
        }
    }
}

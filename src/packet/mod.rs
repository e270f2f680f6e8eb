//! Packets from captures: the capture container, link and IP/TCP decoding,
//! and TCP stream reassembly. Typed views over borrowed bytes, after
//! smoltcp's `wire` module; nothing here knows about FTP, so a packet-mode
//! driver can reuse it.

pub mod capture;
pub mod decode;
pub mod live;
pub mod reassembly;

pub use capture::{CaptureError, CaptureReader, Packet};
pub use decode::{decode, LinkType, TcpFlags, TcpSegment};
pub use reassembly::{Piece, Reassembler};

//! Link layer to TCP: a typed view of one TCP segment in a captured frame.
//!
//! Ethernet (with VLAN tags), Linux cooked capture v1 and v2, BSD loopback
//! and raw IP frames; IPv4 and IPv6. Headers are read by `etherparse` in
//! its lax mode, so a frame cut by the snap length still yields its TCP
//! header and the part of the payload that was captured.

use std::net::{IpAddr, SocketAddr};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};

/// A capture's link-layer type (the pcap `LINKTYPE_` number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    /// BSD loopback: a 4-byte address family in host order.
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet II.
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IP (the pcap number; 12 and 14 are the same on some systems).
    pub const RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: the family in network order.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux cooked capture v1 (`tcpdump -i any`, older libpcap).
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6.
    pub const IPV6: LinkType = LinkType(229);
    /// Linux cooked capture v2 (`tcpdump -i any`, libpcap 1.10 and later).
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// Whether [`decode`] reads this link type.
    pub fn is_supported(self) -> bool {
        matches!(self.0, 0 | 1 | 12 | 14 | 101 | 108 | 113 | 228 | 229 | 276)
    }
}

/// The TCP flags that matter for following a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags {
    /// Synchronize: opens a connection.
    pub syn: bool,
    /// Acknowledgment field valid.
    pub ack: bool,
    /// No more data from the sender.
    pub fin: bool,
    /// Reset: the connection is refused or aborted.
    pub rst: bool,
}

/// One TCP segment as captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Sequence number of the first payload byte (or of the SYN/FIN).
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// The payload bytes that were captured.
    pub payload: &'a [u8],
    /// The payload's length on the wire (more than `payload.len()` when
    /// the snap length cut the frame).
    pub wire_len: u32,
}

/// Decodes a frame; `None` for anything that is not a readable TCP segment
/// (ARP, UDP, IP fragments, truncated headers, unknown link types).
pub fn decode(link: LinkType, frame: &[u8], orig_len: u32) -> Option<TcpSegment<'_>> {
    let sliced = match link.0 {
        1 => LaxSlicedPacket::from_ethernet(frame).ok()?,
        12 | 14 | 101 | 228 | 229 => LaxSlicedPacket::from_ip(frame).ok()?,
        113 => {
            // Packet type, ARPHRD, address length, 8 address bytes, protocol.
            let proto = u16::from_be_bytes([*frame.get(14)?, *frame.get(15)?]);
            LaxSlicedPacket::from_ether_type(EtherType(proto), frame.get(16..)?)
        }
        276 => {
            // Protocol first, then interface, ARPHRD, type, address.
            let proto = u16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
            LaxSlicedPacket::from_ether_type(EtherType(proto), frame.get(20..)?)
        }
        0 | 108 => LaxSlicedPacket::from_ip(frame.get(4..)?).ok()?,
        _ => return None,
    };
    let (src, dst, fragmented) = match sliced.net.as_ref()? {
        LaxNetSlice::Ipv4(v4) => (
            IpAddr::V4(v4.header().source_addr()),
            IpAddr::V4(v4.header().destination_addr()),
            v4.payload().fragmented,
        ),
        LaxNetSlice::Ipv6(v6) => (
            IpAddr::V6(v6.header().source_addr()),
            IpAddr::V6(v6.header().destination_addr()),
            v6.payload().fragmented,
        ),
        LaxNetSlice::Arp(_) => return None,
    };
    if fragmented {
        return None;
    }
    let TransportSlice::Tcp(tcp) = sliced.transport.as_ref()? else {
        return None;
    };
    let payload = tcp.payload();
    let cut = u32::try_from(frame.len())
        .map(|caplen| orig_len.saturating_sub(caplen))
        .unwrap_or(0);
    let wire_len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .saturating_add(cut);
    Some(TcpSegment {
        src: SocketAddr::new(src, tcp.source_port()),
        dst: SocketAddr::new(dst, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags {
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
        },
        payload,
        wire_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_v4(payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([100, 64, 0, 2], [198, 51, 100, 10], 64)
            .tcp(40000, 21, 1000, 64240)
            .ack(77)
            .psh();
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn ethernet_ipv4_round_trip() {
        let frame = tcp_v4(b"PASV\r\n");
        let seg = decode(LinkType::ETHERNET, &frame, frame.len() as u32).unwrap();
        assert_eq!(seg.src, "100.64.0.2:40000".parse().unwrap());
        assert_eq!(seg.dst, "198.51.100.10:21".parse().unwrap());
        assert_eq!((seg.seq, seg.ack), (1000, 77));
        assert!(seg.flags.ack && !seg.flags.syn && !seg.flags.fin && !seg.flags.rst);
        assert_eq!(seg.payload, b"PASV\r\n");
        assert_eq!(seg.wire_len, 6);
    }

    #[test]
    fn snap_length_cut_keeps_wire_length() {
        let frame = tcp_v4(&[b'x'; 1000]);
        let cut = &frame[..200];
        let seg = decode(LinkType::ETHERNET, cut, frame.len() as u32).unwrap();
        assert_eq!(seg.payload.len(), 200 - 14 - 20 - 20);
        assert_eq!(seg.wire_len, 1000);
    }

    #[test]
    fn cooked_v1_v2_and_raw_ipv6() {
        let ip = {
            let b = PacketBuilder::ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10],
                64,
            )
            .tcp(40001, 21, 5, 1000)
            .syn();
            let mut v = Vec::new();
            b.write(&mut v, &[]).unwrap();
            v
        };
        let raw = decode(LinkType::RAW, &ip, ip.len() as u32).unwrap();
        assert_eq!(raw.dst, "[2001:db8:2::10]:21".parse().unwrap());
        assert!(raw.flags.syn);

        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x86, 0xdd];
        sll.extend_from_slice(&ip);
        assert_eq!(
            decode(LinkType::LINUX_SLL, &sll, sll.len() as u32),
            Some(raw)
        );

        let mut sll2 = vec![
            0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
        ];
        sll2.extend_from_slice(&ip);
        assert_eq!(
            decode(LinkType::LINUX_SLL2, &sll2, sll2.len() as u32),
            Some(raw)
        );
    }

    #[test]
    fn not_tcp_or_garbage_is_none() {
        assert_eq!(decode(LinkType::ETHERNET, &[], 0), None);
        assert_eq!(decode(LinkType::ETHERNET, &[0xff; 60], 60), None);
        assert_eq!(decode(LinkType::LINUX_SLL2, &[0x08, 0x00], 2), None);
        assert_eq!(decode(LinkType(147), &tcp_v4(b"x"), 55), None);
        let udp = {
            let b = PacketBuilder::ipv4([100, 64, 0, 2], [198, 51, 100, 10], 64).udp(5, 53);
            let mut v = Vec::new();
            b.write(&mut v, b"q").unwrap();
            v
        };
        assert_eq!(decode(LinkType::RAW, &udp, udp.len() as u32), None);
    }
}

//! ctnetlink: the conntrack entry of a pinhole's connection (looked up by
//! its exact tuple), its byte counts and TCP state, and deleting it.
//!
//! Layouts from `linux/netfilter/nfnetlink_conntrack.h`, whose numbers libc
//! does not carry. Counters are only present when
//! `net.netfilter.nf_conntrack_acct` was 1 when the entry was made.

use super::netlink::{self, attr, be_u16, be_u64, Message, Writer, NFNL_SUBSYS_CTNETLINK};
use super::socket::NfSocket;
use super::ByteCounts;
use super::KernelError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
pub(super) const IPCTNL_MSG_CT_DELETE: u16 = 2;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_PROTOINFO: u16 = 4;
const CTA_TIMEOUT: u16 = 7;
pub(super) const CTA_MARK: u16 = 8;
const CTA_MARK_MASK: u16 = 21;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
const IPPROTO_TCP: u8 = libc::IPPROTO_TCP as u8;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// TCP states as conntrack tracks them (`enum tcp_conntrack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TcpState {
    SynSent,
    SynRecv,
    Established,
    Closing,
    /// TIME_WAIT: both ends closed in order, after being established.
    Closed,
    /// CLOSE: ended by a reset, from whatever state it was in.
    Reset,
    Other,
}

impl TcpState {
    fn from_raw(s: u8) -> TcpState {
        match s {
            1 => TcpState::SynSent,
            2 => TcpState::SynRecv,
            3 => TcpState::Established,
            4..=6 => TcpState::Closing, // FIN_WAIT, CLOSE_WAIT, LAST_ACK
            7 => TcpState::Closed,      // TIME_WAIT
            8 => TcpState::Reset,       // CLOSE
            _ => TcpState::Other,
        }
    }
}

/// One TCP conntrack entry, in its original direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub state: TcpState,
    pub counts: ByteCounts,
    /// The message carried counters (dumps, gets and destroy events do;
    /// other events do not, and their zeros mean nothing).
    pub counted: bool,
    /// The entry's whole mark (0 if it has none).
    pub mark: u32,
}

fn ip_of(tuple_ip: &[u8]) -> Option<(IpAddr, IpAddr)> {
    if let (Some(s), Some(d)) = (attr(tuple_ip, CTA_IP_V4_SRC), attr(tuple_ip, CTA_IP_V4_DST)) {
        let s: [u8; 4] = s.try_into().ok()?;
        let d: [u8; 4] = d.try_into().ok()?;
        return Some((Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into()));
    }
    let s: [u8; 16] = attr(tuple_ip, CTA_IP_V6_SRC)?.try_into().ok()?;
    let d: [u8; 16] = attr(tuple_ip, CTA_IP_V6_DST)?.try_into().ok()?;
    Some((Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into()))
}

fn counters(a: Option<&[u8]>) -> (u64, u64) {
    let Some(a) = a else { return (0, 0) };
    let p = attr(a, CTA_COUNTERS_PACKETS).and_then(be_u64).unwrap_or(0);
    let b = attr(a, CTA_COUNTERS_BYTES).and_then(be_u64).unwrap_or(0);
    (p, b)
}

/// Reads one conntrack message; `None` for anything but a complete TCP entry.
pub(super) fn parse_entry(attrs: &[u8]) -> Option<Entry> {
    let orig = attr(attrs, CTA_TUPLE_ORIG)?;
    let (sip, dip) = ip_of(attr(orig, CTA_TUPLE_IP)?)?;
    let proto = attr(orig, CTA_TUPLE_PROTO)?;
    if attr(proto, CTA_PROTO_NUM)?.first() != Some(&IPPROTO_TCP) {
        return None;
    }
    let sport = be_u16(attr(proto, CTA_PROTO_SRC_PORT)?)?;
    let dport = be_u16(attr(proto, CTA_PROTO_DST_PORT)?)?;
    let state = attr(attrs, CTA_PROTOINFO)
        .and_then(|p| attr(p, CTA_PROTOINFO_TCP))
        .and_then(|t| attr(t, CTA_PROTOINFO_TCP_STATE))
        .and_then(|s| s.first().copied())
        .map_or(TcpState::Other, TcpState::from_raw);
    let counted = attr(attrs, CTA_COUNTERS_ORIG).is_some();
    let mark = attr(attrs, CTA_MARK).and_then(netlink::be_u32).unwrap_or(0);
    let (po, bo) = counters(attr(attrs, CTA_COUNTERS_ORIG));
    let (pr, br) = counters(attr(attrs, CTA_COUNTERS_REPLY));
    Some(Entry {
        src: SocketAddr::new(sip, sport),
        dst: SocketAddr::new(dip, dport),
        state,
        counted,
        mark,
        counts: ByteCounts {
            from_dialer: bo,
            to_dialer: br,
            packets_from_dialer: po,
            packets_to_dialer: pr,
        },
    })
}

fn tuple(w: &mut Writer, src: SocketAddr, dst: SocketAddr) {
    w.nested(CTA_TUPLE_ORIG, |w| {
        w.nested(CTA_TUPLE_IP, |w| match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                w.bytes(CTA_IP_V4_SRC, &s.octets());
                w.bytes(CTA_IP_V4_DST, &d.octets());
            }
            (s, d) => {
                let v6 = |a: IpAddr| match a {
                    IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                    IpAddr::V6(a) => a.octets(),
                };
                w.bytes(CTA_IP_V6_SRC, &v6(s));
                w.bytes(CTA_IP_V6_DST, &v6(d));
            }
        });
        w.nested(CTA_TUPLE_PROTO, |w| {
            w.bytes(CTA_PROTO_NUM, &[IPPROTO_TCP]);
            w.bytes(CTA_PROTO_SRC_PORT, &src.port().to_be_bytes());
            w.bytes(CTA_PROTO_DST_PORT, &dst.port().to_be_bytes());
        });
    });
}

/// The entry whose original tuple is src -> dst, if conntrack has it. An
/// exact lookup: its cost does not grow with the conntrack table.
pub(super) fn get(
    sock: &mut NfSocket,
    src: SocketAddr,
    dst: SocketAddr,
) -> Result<Option<Entry>, KernelError> {
    let seq = sock.reserve_seq(1);
    let family = if src.is_ipv4() { AF_INET } else { AF_INET6 };
    let req = netlink::request(
        NFNL_SUBSYS_CTNETLINK,
        IPCTNL_MSG_CT_GET,
        0,
        seq,
        family,
        |w| tuple(w, src, dst),
    );
    let mut out = None;
    match sock.query(
        req.as_bytes(),
        seq,
        false,
        "conntrack get",
        |m: Message<'_>| out = parse_entry(m.attrs()),
    ) {
        Ok(()) => Ok(out),
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// How long conntrack keeps a cut entry that neither end sends on: long
/// enough for both ends' next packets to meet the reset, short enough that
/// a silent pair does not hold an entry for the established timeout.
pub(super) const CUT_TIMEOUT_SECS: u32 = 10;

/// The update that marks the entry whose original tuple is src -> dst as
/// cut: `mark` under `mask` (other mark bits kept), and its timeout
/// shortened to [`CUT_TIMEOUT_SECS`]. A message without NLM_F_CREATE only
/// changes an entry that exists.
pub(super) fn cut_request(
    seq: u32,
    src: SocketAddr,
    dst: SocketAddr,
    mark: u32,
    mask: u32,
) -> Writer {
    let family = if src.is_ipv4() { AF_INET } else { AF_INET6 };
    netlink::request(
        NFNL_SUBSYS_CTNETLINK,
        IPCTNL_MSG_CT_NEW,
        netlink::NLM_F_ACK,
        seq,
        family,
        |w| {
            tuple(w, src, dst);
            w.u32(CTA_TIMEOUT, CUT_TIMEOUT_SECS);
            w.u32(CTA_MARK, mark);
            w.u32(CTA_MARK_MASK, mask);
        },
    )
}

/// Marks the entry src -> dst as cut (see [`cut_request`]); true if there
/// was one. ftpalg's `cut` chain then answers each of the connection's
/// next packets, from either end, with a reset to its sender.
pub(super) fn cut(
    sock: &mut NfSocket,
    src: SocketAddr,
    dst: SocketAddr,
    mark: u32,
    mask: u32,
) -> Result<bool, KernelError> {
    let seq = sock.reserve_seq(1);
    let req = cut_request(seq, src, dst, mark, mask);
    match sock.ack(req.as_bytes(), seq, "conntrack cut") {
        Ok(()) => Ok(true),
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every entry whose mark under `mask` is `mark`, of either family: one
/// dump, filtered by the kernel. Used to read the whole state again when
/// events were lost.
pub(super) fn dump_marked(
    sock: &mut NfSocket,
    mark: u32,
    mask: u32,
) -> Result<Vec<Entry>, KernelError> {
    let seq = sock.reserve_seq(1);
    let req = netlink::request(
        NFNL_SUBSYS_CTNETLINK,
        IPCTNL_MSG_CT_GET,
        netlink::NLM_F_DUMP,
        seq,
        // Both families.
        libc::AF_UNSPEC as u8,
        |w| {
            w.u32(CTA_MARK, mark);
            w.u32(CTA_MARK_MASK, mask);
        },
    );
    let mut out = Vec::new();
    sock.query(req.as_bytes(), seq, true, "conntrack dump", |m| {
        out.extend(parse_entry(m.attrs()));
    })?;
    Ok(out)
}

/// Deletes the entry src -> dst; true if there was one. The connection's
/// next packets find no translation and no mark: they reach the gateway
/// itself, which answers with a reset or drops them.
pub(super) fn delete(
    sock: &mut NfSocket,
    src: SocketAddr,
    dst: SocketAddr,
) -> Result<bool, KernelError> {
    let seq = sock.reserve_seq(1);
    let family = if src.is_ipv4() { AF_INET } else { AF_INET6 };
    let req = netlink::request(
        NFNL_SUBSYS_CTNETLINK,
        IPCTNL_MSG_CT_DELETE,
        netlink::NLM_F_ACK,
        seq,
        family,
        |w| tuple(w, src, dst),
    );
    match sock.ack(req.as_bytes(), seq, "conntrack delete") {
        Ok(()) => Ok(true),
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_bytes(state: u8, with_counters: bool) -> Vec<u8> {
        let mut w = Writer::default();
        tuple(
            &mut w,
            "100.64.0.2:33000".parse().unwrap(),
            "100.64.0.1:40000".parse().unwrap(),
        );
        w.nested(CTA_PROTOINFO, |w| {
            w.nested(CTA_PROTOINFO_TCP, |w| {
                w.bytes(CTA_PROTOINFO_TCP_STATE, &[state])
            })
        });
        if with_counters {
            w.nested(CTA_COUNTERS_ORIG, |w| {
                w.u64(CTA_COUNTERS_PACKETS, 10);
                w.u64(CTA_COUNTERS_BYTES, 1000);
            });
            w.nested(CTA_COUNTERS_REPLY, |w| {
                w.u64(CTA_COUNTERS_PACKETS, 20);
                w.u64(CTA_COUNTERS_BYTES, 200_000);
            });
        }
        w.u32(CTA_MARK, 0x4600_0000);
        w.as_bytes().to_vec()
    }

    #[test]
    fn parses_tuple_state_and_counters() {
        let e = parse_entry(&entry_bytes(3, true)).unwrap();
        assert_eq!(e.src, "100.64.0.2:33000".parse().unwrap());
        assert_eq!(e.dst, "100.64.0.1:40000".parse().unwrap());
        assert_eq!(e.state, TcpState::Established);
        assert_eq!(e.counts.from_dialer, 1000);
        assert_eq!(e.counts.to_dialer, 200_000);
        assert_eq!(e.counts.packets_to_dialer, 20);
    }

    #[test]
    fn missing_counters_read_as_zero_and_time_wait_as_closed() {
        assert_eq!(
            parse_entry(&entry_bytes(8, false)).unwrap().state,
            TcpState::Reset
        );
        let e = parse_entry(&entry_bytes(7, false)).unwrap();
        assert_eq!(e.state, TcpState::Closed);
        assert_eq!(e.counts, ByteCounts::default());
    }

    #[test]
    fn garbage_is_not_an_entry() {
        assert_eq!(parse_entry(&[]), None);
        assert_eq!(parse_entry(&[255; 64]), None);
        let mut b = entry_bytes(3, true);
        b.truncate(30);
        assert_eq!(parse_entry(&b), None);
    }

    #[test]
    fn cut_request_updates_the_v6_entry_under_the_mask_only() {
        let w = cut_request(
            9,
            "[2001:db8:1::2]:1000".parse().unwrap(),
            "[2001:db8:1::1]:40000".parse().unwrap(),
            0x4655_0000,
            0xffff_0000,
        );
        let m = netlink::messages(w.as_bytes()).next().unwrap();
        assert_eq!(m.ty, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW);
        // An update only: never creates an entry.
        let flags = u16::from_ne_bytes([w.as_bytes()[6], w.as_bytes()[7]]);
        assert_eq!(flags & netlink::NLM_F_CREATE, 0);
        assert_eq!(m.body[0], AF_INET6);
        let ip = attr(attr(m.attrs(), CTA_TUPLE_ORIG).unwrap(), CTA_TUPLE_IP).unwrap();
        assert_eq!(attr(ip, CTA_IP_V6_SRC).unwrap().len(), 16);
        assert_eq!(
            attr(m.attrs(), CTA_MARK).and_then(netlink::be_u32),
            Some(0x4655_0000)
        );
        assert_eq!(
            attr(m.attrs(), CTA_MARK_MASK).and_then(netlink::be_u32),
            Some(0xffff_0000)
        );
        assert_eq!(
            attr(m.attrs(), CTA_TIMEOUT).and_then(netlink::be_u32),
            Some(CUT_TIMEOUT_SECS)
        );
    }
}

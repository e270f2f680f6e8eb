//! Who the `guard` chain turned away: the chain logs each packet it drops
//! to an nfnetlink_log group, and ftpalg reads that group, so a stranger
//! dialing a kernel pinhole is logged with its address as the relay logs
//! one at its listener. Only the headers are copied (64 bytes a packet),
//! and a SYN retransmitted by the same attempt is told once.

use super::netlink::{self, attr, messages, NFNL_SUBSYS_ULOG, NLM_F_ACK};
use super::KernelError;
use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};

// libc's numbers, at the widths the wire carries them.
const NFULNL_MSG_PACKET: u16 = libc::NFULNL_MSG_PACKET as u16;
const NFULNL_MSG_CONFIG: u16 = libc::NFULNL_MSG_CONFIG as u16;
const NFULA_PAYLOAD: u16 = libc::NFULA_PAYLOAD as u16;
const NFULA_CFG_CMD: u16 = libc::NFULA_CFG_CMD as u16;
const NFULA_CFG_MODE: u16 = libc::NFULA_CFG_MODE as u16;
const NFULA_CFG_TIMEOUT: u16 = libc::NFULA_CFG_TIMEOUT as u16;
const NFULA_CFG_QTHRESH: u16 = libc::NFULA_CFG_QTHRESH as u16;
const NFULNL_CFG_CMD_BIND: u8 = libc::NFULNL_CFG_CMD_BIND as u8;
const NFULNL_COPY_PACKET: u8 = libc::NFULNL_COPY_PACKET as u8;
/// Bytes of each dropped packet copied to ftpalg: IPv6 and TCP headers.
pub(super) const SNAPLEN: u32 = 64;
/// Attempts remembered so a retransmitted SYN is not told again.
const RECENT: usize = 1024;
const RECV_BUF: usize = 64 * 1024;

/// One connection attempt the kernel dropped at a pinhole's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stranger {
    /// Who dialed, with its source port.
    pub from: SocketAddr,
    /// The gateway address and port it dialed.
    pub to: SocketAddr,
}

/// The nflog group's socket. Reads never block.
#[derive(Debug)]
pub(super) struct StrangerLog {
    sock: Socket,
    buf: Vec<u8>,
    recent: VecDeque<Stranger>,
}

impl StrangerLog {
    /// Binds nflog group `group` in the calling thread's network namespace.
    /// Fails if another process has bound it.
    pub fn open(group: u16) -> Result<StrangerLog, KernelError> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        socket2::SockRef::from(&sock).set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        let bind = netlink::request_to(
            NFNL_SUBSYS_ULOG,
            NFULNL_MSG_CONFIG,
            NLM_F_ACK,
            1,
            0,
            group,
            |w| w.bytes(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]),
        );
        ack(&sock, bind.as_bytes(), "bind nflog group")?;
        let mut mode = SNAPLEN.to_be_bytes().to_vec();
        mode.extend([NFULNL_COPY_PACKET, 0]);
        let cfg = netlink::request_to(
            NFNL_SUBSYS_ULOG,
            NFULNL_MSG_CONFIG,
            NLM_F_ACK,
            2,
            0,
            group,
            |w| {
                w.bytes(NFULA_CFG_MODE, &mode);
                // Each packet at once, and in any case within a hundredth
                // of a second (the timeout's unit): the defaults hold up
                // to 100 for up to a second.
                w.u32(NFULA_CFG_QTHRESH, 1);
                w.u32(NFULA_CFG_TIMEOUT, 1);
            },
        );
        ack(&sock, cfg.as_bytes(), "set nflog copy mode")?;
        sock.set_non_blocking(true)?;
        Ok(StrangerLog {
            sock,
            buf: vec![0; RECV_BUF],
            recent: VecDeque::with_capacity(RECENT),
        })
    }

    /// Every attempt logged since the last call, each told once.
    pub fn drain(&mut self) -> Vec<Stranger> {
        let mut out = Vec::new();
        loop {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock, or ENOBUFS when a flood overflowed the queue:
                // what was lost was only more of the same.
                Err(_) => break,
            };
            for m in messages(&self.buf[..n.min(self.buf.len())]) {
                if m.ty != (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET {
                    continue;
                }
                let Some(s) = attr(m.attrs(), NFULA_PAYLOAD).and_then(parse) else {
                    continue;
                };
                if self.recent.contains(&s) {
                    continue;
                }
                if self.recent.len() == RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back(s);
                out.push(s);
            }
        }
        out
    }
}

/// The addresses of a logged packet (IPv4 or IPv6, TCP).
fn parse(payload: &[u8]) -> Option<Stranger> {
    let p = LaxSlicedPacket::from_ip(payload).ok()?;
    let (src, dst): (IpAddr, IpAddr) = match p.net? {
        LaxNetSlice::Ipv4(v4) => (
            v4.header().source_addr().into(),
            v4.header().destination_addr().into(),
        ),
        LaxNetSlice::Ipv6(v6) => (
            v6.header().source_addr().into(),
            v6.header().destination_addr().into(),
        ),
        _ => return None,
    };
    let TransportSlice::Tcp(tcp) = p.transport? else {
        return None;
    };
    Some(Stranger {
        from: SocketAddr::new(src, tcp.source_port()),
        to: SocketAddr::new(dst, tcp.destination_port()),
    })
}

fn ack(sock: &Socket, req: &[u8], what: &'static str) -> Result<(), KernelError> {
    sock.send(req, 0)?;
    let mut buf = vec![0u8; 4096];
    let n = sock.recv(&mut &mut buf[..], 0)?;
    for m in messages(&buf[..n.min(buf.len())]) {
        if let Some(code) = m.error_code() {
            return match code {
                0 => Ok(()),
                errno => Err(KernelError::Refused {
                    what,
                    errno,
                    index: 0,
                }),
            };
        }
    }
    Err(KernelError::Malformed(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    #[test]
    fn a_logged_syn_gives_both_addresses_of_either_family() {
        let mut v4 = Vec::new();
        PacketBuilder::ipv4([100, 64, 0, 3], [100, 64, 0, 1], 64)
            .tcp(51000, 40000, 1, 1024)
            .syn()
            .write(&mut v4, &[])
            .unwrap();
        assert_eq!(
            parse(&v4),
            Some(Stranger {
                from: "100.64.0.3:51000".parse().unwrap(),
                to: "100.64.0.1:40000".parse().unwrap(),
            })
        );
        let mut v6 = Vec::new();
        let (a, b): (std::net::Ipv6Addr, std::net::Ipv6Addr) = (
            "2001:db8:1::3".parse().unwrap(),
            "2001:db8:1::1".parse().unwrap(),
        );
        PacketBuilder::ipv6(a.octets(), b.octets(), 64)
            .tcp(51000, 40000, 1, 1024)
            .syn()
            .write(&mut v6, &[])
            .unwrap();
        // Cut to the snap length, as the kernel copies it.
        v6.truncate(SNAPLEN as usize);
        assert_eq!(
            parse(&v6).map(|s| s.from),
            Some("[2001:db8:1::3]:51000".parse().unwrap())
        );
        assert_eq!(parse(&v6[..30]), None, "a truncated header is nothing");
        assert_eq!(parse(&[0xff; 40]), None);
    }
}

//! Conntrack events for ftpalg's connections only: a ctnetlink socket
//! subscribed to new, updated and destroyed entries, with a socket filter
//! in the kernel that passes only entries carrying ftpalg's mark (or its
//! cut mark), so a busy gateway's other connections cost nothing here.
//!
//! The kernel thread learns from these who dialed a pinhole and when the
//! connection is established and closed, with no request per connection:
//! its cost follows what happens, not how many transfers are live.

use super::conntrack::{parse_entry, Entry, CTA_MARK, IPCTNL_MSG_CT_DELETE};
use super::netlink::{messages, Message, NFNL_SUBSYS_CTNETLINK, NLMSG_ERROR, NLM_F_CREATE};
use super::KernelError;
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use socket2::SockFilter;
use std::io;

const GROUPS: [u32; 3] = [
    libc::NFNLGRP_CONNTRACK_NEW as u32,
    libc::NFNLGRP_CONNTRACK_UPDATE as u32,
    libc::NFNLGRP_CONNTRACK_DESTROY as u32,
];
/// Offset of the first attribute: `nlmsghdr` and the 4-byte `nfgenmsg`.
const ATTRS_AT: u32 = std::mem::size_of::<libc::nlmsghdr>() as u32 + 4;
/// What the socket may queue: a burst of tens of thousands of events
/// (each under 300 bytes) before the kernel drops and says so.
const RCVBUF: usize = 16 << 20;
const RECV_BUF: usize = 64 * 1024;

/// What happened to one of ftpalg's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CtEvent {
    /// A new entry: its connection's first packet has passed.
    New(Entry),
    /// A changed entry, as it is now (its TCP state, if that changed).
    Changed(Entry),
    /// The entry is gone; its final counts.
    Destroyed(Entry),
}

/// The event socket. Reads never block.
#[derive(Debug)]
pub(super) struct CtEvents {
    sock: Socket,
    buf: Vec<u8>,
}

/// The classic BPF program that keeps events whose `CTA_MARK`, under
/// `mask`, is `mark` or `cut`. `ld #nlattr` finds the attribute by type
/// from the first one on (0 if absent: an unmarked entry).
pub(super) fn mark_filter(mark: u32, cut: u32, mask: u32) -> Vec<SockFilter> {
    use libc::{BPF_ABS, BPF_ALU, BPF_AND, BPF_IMM, BPF_IND, BPF_JEQ, BPF_JMP, BPF_K};
    use libc::{BPF_LD, BPF_LDX, BPF_MISC, BPF_RET, BPF_TAX, BPF_W};
    const LD_IMM: u16 = (BPF_LD | BPF_W | BPF_IMM) as u16;
    const LDX_IMM: u16 = (BPF_LDX | BPF_W | BPF_IMM) as u16;
    const LD_ABS: u16 = (BPF_LD | BPF_W | BPF_ABS) as u16;
    const LD_IND: u16 = (BPF_LD | BPF_W | BPF_IND) as u16;
    const JEQ_K: u16 = (BPF_JMP | BPF_JEQ | BPF_K) as u16;
    const AND_K: u16 = (BPF_ALU | BPF_AND | BPF_K) as u16;
    const TAX: u16 = (BPF_MISC | BPF_TAX) as u16;
    const RET_K: u16 = (BPF_RET | BPF_K) as u16;
    const NLATTR: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_NLATTR) as u32;
    vec![
        SockFilter::new(LD_IMM, 0, 0, ATTRS_AT),
        SockFilter::new(LDX_IMM, 0, 0, u32::from(CTA_MARK)),
        SockFilter::new(LD_ABS, 0, 0, NLATTR),
        SockFilter::new(JEQ_K, 5, 0, 0), // no mark: drop
        SockFilter::new(TAX, 0, 0, 0),
        SockFilter::new(LD_IND, 0, 0, 4), // the attribute's value, big-endian
        SockFilter::new(AND_K, 0, 0, mask),
        SockFilter::new(JEQ_K, 2, 0, mark),
        SockFilter::new(JEQ_K, 1, 0, cut),
        SockFilter::new(RET_K, 0, 0, 0),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
    ]
}

impl CtEvents {
    /// Subscribes, in the calling thread's network namespace, to the
    /// events of entries marked `mark` or `cut` under `mask`.
    pub fn open(mark: u32, cut: u32, mask: u32) -> Result<CtEvents, KernelError> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        socket2::SockRef::from(&sock).attach_filter(&mark_filter(mark, cut, mask))?;
        force_rcvbuf(&sock);
        for g in GROUPS {
            sock.add_membership(g)?;
        }
        sock.set_non_blocking(true)?;
        Ok(CtEvents {
            sock,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Hands every event queued now to `f`, then returns. `Err(Lost)`
    /// when the kernel dropped events because the queue was full: the
    /// caller must read the whole state again.
    pub fn drain(&mut self, mut f: impl FnMut(CtEvent)) -> Result<(), Lost> {
        let mut lost = false;
        loop {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    lost = true;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading conntrack events failed");
                    lost = true;
                    break;
                }
            };
            for m in messages(&self.buf[..n.min(self.buf.len())]) {
                if let Some(ev) = decode(&m) {
                    f(ev);
                }
            }
        }
        if lost {
            Err(Lost)
        } else {
            Ok(())
        }
    }
}

/// Events were dropped by the kernel (the socket's queue overflowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lost;

fn decode(m: &Message<'_>) -> Option<CtEvent> {
    if m.ty == NLMSG_ERROR || m.ty >> 8 != NFNL_SUBSYS_CTNETLINK {
        return None;
    }
    let entry = parse_entry(m.attrs())?;
    Some(if m.ty & 0xff == IPCTNL_MSG_CT_DELETE {
        CtEvent::Destroyed(entry)
    } else if m.flags & NLM_F_CREATE != 0 {
        CtEvent::New(entry)
    } else {
        CtEvent::Changed(entry)
    })
}

/// A large receive queue, beyond `rmem_max` where allowed (CAP_NET_ADMIN),
/// so a burst of connections does not overflow it.
fn force_rcvbuf(sock: &Socket) {
    let size = RCVBUF as libc::c_int;
    let fd = std::os::fd::AsRawFd::as_raw_fd(sock);
    // SAFETY: a plain int option on a socket this function borrows.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let _ = sock.set_rx_buf_sz(RCVBUF);
    }
}

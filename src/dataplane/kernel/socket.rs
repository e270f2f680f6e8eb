//! The netlink socket: one request or batch at a time, every wait bounded.

use super::error::KernelError;
use super::netlink::{messages, Batch, Message, NLMSG_DONE, NLMSG_ERROR};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use std::io;
use std::time::{Duration, Instant};

/// A NETLINK_NETFILTER socket bound to this thread's network namespace at
/// creation. Every wait on it is bounded by `timeout`.
#[derive(Debug)]
pub(super) struct NfSocket {
    sock: Socket,
    seq: u32,
    timeout: Duration,
    rbuf: Vec<u8>,
}

/// Big enough for any single datagram a dump sends (the kernel fills up
/// to a page or 16 KiB per skb); 64 KiB leaves room.
const RECV_BUF: usize = 64 * 1024;

impl NfSocket {
    /// Opens and binds the socket; `timeout` bounds each exchange.
    pub fn open(timeout: Duration) -> Result<Self, KernelError> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        // A dump of many conntrack entries must not overflow the queue.
        let _ = sock.set_rx_buf_sz(1 << 20);
        socket2::SockRef::from(&sock).set_read_timeout(Some(timeout))?;
        let seq = std::process::id().wrapping_mul(0x9e37_79b9);
        Ok(NfSocket {
            sock,
            seq,
            timeout,
            rbuf: vec![0; RECV_BUF],
        })
    }

    /// A fresh sequence number, leaving room for `n` messages.
    pub fn reserve_seq(&mut self, n: u32) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(n.max(1));
        s
    }

    fn send(&self, bytes: &[u8]) -> Result<(), KernelError> {
        let n = self.sock.send(bytes, 0)?;
        if n != bytes.len() {
            return Err(KernelError::Io(io::Error::new(
                io::ErrorKind::WriteZero,
                "short netlink send",
            )));
        }
        Ok(())
    }

    /// Receives datagrams and hands each message to `f` until it says done.
    /// Messages from earlier exchanges (stale sequence numbers) are skipped
    /// by `f` itself.
    fn recv_until(
        &mut self,
        what: &'static str,
        mut f: impl FnMut(Message<'_>) -> Result<bool, KernelError>,
    ) -> Result<(), KernelError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if Instant::now() >= deadline {
                return Err(KernelError::Timeout {
                    what,
                    after: self.timeout,
                });
            }
            let n = match self.sock.recv(&mut &mut self.rbuf[..], 0) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(KernelError::Timeout {
                        what,
                        after: self.timeout,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            let buf = std::mem::take(&mut self.rbuf);
            let mut done = false;
            let mut result = Ok(());
            for m in messages(&buf[..n.min(buf.len())]) {
                match f(m) {
                    Ok(true) => {
                        done = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        result = Err(e);
                        done = true;
                        break;
                    }
                }
            }
            self.rbuf = buf;
            result?;
            if done {
                return Ok(());
            }
        }
    }

    /// Sends a batch and waits for an ack of each of its messages. The
    /// first error is returned with its errno and the failing message's
    /// index, after every ack has been read so none is left for the next
    /// exchange.
    pub fn transact(&mut self, batch: Batch, what: &'static str) -> Result<(), KernelError> {
        let count = batch.len();
        let (bytes, first, end) = batch.finish();
        self.send(&bytes)?;
        let mut acked = 0usize;
        let mut first_err: Option<(i32, usize)> = None;
        let begin = first.wrapping_sub(1);
        self.recv_until(what, |m| {
            let Some(code) = m.error_code() else {
                return Ok(false);
            };
            let idx = m.seq.wrapping_sub(first) as usize;
            if m.seq == begin || m.seq == end {
                // The batch as a whole was refused (e.g. no CAP_NET_ADMIN).
                if code != 0 {
                    first_err.get_or_insert((code, 0));
                    return Ok(true);
                }
                return Ok(false);
            }
            if idx >= count {
                return Ok(false);
            }
            acked += 1;
            if code != 0 {
                first_err.get_or_insert((code, idx));
            }
            Ok(acked == count)
        })?;
        match first_err {
            None => Ok(()),
            Some((errno, index)) => Err(KernelError::Refused { what, errno, index }),
        }
    }

    /// Sends one request and collects the data messages of its answer
    /// (one message, or a dump up to `NLMSG_DONE`), calling `f` on each.
    pub fn query(
        &mut self,
        bytes: &[u8],
        seq: u32,
        dump: bool,
        what: &'static str,
        mut f: impl FnMut(Message<'_>),
    ) -> Result<(), KernelError> {
        self.send(bytes)?;
        self.recv_until(what, |m| {
            if m.seq != seq {
                return Ok(false);
            }
            match m.ty {
                NLMSG_DONE => Ok(true),
                NLMSG_ERROR => match m.error_code() {
                    Some(0) => Ok(true),
                    Some(errno) => Err(KernelError::Refused {
                        what,
                        errno,
                        index: 0,
                    }),
                    None => Err(KernelError::Malformed(what)),
                },
                _ => {
                    f(m);
                    Ok(!dump)
                }
            }
        })
    }

    /// Sends one request that asks for an ack and waits for it.
    pub fn ack(&mut self, bytes: &[u8], seq: u32, what: &'static str) -> Result<(), KernelError> {
        self.query(bytes, seq, false, what, |_| {})
    }
}

//! Netlink framing for nfnetlink: building messages and batches, walking
//! attributes, and one socket that waits for answers with a deadline.
//!
//! The layouts are those of `linux/netlink.h` and `linux/netfilter/nfnetlink.h`:
//! a 16-byte `nlmsghdr`, a 4-byte `nfgenmsg`, then attributes (`nlattr`,
//! 4-byte aligned). nf_tables and ctnetlink integers are big-endian.

// libc's numbers, at the widths the wire carries them.
pub(super) const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
pub(super) const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;
pub(super) const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
pub(super) const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
pub(super) const NLM_F_EXCL: u16 = libc::NLM_F_EXCL as u16;
pub(super) const NLM_F_CREATE: u16 = libc::NLM_F_CREATE as u16;
pub(super) const NLM_F_APPEND: u16 = libc::NLM_F_APPEND as u16;
pub(super) const NLM_F_DUMP: u16 = libc::NLM_F_DUMP as u16;
const NLA_F_NESTED: u16 = libc::NLA_F_NESTED as u16;
const NLA_TYPE_MASK: u16 = libc::NLA_TYPE_MASK as u16;
const NLMSG_HDRLEN: usize = std::mem::size_of::<libc::nlmsghdr>();

pub(super) const NFNL_SUBSYS_CTNETLINK: u16 = libc::NFNL_SUBSYS_CTNETLINK as u16;
pub(super) const NFNL_SUBSYS_ULOG: u16 = libc::NFNL_SUBSYS_ULOG as u16;
pub(super) const NFNL_SUBSYS_NFTABLES: u16 = libc::NFNL_SUBSYS_NFTABLES as u16;
const NFNL_MSG_BATCH_BEGIN: u16 = libc::NFNL_MSG_BATCH_BEGIN as u16;
const NFNL_MSG_BATCH_END: u16 = libc::NFNL_MSG_BATCH_END as u16;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Appends netlink attributes to a buffer. Nesting patches the length in
/// place, so a message is built in one pass without intermediate vectors.
#[derive(Debug, Default)]
pub(super) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An attribute with a raw payload.
    pub fn bytes(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    /// A big-endian u32 attribute (the nfnetlink convention).
    pub fn u32(&mut self, ty: u16, v: u32) {
        self.bytes(ty, &v.to_be_bytes());
    }

    /// A big-endian u64 attribute.
    pub fn u64(&mut self, ty: u16, v: u64) {
        self.bytes(ty, &v.to_be_bytes());
    }

    /// A NUL-terminated string attribute.
    pub fn str(&mut self, ty: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.bytes(ty, &v);
    }

    /// A nested attribute whose contents `f` writes.
    pub fn nested(&mut self, ty: u16, f: impl FnOnce(&mut Writer)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        f(self);
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// Starts one nfnetlink message; `end_message` fixes its length.
    fn begin_message(&mut self, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(libc::NFNETLINK_V0 as u8);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    fn end_message(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// One nfnetlink request outside a batch (a get, a dump, a conntrack delete).
pub(super) fn request(
    subsys: u16,
    msg: u16,
    flags: u16,
    seq: u32,
    family: u8,
    f: impl FnOnce(&mut Writer),
) -> Writer {
    request_to(subsys, msg, flags, seq, family, 0, f)
}

/// A request addressed to resource `res_id` (an nflog group, say).
pub(super) fn request_to(
    subsys: u16,
    msg: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    f: impl FnOnce(&mut Writer),
) -> Writer {
    let mut w = Writer::default();
    let start = w.begin_message(
        (subsys << 8) | msg,
        NLM_F_REQUEST | flags,
        seq,
        family,
        res_id,
    );
    f(&mut w);
    w.end_message(start);
    w
}

/// An nf_tables transaction: every message between BEGIN and END is
/// applied atomically, or none is. Each message asks for an ack so the
/// kernel names the one that failed.
#[derive(Debug)]
pub(super) struct Batch {
    w: Writer,
    first_seq: u32,
    next_seq: u32,
}

impl Batch {
    /// Opens a batch whose messages use sequence numbers from `seq` on.
    pub fn new(seq: u32) -> Self {
        let mut w = Writer::default();
        let start = w.begin_message(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        w.end_message(start);
        Batch {
            w,
            first_seq: seq.wrapping_add(1),
            next_seq: seq.wrapping_add(1),
        }
    }

    /// Adds one nf_tables message (`NFT_MSG_*`) for `family`.
    pub fn add(&mut self, msg: u16, family: u8, flags: u16, f: impl FnOnce(&mut Writer)) {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let start = self.w.begin_message(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            family,
            0,
        );
        f(&mut self.w);
        self.w.end_message(start);
    }

    /// Number of messages that expect an ack.
    pub fn len(&self) -> usize {
        self.next_seq.wrapping_sub(self.first_seq) as usize
    }

    /// Closes the batch; returns the bytes and the sequence numbers to ack.
    pub fn finish(mut self) -> (Vec<u8>, u32, u32) {
        let start = self.w.begin_message(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            self.next_seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        self.w.end_message(start);
        (self.w.buf, self.first_seq, self.next_seq)
    }
}

/// Attributes of a payload, in order. Truncated trailing bytes end the walk.
#[derive(Debug, Clone)]
pub(super) struct Attrs<'a>(pub &'a [u8]);

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([self.0[0], self.0[1]]) as usize;
        let ty = u16::from_ne_bytes([self.0[2], self.0[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > self.0.len() {
            self.0 = &[];
            return None;
        }
        let value = &self.0[4..len];
        self.0 = &self.0[align4(len).min(self.0.len())..];
        Some((ty, value))
    }
}

/// The first attribute of type `ty`.
pub(super) fn attr(payload: &[u8], ty: u16) -> Option<&[u8]> {
    Attrs(payload).find(|(t, _)| *t == ty).map(|(_, v)| v)
}

pub(super) fn be_u16(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}

pub(super) fn be_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

pub(super) fn be_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

/// One message as read from the socket.
#[derive(Debug, Clone, Copy)]
pub(super) struct Message<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    /// Everything after the `nlmsghdr`.
    pub body: &'a [u8],
}

impl Message<'_> {
    /// For `NLMSG_ERROR`: the errno (0 for an ack).
    pub fn error_code(&self) -> Option<i32> {
        (self.ty == NLMSG_ERROR)
            .then(|| {
                self.body
                    .get(..4)
                    .map(|b| -i32::from_ne_bytes(b.try_into().unwrap_or_default()))
            })
            .flatten()
    }

    /// The attributes after the `nfgenmsg`.
    pub fn attrs(&self) -> &[u8] {
        self.body.get(4..).unwrap_or_default()
    }
}

/// Splits a datagram into messages.
pub(super) fn messages(mut buf: &[u8]) -> impl Iterator<Item = Message<'_>> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(buf[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            buf = &[];
            return None;
        }
        let m = Message {
            ty: u16::from_ne_bytes(buf[4..6].try_into().ok()?),
            flags: u16::from_ne_bytes(buf[6..8].try_into().ok()?),
            seq: u32::from_ne_bytes(buf[8..12].try_into().ok()?),
            body: &buf[NLMSG_HDRLEN..len],
        };
        buf = &buf[align4(len).min(buf.len())..];
        Some(m)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nested_lengths_patched() {
        let mut w = Writer::default();
        w.str(1, "ab"); // 4 + 3 = 7, padded to 8
        w.nested(2, |w| w.u32(3, 0x0102_0304));
        let b = w.as_bytes();
        assert_eq!(b.len(), 8 + 4 + 8);
        assert_eq!(&b[0..8], &[7, 0, 1, 0, b'a', b'b', 0, 0]);
        assert_eq!(u16::from_ne_bytes([b[8], b[9]]), 12);
        assert_eq!(u16::from_ne_bytes([b[10], b[11]]), 2 | NLA_F_NESTED);
        assert_eq!(&b[16..20], &[1, 2, 3, 4]);
        let outer: Vec<_> = Attrs(b).collect();
        assert_eq!(outer.len(), 2);
        assert_eq!(outer[1].0, 2, "the nested flag is masked off when reading");
        assert_eq!(be_u32(attr(outer[1].1, 3).unwrap()), Some(0x0102_0304));
    }

    #[test]
    fn batch_is_framed_by_begin_and_end_with_consecutive_seqs() {
        let mut b = Batch::new(100);
        b.add(0, 1, NLM_F_CREATE, |w| w.str(1, "t"));
        b.add(2, 1, 0, |w| w.str(1, "t"));
        assert_eq!(b.len(), 2);
        let (bytes, first, end) = b.finish();
        let msgs: Vec<_> = messages(&bytes).collect();
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[0].ty, NFNL_MSG_BATCH_BEGIN);
        assert_eq!(&msgs[0].body[2..4], &NFNL_SUBSYS_NFTABLES.to_be_bytes());
        assert_eq!(msgs[3].ty, NFNL_MSG_BATCH_END);
        assert_eq!((first, end), (101, 103));
        assert_eq!(msgs[1].seq, 101);
        assert_eq!(msgs[2].seq, 102);
        assert_eq!(msgs[1].ty, NFNL_SUBSYS_NFTABLES << 8);
        assert_eq!(msgs[1].body[0], 1, "family in nfgenmsg");
    }

    #[test]
    fn truncated_input_ends_the_walk_without_panicking() {
        assert_eq!(Attrs(&[8, 0, 1, 0, 1]).count(), 0);
        assert_eq!(Attrs(&[2, 0, 1, 0]).count(), 0);
        assert_eq!(messages(&[40, 0, 0, 0, 0, 0]).count(), 0);
        let err = Message {
            flags: 0,
            ty: NLMSG_ERROR,
            seq: 1,
            body: &[1, 2],
        };
        assert_eq!(err.error_code(), None);
        let ack = Message {
            flags: 0,
            ty: NLMSG_ERROR,
            seq: 1,
            body: &(-2i32).to_ne_bytes(),
        };
        assert_eq!(ack.error_code(), Some(2));
    }
}

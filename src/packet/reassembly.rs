//! One direction of a TCP stream put back in order.
//!
//! Segments are delivered in sequence order: retransmitted and overlapping
//! bytes are trimmed, segments that arrive early wait (up to a byte and
//! count cap), and bytes that were never captured (lost before the capture
//! point, or cut by the snap length) are reported as a gap, so a reader of
//! the stream knows its position and never waits for them. A stream seen
//! without its SYN (a capture that starts mid-session) begins at the first
//! segment seen.

/// What the reassembler hands on, in stream order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Bytes of the stream.
    Data(&'a [u8]),
    /// This many bytes of the stream were not captured.
    Gap(u32),
}

/// Most out-of-order segments held at once.
const MAX_PENDING_SEGMENTS: usize = 256;

/// Puts one direction of a TCP connection back in order.
#[derive(Debug, Clone)]
pub struct Reassembler {
    next: Option<u32>,
    pending: Vec<Pending>,
    pending_bytes: usize,
    max_pending_bytes: usize,
    delivered: u64,
    gaps: u64,
}

#[derive(Debug, Clone)]
struct Pending {
    seq: u32,
    data: Vec<u8>,
    wire_len: u32,
}

/// Signed distance from `from` to `to` in sequence space.
fn distance(from: u32, to: u32) -> i64 {
    i64::from(to.wrapping_sub(from) as i32)
}

impl Reassembler {
    /// A reassembler holding at most `max_pending_bytes` of early segments.
    pub fn new(max_pending_bytes: usize) -> Reassembler {
        Reassembler {
            next: None,
            pending: Vec::new(),
            pending_bytes: 0,
            max_pending_bytes,
            delivered: 0,
            gaps: 0,
        }
    }

    /// The SYN's sequence number: the stream starts after it.
    pub fn syn(&mut self, seq: u32) {
        if self.next.is_none() {
            self.next = Some(seq.wrapping_add(1));
        }
    }

    /// Bytes handed on so far, gaps included.
    pub fn position(&self) -> u64 {
        self.delivered
    }

    /// Bytes reported as gaps so far.
    pub fn gap_bytes(&self) -> u64 {
        self.gaps
    }

    /// Bytes held out of order.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Feeds one segment: `payload` as captured, `wire_len` its length on
    /// the wire.
    pub fn push(
        &mut self,
        seq: u32,
        payload: &[u8],
        wire_len: u32,
        out: &mut impl FnMut(Piece<'_>),
    ) {
        if wire_len == 0 {
            return;
        }
        let payload = &payload[..payload.len().min(wire_len as usize)];
        let next = *self.next.get_or_insert(seq);
        if distance(next, seq) > 0 {
            let fits = self.pending.len() < MAX_PENDING_SEGMENTS
                && self.pending_bytes + payload.len() <= self.max_pending_bytes;
            if fits {
                self.pending_bytes += payload.len();
                self.pending.push(Pending {
                    seq,
                    data: payload.to_vec(),
                    wire_len,
                });
                return;
            }
            // Out of room: what is missing before the earliest held segment
            // (or this one) will not come in time; give it up as a gap.
            let earliest = self
                .pending
                .iter()
                .map(|p| p.seq)
                .chain(std::iter::once(seq))
                .min_by_key(|&s| distance(next, s))
                .unwrap_or(seq);
            let missing = distance(next, earliest).max(0) as u32;
            self.emit_gap(missing, out);
            self.drain(out);
            if distance(self.next.unwrap_or(seq), seq) > 0 {
                // Still ahead (another hole after the held ones).
                let missing = distance(self.next.unwrap_or(seq), seq) as u32;
                self.emit_gap(missing, out);
            }
        }
        self.deliver(seq, payload, wire_len, out);
        self.drain(out);
    }

    /// End of capture: whatever is held is handed on, holes as gaps.
    pub fn finish(&mut self, out: &mut impl FnMut(Piece<'_>)) {
        while !self.pending.is_empty() {
            let next = self.next.unwrap_or(0);
            let earliest = self
                .pending
                .iter()
                .map(|p| p.seq)
                .min_by_key(|&s| distance(next, s))
                .unwrap_or(next);
            let missing = distance(next, earliest).max(0) as u32;
            self.emit_gap(missing, out);
            self.drain(out);
        }
    }

    fn emit_gap(&mut self, n: u32, out: &mut impl FnMut(Piece<'_>)) {
        if n == 0 {
            return;
        }
        out(Piece::Gap(n));
        self.delivered += u64::from(n);
        self.gaps += u64::from(n);
        self.next = self.next.map(|s| s.wrapping_add(n));
    }

    /// Hands on the part of a segment at or after `next`.
    fn deliver(
        &mut self,
        seq: u32,
        payload: &[u8],
        wire_len: u32,
        out: &mut impl FnMut(Piece<'_>),
    ) {
        let next = self.next.unwrap_or(seq);
        let skip = distance(seq, next);
        if skip < 0 || skip >= i64::from(wire_len) {
            return;
        }
        let skip = skip as u32;
        if let Some(data) = payload.get(skip as usize..) {
            if !data.is_empty() {
                out(Piece::Data(data));
                self.delivered += data.len() as u64;
            }
        }
        let captured_end = (payload.len() as u32).max(skip);
        self.next = Some(next.wrapping_add(captured_end - skip));
        self.emit_gap(wire_len - captured_end, out);
    }

    /// Hands on held segments that are now in order.
    fn drain(&mut self, out: &mut impl FnMut(Piece<'_>)) {
        loop {
            let next = match self.next {
                Some(n) => n,
                None => return,
            };
            let Some(i) = self.pending.iter().position(|p| distance(next, p.seq) <= 0) else {
                return;
            };
            let p = self.pending.swap_remove(i);
            self.pending_bytes -= p.data.len();
            self.deliver(p.seq, &p.data, p.wire_len, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(r: &mut Reassembler, segs: &[(u32, &[u8])]) -> (Vec<u8>, u32) {
        let mut bytes = Vec::new();
        let mut gaps = 0;
        for &(seq, data) in segs {
            r.push(seq, data, data.len() as u32, &mut |p| match p {
                Piece::Data(d) => bytes.extend_from_slice(d),
                Piece::Gap(n) => gaps += n,
            });
        }
        r.finish(&mut |p| match p {
            Piece::Data(d) => bytes.extend_from_slice(d),
            Piece::Gap(n) => gaps += n,
        });
        (bytes, gaps)
    }

    #[test]
    fn in_order_after_syn() {
        let mut r = Reassembler::new(1 << 16);
        r.syn(99);
        assert_eq!(
            run(&mut r, &[(100, b"USER a\r\n"), (108, b"PASS b\r\n")]).0,
            b"USER a\r\nPASS b\r\n"
        );
    }

    #[test]
    fn out_of_order_and_retransmission() {
        let mut r = Reassembler::new(1 << 16);
        r.syn(0);
        let (bytes, gaps) = run(
            &mut r,
            &[
                (5, b"56789"),
                (1, b"1234"),
                (1, b"1234"),
                (3, b"345"),
                (10, b"ab"),
            ],
        );
        assert_eq!(bytes, b"123456789ab");
        assert_eq!(gaps, 0);
    }

    #[test]
    fn sequence_wraps() {
        let mut r = Reassembler::new(1 << 16);
        r.syn(u32::MAX - 2);
        let (bytes, _) = run(&mut r, &[(u32::MAX - 1, b"ab"), (0, b"cd")]);
        assert_eq!(bytes, b"abcd");
    }

    #[test]
    fn mid_session_start_and_hole_at_end() {
        let mut r = Reassembler::new(1 << 16);
        let (bytes, gaps) = run(&mut r, &[(500, b"abc"), (510, b"xyz")]);
        assert_eq!(bytes, b"abcxyz");
        assert_eq!(gaps, 7);
    }

    #[test]
    fn snap_cut_segment_is_a_gap() {
        let mut r = Reassembler::new(1 << 16);
        r.syn(0);
        let mut got = Vec::new();
        r.push(1, b"abc", 10, &mut |p| got.push(format!("{p:?}")));
        r.push(11, b"z", 1, &mut |p| got.push(format!("{p:?}")));
        assert_eq!(got, ["Data([97, 98, 99])", "Gap(7)", "Data([122])"]);
        assert_eq!(r.position(), 11);
    }

    #[test]
    fn bounded_when_a_hole_never_fills() {
        let mut r = Reassembler::new(100);
        r.syn(0);
        let mut delivered = 0u64;
        for i in 0..10_000u32 {
            r.push(1000 + i * 50, &[b'x'; 50], 50, &mut |p| {
                if let Piece::Data(d) = p {
                    delivered += d.len() as u64
                }
            });
            assert!(r.pending_bytes() <= 100);
        }
        assert!(delivered >= 9_990 * 50, "{delivered}");
        assert!(r.gap_bytes() >= 999);
    }
}

//! Control-channel line framing.
//!
//! FTP control lines end in CRLF (bare LF is tolerated: real servers and
//! clients send it). The framer never buffers more than the configured cap:
//! a longer line is reported once as [`Frame::TooLong`] and the rest of it is
//! dropped up to its end. Telnet IAC sequences are tracked so that an option
//! byte that happens to be LF does not split a line, and so that the parsed
//! text of `IAC IP IAC DM ABOR` is plain `ABOR`.

use std::borrow::Cow;

/// Telnet "interpret as command".
pub const IAC: u8 = 255;
/// Telnet interrupt process.
pub const IP: u8 = 244;
/// Telnet data mark (the synch signal).
pub const DM: u8 = 242;
const WILL: u8 = 251;
const DONT: u8 = 254;

/// Default cap on one control line, terminator included.
pub const DEFAULT_MAX_LINE: usize = 2048;

/// One complete control line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The bytes as received, without the line terminator; telnet
    /// sequences included, so a line forwarded unchanged is byte-exact.
    pub raw: Vec<u8>,
    has_iac: bool,
}

impl Line {
    /// Builds a line from bytes without terminator (tests, synthetic input).
    pub fn new(raw: impl Into<Vec<u8>>) -> Line {
        let raw = raw.into();
        let has_iac = raw.contains(&IAC);
        Line { raw, has_iac }
    }

    /// The line's text with telnet commands removed and `IAC IAC` unescaped:
    /// what the parsers read.
    pub fn text(&self) -> Cow<'_, [u8]> {
        if !self.has_iac {
            return Cow::Borrowed(&self.raw);
        }
        let mut out = Vec::with_capacity(self.raw.len());
        let mut i = 0;
        while i < self.raw.len() {
            if self.raw[i] != IAC {
                out.push(self.raw[i]);
                i += 1;
                continue;
            }
            match self.raw.get(i + 1) {
                Some(&IAC) => {
                    out.push(IAC);
                    i += 2;
                }
                Some(&c) if (WILL..=DONT).contains(&c) => i += 3,
                Some(_) => i += 2,
                None => i += 1,
            }
        }
        Cow::Owned(out)
    }

    /// Whether the line carried telnet commands other than escaped 255 bytes
    /// (IP and DM precede ABOR).
    pub fn has_telnet_commands(&self) -> bool {
        self.has_iac && self.raw.windows(2).any(|w| w[0] == IAC && w[1] != IAC)
    }
}

/// What the framer produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line.
    Line(Line),
    /// A line longer than the cap; its first `cap` bytes, the rest dropped.
    TooLong {
        /// The bytes kept.
        prefix: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telnet {
    Data,
    Iac,
    Option,
}

/// Splits a byte stream into control lines under a length cap.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    max: usize,
    discarding: bool,
    telnet: Telnet,
    has_iac: bool,
}

impl LineFramer {
    /// A framer that accepts lines of at most `max_line` bytes, terminator
    /// included.
    pub fn new(max_line: usize) -> LineFramer {
        LineFramer {
            buf: Vec::new(),
            max: max_line.max(4),
            discarding: false,
            telnet: Telnet::Data,
            has_iac: false,
        }
    }

    /// Bytes of the current, incomplete line held so far.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the incomplete line held so far (used when the control channel
    /// stops being line-based, as after `AUTH TLS` passes through).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Feeds bytes; complete lines and over-long reports go to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<Frame>) {
        let mut rest = input;
        while !rest.is_empty() {
            if self.discarding {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(p) => {
                        self.discarding = false;
                        self.telnet = Telnet::Data;
                        rest = &rest[p + 1..];
                    }
                    None => return,
                }
                continue;
            }
            // Fast path: no telnet state pending and no IAC in sight.
            if self.telnet == Telnet::Data {
                let lf = rest.iter().position(|&b| b == b'\n' || b == IAC);
                match lf {
                    Some(p) if rest[p] == b'\n' => {
                        if !self.append(&rest[..p], out) {
                            rest = &rest[p..];
                            continue;
                        }
                        self.finish_line(out);
                        rest = &rest[p + 1..];
                        continue;
                    }
                    Some(p) => {
                        if !self.append(&rest[..=p], out) {
                            rest = &rest[p..];
                            continue;
                        }
                        self.has_iac = true;
                        self.telnet = Telnet::Iac;
                        rest = &rest[p + 1..];
                        continue;
                    }
                    None => {
                        self.append(rest, out);
                        return;
                    }
                }
            }
            let b = rest[0];
            rest = &rest[1..];
            if !self.append(&[b], out) {
                continue;
            }
            self.telnet = match (self.telnet, b) {
                (Telnet::Iac, c) if (WILL..=DONT).contains(&c) => Telnet::Option,
                _ => Telnet::Data,
            };
        }
    }

    /// Appends to the current line; on overflow reports it, switches to
    /// discarding and returns false.
    fn append(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> bool {
        // One byte of the cap is reserved for the LF that ends the line.
        if self.buf.len() + bytes.len() >= self.max {
            let keep = self
                .max
                .saturating_sub(1)
                .saturating_sub(self.buf.len())
                .min(bytes.len());
            self.buf.extend_from_slice(&bytes[..keep]);
            let prefix = std::mem::take(&mut self.buf);
            out.push(Frame::TooLong { prefix });
            self.discarding = true;
            self.has_iac = false;
            return false;
        }
        self.buf.extend_from_slice(bytes);
        true
    }

    fn finish_line(&mut self, out: &mut Vec<Frame>) {
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let raw = std::mem::take(&mut self.buf);
        out.push(Frame::Line(Line {
            raw,
            has_iac: std::mem::take(&mut self.has_iac),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut f = LineFramer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        out
    }

    fn line(s: &[u8]) -> Frame {
        Frame::Line(Line::new(s))
    }

    #[test]
    fn crlf_and_bare_lf() {
        assert_eq!(
            frames(64, &[b"USER a\r\nPASS b\nNOOP\r\n"]),
            vec![line(b"USER a"), line(b"PASS b"), line(b"NOOP")]
        );
    }

    #[test]
    fn split_anywhere() {
        assert_eq!(
            frames(64, &[b"US", b"ER a\r", b"\n", b"PA"]),
            vec![line(b"USER a")]
        );
    }

    #[test]
    fn too_long_is_reported_once_and_skipped() {
        let big = vec![b'A'; 10 * 1024];
        let out = frames(2048, &[&big, b"\r\nNOOP\r\n"]);
        assert_eq!(out.len(), 2);
        match &out[0] {
            Frame::TooLong { prefix } => assert_eq!(prefix.len(), 2047),
            other => panic!("{other:?}"),
        }
        assert_eq!(out[1], line(b"NOOP"));
    }

    #[test]
    fn exactly_at_cap() {
        // 6 bytes + CRLF = 8 bytes: fits a cap of 8, not of 7.
        assert_eq!(frames(8, &[b"ABCDEF\r\n"]), vec![line(b"ABCDEF")]);
        assert!(matches!(
            frames(7, &[b"ABCDEF\r\n"])[0],
            Frame::TooLong { .. }
        ));
    }

    #[test]
    fn telnet_abort_sequence() {
        let out = frames(64, &[&[IAC, IP, IAC, DM], b"ABOR\r\n"]);
        let Frame::Line(l) = &out[0] else { panic!() };
        assert_eq!(&*l.text(), b"ABOR");
        assert_eq!(l.raw, [&[IAC, IP, IAC, DM][..], b"ABOR"].concat());
        assert!(l.has_telnet_commands());
    }

    #[test]
    fn telnet_escaped_255_and_option_lf() {
        // IAC WILL LF must not end the line; IAC IAC is a literal 255.
        let out = frames(
            64,
            &[b"RETR a", &[IAC, IAC], b"b", &[IAC, WILL, b'\n'], b"c\r\n"],
        );
        assert_eq!(out.len(), 1);
        let Frame::Line(l) = &out[0] else { panic!() };
        assert_eq!(&*l.text(), b"RETR a\xffbc");
        assert!(l.has_telnet_commands());
    }

    #[test]
    fn iac_in_the_middle_of_a_command() {
        let out = frames(64, &[b"NO", &[IAC, IP], b"OP\r\n"]);
        let Frame::Line(l) = &out[0] else { panic!() };
        assert_eq!(&*l.text(), b"NOOP");
    }

    #[test]
    fn nul_and_invalid_utf8_are_carried() {
        let out = frames(64, &[b"RETR \x00\xc3\x28\r\n"]);
        assert_eq!(out, vec![line(b"RETR \x00\xc3\x28")]);
    }
}

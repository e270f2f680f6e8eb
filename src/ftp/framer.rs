//! Control-channel line framing.
//!
//! FTP control lines end in CRLF (bare LF is tolerated: real servers and
//! clients send it). The framer never buffers more than the configured cap:
//! a longer line is reported once as [`Frame::TooLong`] and the rest of it is
//! dropped up to its end.
//!
//! Telnet IAC sequences are tracked so that the option byte of a
//! negotiation does not split a line; every other LF ends the line, even
//! right after an IAC, because that is where a server splitting at LF ends
//! it. [`Line::decode`] then accepts only what FTP clients really send and
//! yields the text the policy checks; [`encode_line`] turns that text back
//! into the only bytes the gateway forwards, so the server never sees bytes
//! the gateway did not check.

use std::borrow::Cow;
use std::fmt;
use thiserror::Error;

use crate::ftp::redact::Redacted;

pub use crate::ftp::telnet::{DM, IAC, IP};
pub(crate) use crate::ftp::telnet::{DONT, WILL};
/// The lowest telnet command code (SE); bytes below are data.
const FIRST_COMMAND: u8 = 240;

/// Default cap on one control line, terminator included.
pub const DEFAULT_MAX_LINE: usize = 2048;

/// Why a line's telnet content is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TelnetError {
    /// An IAC with nothing after it in the line (the line ended, possibly at
    /// an LF the IAC tried to hide).
    #[error("IAC at the end of the line")]
    Dangling,
    /// A telnet command after the command text has begun.
    #[error("telnet command {0} inside the command text")]
    InLine(u8),
    /// A telnet command no FTP client sends (NOP, AYT, SB, ...).
    #[error("telnet command {0} that FTP clients do not send")]
    Unsupported(u8),
}

impl TelnetError {
    /// The reason without the byte that caused it, for a line that may
    /// carry a password: that byte is part of the line's text.
    pub fn without_byte(&self) -> &'static str {
        match self {
            TelnetError::Dangling => "IAC at the end of the line",
            TelnetError::InLine(_) => "telnet command inside the command text",
            TelnetError::Unsupported(_) => "telnet command that FTP clients do not send",
        }
    }
}

/// What the gateway checks of a client line, and all it forwards of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked<'a> {
    /// The command text: telnet commands removed, `IAC IAC` as one 255.
    pub text: Cow<'a, [u8]>,
    /// The line began with the telnet synch (IP and/or DM) that precedes
    /// ABOR.
    pub synch: bool,
}

/// One complete control line. Its `Debug` masks a password (see
/// [`crate::ftp::redact`]), so a line may be logged with `?`.
#[derive(Clone, PartialEq, Eq)]
pub struct Line {
    /// The bytes as received, without the line terminator, telnet
    /// sequences included. Server replies are passed on as they came; client
    /// lines are never forwarded from here but re-encoded from
    /// [`Line::decode`].
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

    /// The line as an FTP client may send it: `IAC IAC` anywhere (a literal
    /// 255), and before the command text only the synch (`IAC IP`,
    /// `IAC DM`, or `IAC IP IAC` whose DM went as TCP urgent data and was
    /// taken out of the stream) and option negotiation (`IAC WILL|WONT|DO|
    /// DONT <option>`). Anything else is refused: a server may read telnet
    /// sequences differently from the gateway, so a line is only safe when
    /// what the gateway checks is exactly what it forwards.
    pub fn decode(&self) -> Result<Checked<'_>, TelnetError> {
        if !self.has_iac {
            return Ok(Checked {
                text: Cow::Borrowed(&self.raw),
                synch: false,
            });
        }
        let raw = &self.raw;
        let mut out = Vec::with_capacity(raw.len());
        let mut synch = false;
        let mut after_ip = false;
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            if b != IAC {
                out.push(b);
                after_ip = false;
                i += 1;
                continue;
            }
            // Before the text only: negotiation is "outside a line", and the
            // synch precedes the command it interrupts for.
            let at_start = out.is_empty();
            match raw.get(i + 1).copied() {
                None => return Err(TelnetError::Dangling),
                Some(IAC) => {
                    out.push(IAC);
                    after_ip = false;
                    i += 2;
                }
                Some(c @ (IP | DM)) if at_start => {
                    synch = true;
                    after_ip = c == IP;
                    i += 2;
                }
                Some(WILL..=DONT) if at_start => {
                    if i + 2 >= raw.len() {
                        return Err(TelnetError::Dangling);
                    }
                    after_ip = false;
                    i += 3;
                }
                // IAC IP IAC, then the text: the DM was sent urgent.
                Some(c) if at_start && after_ip && c < FIRST_COMMAND => {
                    after_ip = false;
                    i += 1;
                }
                Some(c) if at_start => return Err(TelnetError::Unsupported(c)),
                Some(c) => return Err(TelnetError::InLine(c)),
            }
        }
        Ok(Checked {
            text: Cow::Owned(out),
            synch,
        })
    }
}

/// The bytes forwarded for a checked command `text`: 255 doubled, CRLF
/// appended, and with `synch` the `IAC IP IAC DM` that tells the server to
/// look for ABOR (sent in line; servers read it there too).
pub fn encode_line(text: &[u8], synch: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 6);
    if synch {
        out.extend_from_slice(&[IAC, IP, IAC, DM]);
    }
    for part in text.split_inclusive(|&b| b == IAC) {
        out.extend_from_slice(part);
        if part.last() == Some(&IAC) {
            out.push(IAC);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Line")
            .field("raw", &Redacted(&self.raw))
            .finish_non_exhaustive()
    }
}

/// What the framer produces. Its `Debug` masks a password, as [`Line`]'s.
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line.
    Line(Line),
    /// A line longer than the cap; its first `cap` bytes, the rest dropped.
    TooLong {
        /// The bytes kept.
        prefix: Vec<u8>,
    },
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Line(line) => f.debug_tuple("Line").field(line).finish(),
            Frame::TooLong { prefix } => f
                .debug_struct("TooLong")
                .field("prefix", &Redacted(prefix))
                .finish(),
        }
    }
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
            if self.telnet == Telnet::Iac && b == b'\n' {
                // IAC LF is no telnet sequence: the LF ends the line (which
                // then fails to decode), as it does for the server.
                self.telnet = Telnet::Data;
                self.finish_line(out);
                continue;
            }
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
        self.telnet = Telnet::Data;
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

    fn decoded(raw: &[u8]) -> Result<(Vec<u8>, bool), TelnetError> {
        Line::new(raw)
            .decode()
            .map(|c| (c.text.into_owned(), c.synch))
    }

    #[test]
    fn telnet_abort_sequence() {
        let out = frames(64, &[&[IAC, IP, IAC, DM], b"ABOR\r\n"]);
        let Frame::Line(l) = &out[0] else { panic!() };
        assert_eq!(l.raw, [&[IAC, IP, IAC, DM][..], b"ABOR"].concat());
        assert_eq!(decoded(&l.raw), Ok((b"ABOR".to_vec(), true)));
        // DM sent as urgent data never reaches the stream.
        assert_eq!(
            decoded(&[IAC, IP, IAC, b'A', b'B', b'O', b'R']),
            Ok((b"ABOR".to_vec(), true))
        );
        assert_eq!(decoded(&[IAC, DM, b'A']), Ok((b"A".to_vec(), true)));
    }

    #[test]
    fn telnet_escaped_255_and_negotiation_before_the_text() {
        // IAC WILL LF before the text must not end the line; IAC IAC is a
        // literal 255.
        let out = frames(64, &[&[IAC, WILL, b'\n'], b"RETR a", &[IAC, IAC], b"b\r\n"]);
        assert_eq!(out.len(), 1, "{out:?}");
        let Frame::Line(l) = &out[0] else { panic!() };
        assert_eq!(decoded(&l.raw), Ok((b"RETR a\xffb".to_vec(), false)));
    }

    #[test]
    fn telnet_commands_inside_the_text_are_refused() {
        assert_eq!(decoded(b"NO\xff\xf4OP"), Err(TelnetError::InLine(IP)));
        assert_eq!(
            decoded(b"NOOP \xff\xfb\x01"),
            Err(TelnetError::InLine(WILL))
        );
        assert_eq!(decoded(b"RETR a\xff"), Err(TelnetError::Dangling));
        assert_eq!(decoded(b"\xff\xfb"), Err(TelnetError::Dangling));
        assert_eq!(decoded(b"\xff\xf1NOOP"), Err(TelnetError::Unsupported(241)));
        // A lone IAC is allowed only where an urgent DM left it.
        assert_eq!(decoded(b"\xffABOR"), Err(TelnetError::Unsupported(b'A')));
        assert_eq!(
            decoded(b"\xff\xf4\xff\xffABOR"),
            Ok((b"\xffABOR".to_vec(), true))
        );
    }

    #[test]
    fn encode_doubles_255_and_adds_the_synch() {
        assert_eq!(
            encode_line(b"RETR \xff\xff", false),
            b"RETR \xff\xff\xff\xff\r\n"
        );
        assert_eq!(encode_line(b"ABOR", true), b"\xff\xf4\xff\xf2ABOR\r\n");
        for raw in [&b"RETR a\xff\xffb"[..], b"\xff\xf4\xff\xf2ABOR", b"plain"] {
            let l = Line::new(raw);
            let c = l.decode().unwrap();
            let wire = encode_line(&c.text, c.synch);
            assert_eq!(&wire[..wire.len() - 2], raw);
        }
    }

    #[test]
    fn lf_after_iac_ends_the_line() {
        // A server splitting at LF sees two lines: so must the gateway.
        let out = frames(64, &[b"X\xff\nDELE f\r\n"]);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[1], line(b"DELE f"));
    }

    #[test]
    fn nul_and_invalid_utf8_are_carried() {
        let out = frames(64, &[b"RETR \x00\xc3\x28\r\n"]);
        assert_eq!(out, vec![line(b"RETR \x00\xc3\x28")]);
    }
}

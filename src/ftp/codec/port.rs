//! `PORT h1,h2,h3,h4,p1,p2` (RFC 959) and the 227 reply that carries the same tuple.

use super::{octet, trim, CodecError};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;

/// An address found inside a reply, with where it stands in the text so a
/// rewriter can replace exactly those bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<A> {
    /// The decoded address.
    pub addr: A,
    /// Byte range of the encoded address within the searched text.
    pub span: Range<usize>,
}

/// Parses the argument of `PORT`: six decimal bytes separated by commas.
pub fn parse_port(arg: &[u8]) -> Result<SocketAddrV4, CodecError> {
    let arg = trim(arg);
    let fields: Vec<&[u8]> = arg.split(|&b| b == b',').collect();
    if fields.len() != 6 {
        return Err(CodecError::FieldCount {
            expected: 6,
            found: fields.len(),
        });
    }
    let mut bytes = [0u8; 6];
    for (i, f) in fields.iter().enumerate() {
        bytes[i] = octet(trim(f), i)?;
    }
    tuple_to_addr(bytes)
}

fn tuple_to_addr(b: [u8; 6]) -> Result<SocketAddrV4, CodecError> {
    let port = u16::from_be_bytes([b[4], b[5]]);
    if port == 0 {
        return Err(CodecError::PortZero);
    }
    Ok(SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        port,
    ))
}

/// Encodes an address as the six-number tuple used by `PORT` and 227.
pub fn encode_port(addr: SocketAddrV4) -> String {
    let [a, b, c, d] = addr.ip().octets();
    let [p1, p2] = addr.port().to_be_bytes();
    format!("{a},{b},{c},{d},{p1},{p2}")
}

/// Finds the host-port tuple in the text of a 227 reply.
///
/// Accepts every form seen in the wild: `(h1,...,p2)`, no parentheses,
/// `=h1,...`, any case and trailing punctuation, spaces after commas. The
/// first run of six comma-separated numbers wins; a run whose numbers are out
/// of range is an error rather than a reason to keep looking, so a malformed
/// address is never silently replaced by a later, different one.
pub fn find_227(text: &[u8]) -> Result<Found<SocketAddrV4>, CodecError> {
    let mut i = 0;
    while i < text.len() {
        if text[i].is_ascii_digit() && (i == 0 || !text[i - 1].is_ascii_digit()) {
            if let Some((values, end)) = number_run(text, i) {
                if values.len() >= 6 {
                    let mut bytes = [0u8; 6];
                    for (k, &v) in values.iter().take(6).enumerate() {
                        bytes[k] = u8::try_from(v)
                            .map_err(|_| CodecError::OctetRange { index: k, value: v })?;
                    }
                    let addr = tuple_to_addr(bytes)?;
                    return Ok(Found {
                        addr,
                        span: i..end[5],
                    });
                }
            }
        }
        i += 1;
    }
    Err(CodecError::NotFound)
}

/// Reads numbers separated by `,` (optionally followed by spaces) from `start`.
/// Returns the values and the end offset of each number.
pub(super) fn number_run(text: &[u8], start: usize) -> Option<(Vec<u32>, Vec<usize>)> {
    let mut values = Vec::new();
    let mut ends = Vec::new();
    let mut i = start;
    loop {
        let begin = i;
        let mut v: u32 = 0;
        // Octets have at most three digits; a longer run is not a field.
        while i < text.len() && text[i].is_ascii_digit() && i - begin < 3 {
            v = v * 10 + u32::from(text[i] - b'0');
            i += 1;
        }
        if i == begin || (i < text.len() && text[i].is_ascii_digit()) {
            break;
        }
        values.push(v);
        ends.push(i);
        if i < text.len() && text[i] == b',' {
            let mut j = i + 1;
            while j < text.len() && text[j] == b' ' {
                j += 1;
            }
            if j < text.len() && text[j].is_ascii_digit() {
                i = j;
                continue;
            }
        }
        break;
    }
    if values.is_empty() {
        None
    } else {
        Some((values, ends))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn port_argument() {
        assert_eq!(parse_port(b"192,168,1,2,4,1"), Ok(a("192.168.1.2:1025")));
        assert_eq!(
            parse_port(b" 100,64,0,2,200,10 "),
            Ok(a("100.64.0.2:51210"))
        );
        assert_eq!(parse_port(b"100,64,0,2,255,255"), Ok(a("100.64.0.2:65535")));
    }

    #[test]
    fn port_argument_rejects() {
        assert_eq!(
            parse_port(b"256,1,1,1,4,1"),
            Err(CodecError::OctetRange {
                index: 0,
                value: 256
            })
        );
        assert_eq!(parse_port(b"1,1,1,1,0,0"), Err(CodecError::PortZero));
        assert_eq!(
            parse_port(b"1,1,1,1,4"),
            Err(CodecError::FieldCount {
                expected: 6,
                found: 5
            })
        );
        assert_eq!(
            parse_port(b"1,1,1,1,4,1,7"),
            Err(CodecError::FieldCount {
                expected: 6,
                found: 7
            })
        );
        assert_eq!(
            parse_port(b"1,,1,1,4,1"),
            Err(CodecError::NotANumber { index: 1 })
        );
        assert_eq!(
            parse_port(b"1,a,1,1,4,1"),
            Err(CodecError::NotANumber { index: 1 })
        );
        assert_eq!(
            parse_port(b"1,1,1,1,4,1\0"),
            Err(CodecError::NotANumber { index: 5 })
        );
        assert_eq!(
            parse_port(b"1,1,1,1,-4,1"),
            Err(CodecError::NotANumber { index: 4 })
        );
        assert_eq!(
            parse_port(b"0001,1,1,1,4,1"),
            Err(CodecError::NotANumber { index: 0 })
        );
        assert_eq!(
            parse_port(b""),
            Err(CodecError::FieldCount {
                expected: 6,
                found: 1
            })
        );
    }

    #[test]
    fn encode() {
        assert_eq!(encode_port(a("198.51.100.1:1025")), "198,51,100,1,4,1");
    }

    #[test]
    fn reply_forms_in_the_wild() {
        let want = a("192.168.1.2:1025");
        for text in [
            &b"Entering Passive Mode (192,168,1,2,4,1)"[..],
            b"Entering Passive Mode (192,168,1,2,4,1).",
            b"entering passive mode (192,168,1,2,4,1)",
            b"192,168,1,2,4,1",
            b"Entering Passive Mode 192,168,1,2,4,1",
            b"=192,168,1,2,4,1",
            b"Passive mode OK =192,168,1,2,4,1 ok",
            b"Entering Passive Mode (192, 168, 1, 2, 4, 1)",
            b"Entering Passive Mode (192,168,1,2,4,1,99)",
        ] {
            assert_eq!(
                find_227(text).map(|f| f.addr),
                Ok(want),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        let f = find_227(b"Entering Passive Mode (192,168,1,2,4,1).").unwrap();
        assert_eq!(
            &b"Entering Passive Mode (192,168,1,2,4,1)."[f.span],
            b"192,168,1,2,4,1"
        );
    }

    #[test]
    fn reply_all_zero_address_is_reported_as_such() {
        // The caller substitutes the control connection's address.
        let f = find_227(b"Entering Passive Mode (0,0,0,0,195,80)").unwrap();
        assert_eq!(f.addr, a("0.0.0.0:50000"));
    }

    #[test]
    fn reply_skips_numbers_that_are_not_a_tuple() {
        let f = find_227(b"Entering Passive Mode 2 (10,1,2,3,4,1)").unwrap();
        assert_eq!(f.addr, a("10.1.2.3:1025"));
    }

    #[test]
    fn reply_fields_are_octets_of_at_most_three_digits() {
        // Found by the `port` fuzz target: "0022" was read as 22 here but
        // refused by parse_port.
        assert_eq!(
            find_227(b"\xf1,2,2,2,2,22,0022,00"),
            Err(CodecError::NotFound)
        );
        assert_eq!(
            find_227(b"(010,001,002,003,004,001)").map(|f| f.addr),
            Ok(a("10.1.2.3:1025"))
        );
    }

    #[test]
    fn reply_rejects() {
        assert_eq!(
            find_227(b"Entering Passive Mode"),
            Err(CodecError::NotFound)
        );
        assert_eq!(find_227(b"(1,2,3,4,5)"), Err(CodecError::NotFound));
        assert_eq!(
            find_227(b"(1,2,300,4,5,6)"),
            Err(CodecError::OctetRange {
                index: 2,
                value: 300
            })
        );
        assert_eq!(find_227(b"(1,2,3,4,0,0)"), Err(CodecError::PortZero));
        assert_eq!(find_227(b"(1,2,3,4,12345,6)"), Err(CodecError::NotFound));
    }
}

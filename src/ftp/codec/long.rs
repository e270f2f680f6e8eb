//! `LPRT af,hal,h1,...,pal,p1,p2` and the 228 reply (RFC 1639).

use super::port::number_run;
use super::{octet, trim, CodecError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Parses the argument of `LPRT`.
pub fn parse_lprt(arg: &[u8]) -> Result<SocketAddr, CodecError> {
    let arg = trim(arg);
    let fields: Vec<&[u8]> = arg.split(|&b| b == b',').collect();
    let mut bytes = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        bytes.push(octet(trim(f), i)?);
    }
    decode(&bytes)
}

fn decode(b: &[u8]) -> Result<SocketAddr, CodecError> {
    let (&af, rest) = b.split_first().ok_or(CodecError::FieldCount {
        expected: 9,
        found: 0,
    })?;
    let hal = match af {
        4 => 4usize,
        6 => 16,
        other => return Err(CodecError::Family(u32::from(other))),
    };
    let expected = 1 + 1 + hal + 1 + 2;
    if b.len() != expected {
        return Err(CodecError::FieldCount {
            expected,
            found: b.len(),
        });
    }
    if usize::from(rest[0]) != hal {
        return Err(CodecError::Length(u32::from(rest[0])));
    }
    let host = &rest[1..=hal];
    let pal = rest[1 + hal];
    if pal != 2 {
        return Err(CodecError::Length(u32::from(pal)));
    }
    let port = u16::from_be_bytes([rest[2 + hal], rest[3 + hal]]);
    if port == 0 {
        return Err(CodecError::PortZero);
    }
    let ip = if hal == 4 {
        IpAddr::V4(Ipv4Addr::new(host[0], host[1], host[2], host[3]))
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(host);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    Ok(SocketAddr::new(ip, port))
}

/// Encodes an address in the long form used by `LPRT` and 228.
pub fn encode_lprt(addr: SocketAddr) -> String {
    let [p1, p2] = addr.port().to_be_bytes();
    let (af, host): (u8, Vec<u8>) = match addr.ip() {
        IpAddr::V4(v4) => (4, v4.octets().to_vec()),
        IpAddr::V6(v6) => (6, v6.octets().to_vec()),
    };
    let mut out = format!("{af},{}", host.len());
    for h in host {
        out.push_str(&format!(",{h}"));
    }
    out.push_str(&format!(",2,{p1},{p2}"));
    out
}

/// Finds the long address in a 228 reply, e.g.
/// `Entering Long Passive Mode (4,4,198,51,100,10,2,4,1)`.
pub fn find_228(text: &[u8]) -> Result<SocketAddr, CodecError> {
    let mut i = 0;
    while i < text.len() {
        if text[i].is_ascii_digit() && (i == 0 || !text[i - 1].is_ascii_digit()) {
            if let Some((values, _)) = number_run(text, i) {
                if values.len() >= 9 && matches!(values[0], 4 | 6) {
                    let mut bytes = Vec::with_capacity(values.len());
                    for (k, &v) in values.iter().enumerate() {
                        bytes.push(
                            u8::try_from(v)
                                .map_err(|_| CodecError::OctetRange { index: k, value: v })?,
                        );
                    }
                    return decode(&bytes);
                }
            }
        }
        i += 1;
    }
    Err(CodecError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lprt_v4_and_v6() {
        assert_eq!(
            parse_lprt(b"4,4,100,64,0,2,2,4,1"),
            Ok("100.64.0.2:1025".parse().unwrap())
        );
        let v6 = "[2001:db8:1::2]:5282".parse().unwrap();
        assert_eq!(parse_lprt(encode_lprt(v6).as_bytes()), Ok(v6));
        assert_eq!(
            encode_lprt("1.2.3.4:258".parse().unwrap()),
            "4,4,1,2,3,4,2,1,2"
        );
    }

    #[test]
    fn lprt_rejects() {
        assert_eq!(parse_lprt(b"5,4,1,2,3,4,2,4,1"), Err(CodecError::Family(5)));
        assert_eq!(parse_lprt(b"4,5,1,2,3,4,2,4,1"), Err(CodecError::Length(5)));
        assert_eq!(parse_lprt(b"4,4,1,2,3,4,3,4,1"), Err(CodecError::Length(3)));
        assert_eq!(parse_lprt(b"4,4,1,2,3,4,2,0,0"), Err(CodecError::PortZero));
        assert_eq!(
            parse_lprt(b"4,4,1,2,3,4,2,4"),
            Err(CodecError::FieldCount {
                expected: 9,
                found: 8
            })
        );
        assert_eq!(
            parse_lprt(b"4,4,1,2,3,256,2,4,1"),
            Err(CodecError::OctetRange {
                index: 5,
                value: 256
            })
        );
        assert_eq!(parse_lprt(b""), Err(CodecError::NotANumber { index: 0 }));
    }

    #[test]
    fn reply_228() {
        assert_eq!(
            find_228(b"Entering Long Passive Mode (4,4,198,51,100,10,2,4,1)"),
            Ok("198.51.100.10:1025".parse().unwrap())
        );
        assert_eq!(
            find_228(b"Entering Long Passive Mode"),
            Err(CodecError::NotFound)
        );
    }
}

//! `EPRT |af|addr|port|` and the 229 reply `(|||port|)` (RFC 2428).

use super::{decimal, port_number, trim, CodecError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// RFC 2428 allows any printable ASCII character (33..=126) as delimiter.
fn valid_delimiter(d: u8) -> bool {
    (33..=126).contains(&d) && !d.is_ascii_alphanumeric()
}

/// Parses the argument of `EPRT`, with whatever delimiter the client chose.
pub fn parse_eprt(arg: &[u8]) -> Result<SocketAddr, CodecError> {
    let arg = trim(arg);
    let Some(&d) = arg.first() else {
        return Err(CodecError::Delimiter);
    };
    if !valid_delimiter(d) || arg.last() != Some(&d) {
        return Err(CodecError::Delimiter);
    }
    let fields: Vec<&[u8]> = arg.split(|&b| b == d).collect();
    // "|1|a|p|" splits into ["", "1", "a", "p", ""].
    if fields.len() != 5 {
        return Err(CodecError::Delimiter);
    }
    let family = decimal(fields[1], 0, 3)?;
    let text = std::str::from_utf8(fields[2]).map_err(|_| CodecError::Address)?;
    let ip = match family {
        1 => IpAddr::V4(text.parse::<Ipv4Addr>().map_err(|_| CodecError::Address)?),
        2 => IpAddr::V6(text.parse::<Ipv6Addr>().map_err(|_| CodecError::Address)?),
        other => return Err(CodecError::Family(other)),
    };
    let port = port_number(fields[3], 2)?;
    Ok(SocketAddr::new(ip, port))
}

/// Encodes an address as an `EPRT` argument with the `|` delimiter.
pub fn encode_eprt(addr: SocketAddr) -> String {
    let af = if addr.is_ipv4() { 1 } else { 2 };
    format!("|{af}|{}|{}|", addr.ip(), addr.port())
}

/// What a 229 reply carries: a port, and (only from non-conforming servers)
/// an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedPassive {
    /// The data port on the server.
    pub port: u16,
    /// An address, when the server filled in the fields RFC 2428 leaves empty.
    pub addr: Option<IpAddr>,
}

/// Finds the port in a 229 reply.
///
/// The standard form is `(|||port|)`; servers also send other delimiters
/// (`(!!!port!)`), a missing field (`(||port|)`), or filled-in fields
/// (`(|1|addr|port|)`).
pub fn find_229(text: &[u8]) -> Result<ExtendedPassive, CodecError> {
    let open = text
        .iter()
        .position(|&b| b == b'(')
        .ok_or(CodecError::NotFound)?;
    let inner = &text[open + 1..];
    let close = inner
        .iter()
        .position(|&b| b == b')')
        .ok_or(CodecError::NotFound)?;
    let inner = &inner[..close];
    let Some(&d) = inner.first() else {
        return Err(CodecError::NotFound);
    };
    // A lone delimiter, "(|)", opens and closes nothing.
    if !valid_delimiter(d) || inner.len() < 2 || inner.last() != Some(&d) {
        return Err(CodecError::Delimiter);
    }
    let fields: Vec<&[u8]> = inner[1..inner.len() - 1].split(|&b| b == d).collect();
    let (port_field, addr_field) = match fields.as_slice() {
        [af, addr, port] => {
            let addr = if addr.is_empty() {
                None
            } else {
                let text = std::str::from_utf8(addr).map_err(|_| CodecError::Address)?;
                let ip: IpAddr = text.parse().map_err(|_| CodecError::Address)?;
                match (decimal(af, 0, 3), ip) {
                    (Ok(1), IpAddr::V4(_)) | (Ok(2), IpAddr::V6(_)) => {}
                    _ if af.is_empty() => {}
                    _ => return Err(CodecError::Address),
                }
                Some(ip)
            };
            (*port, addr)
        }
        [_, port] | [port] => (*port, None),
        _ => return Err(CodecError::Delimiter),
    };
    let port = port_number(port_field, 0)?;
    Ok(ExtendedPassive {
        port,
        addr: addr_field,
    })
}

/// Encodes the standard 229 reply text for a port.
pub fn encode_229(port: u16) -> String {
    format!("Entering Extended Passive Mode (|||{port}|)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eprt_forms() {
        assert_eq!(
            parse_eprt(b"|1|132.235.1.2|6275|"),
            Ok("132.235.1.2:6275".parse().unwrap())
        );
        assert_eq!(
            parse_eprt(b"|2|2001:db8:1::2|5282|"),
            Ok("[2001:db8:1::2]:5282".parse().unwrap())
        );
        assert_eq!(
            parse_eprt(b"!1!100.64.0.2!2000!"),
            Ok("100.64.0.2:2000".parse().unwrap())
        );
        assert_eq!(
            parse_eprt(b" #2#::1#65535# "),
            Ok("[::1]:65535".parse().unwrap())
        );
    }

    #[test]
    fn eprt_rejects() {
        assert_eq!(parse_eprt(b""), Err(CodecError::Delimiter));
        assert_eq!(parse_eprt(b"|1|1.2.3.4|5"), Err(CodecError::Delimiter));
        assert_eq!(parse_eprt(b"1|1.2.3.4|5|"), Err(CodecError::Delimiter));
        assert_eq!(parse_eprt(b"|1|1.2.3.4|5|6|"), Err(CodecError::Delimiter));
        assert_eq!(parse_eprt(b"|3|1.2.3.4|5|"), Err(CodecError::Family(3)));
        assert_eq!(parse_eprt(b"|1|::1|5|"), Err(CodecError::Address));
        assert_eq!(parse_eprt(b"|2|1.2.3.4|5|"), Err(CodecError::Address));
        assert_eq!(parse_eprt(b"|1|1.2.3.256|5|"), Err(CodecError::Address));
        assert_eq!(parse_eprt(b"|1|1.2.3.4|0|"), Err(CodecError::PortZero));
        assert_eq!(
            parse_eprt(b"|1|1.2.3.4|65536|"),
            Err(CodecError::PortRange(65536))
        );
        assert_eq!(
            parse_eprt(b"|1|1.2.3.4||"),
            Err(CodecError::NotANumber { index: 2 })
        );
        assert_eq!(parse_eprt(b"|1|1.2.\xff.4|5|"), Err(CodecError::Address));
    }

    #[test]
    fn eprt_encode() {
        assert_eq!(
            encode_eprt("[2001:db8:2::1]:40000".parse().unwrap()),
            "|2|2001:db8:2::1|40000|"
        );
        assert_eq!(
            encode_eprt("198.51.100.1:40000".parse().unwrap()),
            "|1|198.51.100.1|40000|"
        );
    }

    #[test]
    fn reply_229_forms() {
        let p = |t: &[u8]| find_229(t).map(|e| e.port);
        assert_eq!(p(b"Entering Extended Passive Mode (|||6446|)"), Ok(6446));
        assert_eq!(p(b"Entering Extended Passive Mode (|||6446|)."), Ok(6446));
        assert_eq!(p(b"EPSV ok (!!!6446!)"), Ok(6446));
        assert_eq!(p(b"Entering Extended Passive Mode (||6446|)"), Ok(6446));
        assert_eq!(p(b"(|6446|)"), Ok(6446));
        let full = find_229(b"Extended Passive (|1|198.51.100.10|6446|)").unwrap();
        assert_eq!(
            full,
            ExtendedPassive {
                port: 6446,
                addr: Some("198.51.100.10".parse().unwrap())
            }
        );
    }

    #[test]
    fn reply_229_rejects() {
        assert_eq!(
            find_229(b"Entering Extended Passive Mode"),
            Err(CodecError::NotFound)
        );
        assert_eq!(find_229(b"(|||0|)"), Err(CodecError::PortZero));
        assert_eq!(find_229(b"(|||70000|)"), Err(CodecError::PortRange(70000)));
        assert_eq!(find_229(b"(|||6446!)"), Err(CodecError::Delimiter));
        assert_eq!(find_229(b"(||||6446|)"), Err(CodecError::Delimiter));
        assert_eq!(
            find_229(b"(|||x|)"),
            Err(CodecError::NotANumber { index: 0 })
        );
        assert_eq!(find_229(b"(|||6446|"), Err(CodecError::NotFound));
        assert_eq!(
            find_229(b"(|2|198.51.100.1|6446|)"),
            Err(CodecError::Address)
        );
    }

    #[test]
    fn reply_229_encode() {
        assert_eq!(find_229(encode_229(40001).as_bytes()).unwrap().port, 40001);
    }
}

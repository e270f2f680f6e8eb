//! The TCP sockets listening in this network namespace, from
//! `/proc/net/tcp` and `/proc/net/tcp6`: whether a listener is bound,
//! without connecting to it (a transparent listener would log a refusal).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `st` of a listening socket.
const LISTEN: &str = "0A";

/// Every listening TCP socket's local address.
pub(super) fn sockets() -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            out.extend(parse(&text));
        }
    }
    out
}

/// The listening sockets of one such table.
fn parse(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let local = f.nth(1)?;
            let state = f.nth(1)?;
            (state == LISTEN).then(|| local_addr(local)).flatten()
        })
        .collect()
}

/// `0100007F:0885` or 32 hex digits and a port: the kernel prints each
/// 32-bit word of the address as the host reads it, the port in host
/// order.
fn local_addr(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Option<Vec<[u8; 4]>> = (0..addr.len() / 8)
        .map(|i| {
            let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
            Some(w.to_ne_bytes())
        })
        .collect();
    let bytes: Vec<u8> = words?.concat();
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_tables_as_this_host_prints_them() {
        // Written as the kernel writes them, from the words in host order.
        let w = |b: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(b));
        let v4 = format!(
            "  sl  local_address rem_address   st\n   0: {}:0834 00000000:0000 0A 0\n   1: {}:0835 0100007F:1234 01 0\n",
            w([100, 64, 0, 1]),
            w([127, 0, 0, 1])
        );
        assert_eq!(parse(&v4), vec!["100.64.0.1:2100".parse().unwrap()]);
        let six = format!(
            "  sl  local_address                         remote_address  st\n   0: {}{}{}{}:0834 00000000000000000000000000000000:0000 0A 0\n",
            w([0x20, 0x01, 0x0d, 0xb8]),
            w([0, 1, 0, 0]),
            w([0, 0, 0, 0]),
            w([0, 0, 0, 1])
        );
        assert_eq!(parse(&six), vec!["[2001:db8:1::1]:2100".parse().unwrap()]);
    }

    #[test]
    fn finds_a_socket_this_test_listens_on() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(sockets().contains(&l.local_addr().unwrap()));
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(!sockets().contains(&addr));
    }
}

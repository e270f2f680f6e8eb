//! Where the gateway listens: two sockets that would share an address and
//! port cannot both be bound, and the second would fail only at start.

use super::super::schema::RawListener;
use super::context::Ctx;
use serde_saphyr::Spanned;
use std::net::{IpAddr, SocketAddr};

/// A socket address as the rules write it (`listen`, `upstream`,
/// `metrics.listen`).
pub(super) fn parse_socket(s: &str) -> Option<SocketAddr> {
    s.trim().parse().ok()
}

/// A socket the file asks for, and whose it is.
pub(super) struct Socket {
    /// E.g. `listener 'proxy'`.
    pub owner: String,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The addresses `listeners` ask for, those with errors of their own
/// included: each is still the address meant.
pub(super) fn listener_sockets(listeners: &[RawListener]) -> Vec<Socket> {
    listeners
        .iter()
        .filter_map(|l| {
            let addr = parse_socket(&l.listen.as_ref()?.value)?;
            let name = l.name.as_ref().map_or("?", |n| n.value.as_str());
            Some(Socket {
                owner: format!("listener '{name}'"),
                addr,
            })
        })
        .collect()
}

/// Whether a socket bound to `wide` holds the port for `ip` too: the same
/// address, or a wildcard of its family. An IPv6 wildcard holds IPv4 as
/// well: listeners bind it dual-stack (`proxy/pinhole.rs`,
/// `bind_listener`), as the metrics endpoint does by the host's default.
fn holds(wide: IpAddr, ip: IpAddr) -> bool {
    let (wide, ip) = (wide.to_canonical(), ip.to_canonical());
    wide == ip || (wide.is_unspecified() && (wide.is_ipv6() || ip.is_ipv4()))
}

/// Whether `a` and `b` cannot both be bound. Port 0 asks the kernel for
/// a free port each time: it is never shared.
pub(super) fn share(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.port() != 0 && (holds(a.ip(), b.ip()) || holds(b.ip(), a.ip()))
}

/// Reports `addr` (the value `at` of `what`) if it clashes with one of
/// `taken`. Returns whether it did.
pub(super) fn clash(
    cx: &mut Ctx,
    at: &Spanned<String>,
    what: &str,
    addr: SocketAddr,
    taken: &[Socket],
) -> bool {
    let Some(other) = taken.iter().find(|t| share(t.addr, addr)) else {
        return false;
    };
    let message = if other.addr == addr {
        format!("{what} {addr} is the address of {}", other.owner)
    } else {
        format!(
            "{what} {addr} and {} on {} would share port {}: a wildcard address holds its port on every address{}",
            other.owner,
            other.addr,
            addr.port(),
            if other.addr.is_ipv6() || addr.is_ipv6() {
                " (an IPv6 wildcard on IPv4 ones too)"
            } else {
                " of its family"
            }
        )
    };
    cx.error(
        at,
        message,
        "give each its own port, or listen on specific addresses only",
    );
    true
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn sockets_share_an_address_or_a_wildcard_of_its_family() {
        let s = |a: &str, b: &str| share(a.parse().unwrap(), b.parse().unwrap());
        assert!(s("127.0.0.1:21", "127.0.0.1:21"));
        assert!(s("0.0.0.0:21", "127.0.0.1:21"));
        assert!(s("[::]:21", "127.0.0.1:21"));
        assert!(s("[::]:21", "[::1]:21"));
        assert!(s("[::ffff:127.0.0.1]:21", "127.0.0.1:21"));
        assert!(!s("0.0.0.0:21", "[::1]:21"));
        assert!(!s("127.0.0.1:21", "127.0.0.2:21"));
        assert!(!s("0.0.0.0:21", "0.0.0.0:22"));
        assert!(!s("127.0.0.1:0", "127.0.0.1:0"));
    }
}

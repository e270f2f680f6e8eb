//! A gateway port reserved for a kernel pinhole. The pinhole's connection
//! is translated before it could reach the gateway's own socket, so
//! nothing is ever accepted there; the reservation only keeps the port
//! from being handed out again (to a relay pinhole, or another
//! reservation) while the kernel forwards through it.

use crate::proxy::sockets::{in_range, listening_socket};
use crate::rules::PortRange;
use std::io;
use std::net::{IpAddr, SocketAddr};

/// A reserved gateway port, free again when dropped.
#[derive(Debug)]
pub(crate) struct PortReservation {
    /// Listening, never accepted on: only a listening socket keeps another
    /// SO_REUSEADDR bind (every relay pinhole's) off the port.
    _socket: socket2::Socket,
    addr: SocketAddr,
}

impl PortReservation {
    /// Reserves a free port of `range` on `bind`.
    pub(crate) fn take(bind: IpAddr, range: PortRange) -> io::Result<PortReservation> {
        let socket = in_range(bind, range, |addr| listening_socket(addr, false, 4))?;
        let addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("a reserved port without an address"))?;
        Ok(PortReservation {
            _socket: socket,
            addr,
        })
    }

    /// The reserved address: where the peer is to dial.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::sockets::bind_listener;

    #[tokio::test]
    async fn a_reserved_port_is_not_handed_out_again_until_dropped() {
        // A port free a moment ago, as the whole range.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let range = PortRange {
            first: port,
            last: port,
        };
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let r = PortReservation::take(ip, range).expect("reserve");
        assert_eq!(r.addr(), SocketAddr::new(ip, port));
        // A relay pinhole binds with SO_REUSEADDR: the reservation must
        // keep it off all the same.
        assert!(bind_listener(r.addr(), false, 4).is_err());
        assert!(PortReservation::take(ip, range).is_err());
        drop(r);
        assert!(bind_listener(SocketAddr::new(ip, port), false, 4).is_ok());
    }
}

//! The relay's pinholes: a listening socket that accepts exactly one
//! connection, from the expected peer, before a deadline. Strangers are
//! reset and reported; the listener closes once its connection is taken.

use crate::addrs::PeerIp;
use crate::proxy::sockets::{bind_listener, in_range, reset_on_close};
use crate::rules::PortRange;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};

/// Why a pinhole produced no connection.
#[derive(Debug, Error)]
pub(crate) enum PinholeError {
    /// Nobody (allowed) connected in time.
    #[error("no connection from {expected} within {timeout:?}")]
    Expired {
        /// Who was expected.
        expected: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// accept() failed.
    #[error("accept failed: {0}")]
    Io(#[from] io::Error),
}

/// What a pinhole is for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PinholeRequest {
    /// Local address to bind (may be unspecified).
    pub bind: IpAddr,
    /// Ports to choose from.
    pub range: PortRange,
    /// The only peer allowed to connect; `None` accepts anyone (only when
    /// the operator switched peer checking off).
    pub expect_peer: Option<PeerIp>,
    /// Bind with IP_TRANSPARENT (TPROXY deployments).
    pub transparent: bool,
}

/// One open pinhole.
#[derive(Debug)]
pub(crate) struct Pinhole {
    listener: TcpListener,
    local: SocketAddr,
    expect_peer: Option<PeerIp>,
}

impl Pinhole {
    /// Opens a pinhole on a free port of the request's range; it listens
    /// at once.
    pub(crate) fn open(req: PinholeRequest) -> io::Result<Pinhole> {
        // A pinhole takes one connection; a short queue is plenty.
        let listener = in_range(req.bind, req.range, |addr| {
            bind_listener(addr, req.transparent, 4)
        })?;
        Ok(Pinhole {
            local: listener.local_addr()?,
            listener,
            expect_peer: req.expect_peer,
        })
    }

    /// Where it listens.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits for the expected peer; strangers are reset and reported through
    /// `on_stranger`, and waiting goes on. The listener closes on return, so
    /// the pinhole is used at most once.
    pub(crate) async fn accept(
        self,
        timeout: Duration,
        mut on_stranger: impl FnMut(SocketAddr),
    ) -> Result<TcpStream, PinholeError> {
        let expected = self
            .expect_peer
            .map(|p| p.to_string())
            .unwrap_or_else(|| "anyone".into());
        let wait = async {
            loop {
                let (stream, peer) = self.listener.accept().await?;
                let ok = self
                    .expect_peer
                    .is_none_or(|want| PeerIp::new(peer.ip()) == want);
                if ok {
                    // Until the relay takes it, dropping it must reset.
                    reset_on_close(&stream);
                    return Ok::<_, PinholeError>(stream);
                }
                on_stranger(peer);
                reset_on_close(&stream);
                drop(stream);
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(PinholeError::Expired { expected, timeout }),
        }
    }
}

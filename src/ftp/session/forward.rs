//! Which data channels the kernel forwards. A transfer whose two sides use
//! the same direction (client and server both passive, or both active)
//! needs one connection, which the kernel can pass on from the peer that
//! dials to the peer that listens: the engine asks for it with
//! [`Endpoint::Forward`](super::Endpoint::Forward). A mode conversion joins
//! two inbound or two outbound connections and stays on the relay. When
//! the kernel cannot take a channel, the relay takes it from there
//! (`ForwardActive::refused`, `Forwarding::refused` in `stage.rs`).

use super::client::ClientReq;
use super::stage::Request;
use crate::addrs::ClientAddr;

impl Request {
    /// Client passive, server passive: whether the kernel forwards the
    /// client's connection to the server's passive port. In server mode
    /// `auto` (`probe`) a passive port that never answered would lose the
    /// transfer: the kernel takes over once the relay has seen this
    /// server's passive ports answer (`proven`).
    pub(super) fn forwards_passive(&self, probe: bool, proven: bool) -> bool {
        self.kernel_ok && matches!(self.client, ClientReq::Passive(_)) && (!probe || proven)
    }

    /// Client active, server active: where the kernel forwards the
    /// server's connection (the client's own PORT address), if it does.
    pub(super) fn forwards_active(&self) -> Option<ClientAddr> {
        match self.client {
            ClientReq::Active(_, to) if self.kernel_ok => Some(to),
            _ => None,
        }
    }
}

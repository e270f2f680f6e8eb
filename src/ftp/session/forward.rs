//! Which data channels the kernel forwards, and what happens when it
//! cannot. A transfer whose two sides use the same direction (client and
//! server both passive, or both active) needs one connection, which the
//! kernel can pass on from the peer that dials to the peer that listens:
//! the engine asks for it with [`Endpoint::Forward`]. A mode conversion
//! joins two inbound or two outbound connections and stays on the relay.

use super::{
    reply, Action, ClientReq, DataPlane, Endpoint, Event, Policy, ServerMode, Session, Side, Stage,
};
use crate::addrs::ServerAddr;
use crate::ftp::session::DataId;

impl Session {
    /// The data plane this session was started with.
    pub fn data_plane(&self) -> DataPlane {
        self.cfg.data_plane
    }

    /// Whether the setup under way is to be forwarded by the kernel, as its
    /// modes stand now.
    pub(super) fn forwards(&self) -> bool {
        let Some(s) = self.setup.as_ref() else {
            return false;
        };
        if !s.kernel_ok {
            return false;
        }
        match (s.client, s.stage.server_mode()) {
            // In server mode `auto` a passive port that never answered
            // would lose the transfer: the kernel takes over once the relay
            // has seen this server's passive ports answer.
            (ClientReq::Passive(_), ServerMode::Passive) => !s.stage.probe() || self.passive_proven,
            (ClientReq::Active(..), ServerMode::Active) => true,
            _ => false,
        }
    }

    /// Client passive, server passive: the client's connection is forwarded
    /// to the server's passive port `target`. Returns false when the setup
    /// is relayed instead.
    pub(super) fn forward_passive(&mut self, id: DataId, target: ServerAddr, probe: bool) -> bool {
        if !self.forwards() {
            return false;
        }
        let exact = matches!(self.cfg.data_plane, DataPlane::Kernel { exact: true });
        self.set_stage(Stage::Forwarding { to: target, probe });
        self.push(Action::Prepare {
            id,
            side: Side::Client,
            endpoint: Endpoint::Forward {
                expect_peer: self.cfg.client.into(),
                to: target.into(),
                exact,
            },
        });
        true
    }

    /// Client active, server active: the server's connection to the port
    /// the gateway sends in PORT/EPRT is forwarded to the client's own
    /// PORT address. Returns false when the setup is relayed instead.
    pub(super) fn forward_active(&mut self, id: DataId, server: ServerAddr) -> bool {
        if !self.forwards() {
            return false;
        }
        let Some(ClientReq::Active(_, to)) = self.setup.as_ref().map(|s| s.client) else {
            return false;
        };
        self.set_stage(Stage::ServerListen);
        self.push(Action::Prepare {
            id,
            side: Side::Server,
            endpoint: Endpoint::Forward {
                expect_peer: server.into(),
                to: to.into(),
                exact: false,
            },
        });
        true
    }

    /// After the server accepted PORT/EPRT for a forwarded channel the
    /// client side needs nothing more: it is told its PORT succeeded.
    /// Returns false when the client side is still to be prepared.
    pub(super) fn finish_forwarded_active(&mut self, policy: &dyn Policy) -> bool {
        let Some(ClientReq::Active(mode, _)) = self
            .setup
            .as_ref()
            .filter(|s| s.kernel_ok && s.stage.server_mode() == ServerMode::Active)
            .map(|s| s.client)
        else {
            return false;
        };
        if !self.forwards() {
            return false;
        }
        let text = reply(200, &format!("{} command successful.", mode.as_str()));
        self.finish_setup(text, policy);
        true
    }

    /// The kernel could not take channel `id` (`stage` is where it was
    /// asked for): the relay takes it from there, and the kernel is not
    /// asked again for this setup. Returns false if the channel was not a
    /// forwarded one.
    pub(super) fn kernel_failed(&mut self, id: DataId, stage: Stage, reason: &str) -> bool {
        if !self.forwards() {
            return false;
        }
        let Some(s) = self.setup.as_mut() else {
            return false;
        };
        s.kernel_ok = false;
        match (stage, self.server) {
            (Stage::Forwarding { to, probe }, _) => {
                self.event(Event::KernelFallback {
                    reason: reason.to_string(),
                });
                self.server_connect(id, to, probe);
                true
            }
            (Stage::ServerListen, Some(server)) => {
                self.event(Event::KernelFallback {
                    reason: reason.to_string(),
                });
                self.server_listen(id, server);
                true
            }
            _ => false,
        }
    }
}

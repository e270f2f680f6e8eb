//! What one data setup is for (`Request`), the context its steps run in
//! (`Cx`), and its stages, as types. A stage carries what only it
//! needs, and moves on only through the transitions written for it, each
//! of which consumes it and asks the driver for what the next stage
//! waits on. A transition the protocol does not have (the server's answer
//! to PORT while the gateway waits for its PASV reply, a kernel fallback
//! for a side the relay prepares) has no method, so it does not compile.
//!
//! ```text
//!             begin_passive                       begin_active
//!                  |                                   |
//!            PassiveReply --(probe fails)--> ServerListen | ForwardActive
//!             |        |                          |            |  (kernel refuses:
//!   (kernel forwards) (relay)               (pinhole open)     |   ServerListen)
//!        Forwarding  ServerConnect --(probe fails)--^          |
//!             |        |                          PortReply <--+
//!             |   (connected)                      |        |
//!             |        +-----> ClientSide <--(relay)  (forwarded)
//!             |                    |                        |
//!             +------------------> Ready <------------------+
//! ```
//! (`Forwarding` refused by the kernel goes on as `ServerConnect`.)

use super::action::{ConnectDeadline, DataId, Endpoint, ServerMode, Side};
use super::client::ClientReq;
use super::output::Output;
use super::policy::{DataPlane, SessionConfig};
use super::server::{Owed, Pending};
use crate::addrs::ServerAddr;
use crate::ftp::codec::{encode_eprt, encode_port};
use crate::ftp::command as cmd;
use std::net::SocketAddr;

/// What a setup's steps need of the rest of the session.
pub(super) struct Cx<'a> {
    pub(super) cfg: &'a SessionConfig,
    /// The server (a setup starts only once it is known).
    pub(super) server: ServerAddr,
    pub(super) out: &'a mut Output,
    pub(super) owed: &'a mut Owed,
}

/// What one setup is for: its channel, what the client asked, and whether
/// the kernel may still forward it.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) id: DataId,
    pub(super) client: ClientReq,
    /// The kernel may forward this setup (`data.path: kernel`, and it has
    /// not failed for it).
    pub(super) kernel_ok: bool,
}

/// Where a data setup stands.
#[derive(Debug)]
pub(super) enum Stage {
    /// Our PASV/EPSV is with the server.
    PassiveReply(PassiveReply),
    /// The driver connects to the server's passive port.
    Connect(ServerConnect),
    /// The driver opens a pinhole for the server's active connection.
    Listen(ServerListen),
    /// The kernel is asked to forward the server's active connection to
    /// the client's PORT address.
    ForwardActive(ForwardActive),
    /// Our PORT/EPRT is with the server.
    PortReply(PortReply),
    /// The server's side is ready; the driver prepares the client's.
    Client(ClientSide),
    /// The kernel is asked to forward the client's connection to the
    /// server's passive port.
    Forwarding(Forwarding),
}

impl Stage {
    /// The side whose driver reports this stage takes.
    pub(super) fn side(&self) -> Side {
        match self {
            Stage::Client(_) | Stage::Forwarding(_) => Side::Client,
            _ => Side::Server,
        }
    }
}

/// A setup whose both sides are ready: the relay (or the kernel) may start.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ready {
    /// What the gateway speaks to the server.
    pub(super) server_mode: ServerMode,
}

/// Begins the server's side passive: our PASV (EPSV to an IPv6 server).
/// `probe` marks the server's passive port tried in server mode `auto`:
/// its failure switches the session to active instead of failing the
/// setup, and its connection gets the probe's shorter deadline.
pub(super) fn begin_passive(req: &Request, probe: bool, cx: &mut Cx<'_>) -> Stage {
    let verb = if cx.server.is_ipv4() {
        cmd::PASV
    } else {
        cmd::EPSV
    };
    cx.out.send_server(format!("{verb}\r\n").into_bytes());
    cx.owed.expect(Pending::ServerPassive { id: req.id, verb });
    Stage::PassiveReply(PassiveReply { probe })
}

/// Begins the server's side active (from the start, or as the fallback of
/// a passive probe): a pinhole for the server's connection, or, when the
/// kernel may forward this setup, a kernel pinhole that passes it on to
/// the client's PORT address.
pub(super) fn begin_active(req: &Request, cx: &mut Cx<'_>) -> Stage {
    let expect_peer = cx.server.into();
    if let Some(to) = req.forwards_active() {
        cx.out.prepare(
            req.id,
            Side::Server,
            Endpoint::Forward {
                expect_peer,
                to: to.into(),
                exact: false,
            },
        );
        return Stage::ForwardActive(ForwardActive);
    }
    cx.out
        .prepare(req.id, Side::Server, Endpoint::Listen { expect_peer });
    Stage::Listen(ServerListen)
}

/// Our PASV/EPSV is with the server.
#[derive(Debug)]
pub(super) struct PassiveReply {
    probe: bool,
}

impl PassiveReply {
    /// The server named its passive port `to`: the kernel forwards the
    /// client's connection there, or the driver connects to it.
    pub(super) fn answered(
        self,
        req: &Request,
        to: ServerAddr,
        proven: bool,
        cx: &mut Cx<'_>,
    ) -> Stage {
        if req.forwards_passive(self.probe, proven) {
            let exact = matches!(cx.cfg.data_plane, DataPlane::Kernel { exact: true });
            cx.out.prepare(
                req.id,
                Side::Client,
                Endpoint::Forward {
                    expect_peer: cx.cfg.client.into(),
                    to: to.into(),
                    exact,
                },
            );
            return Stage::Forwarding(Forwarding {
                to,
                probe: self.probe,
            });
        }
        connect(req, to, self.probe, cx)
    }

    /// The server named no usable port: a probe falls back to active;
    /// `None` when the setup fails.
    pub(super) fn unanswered(self, req: &Request, cx: &mut Cx<'_>) -> Option<Stage> {
        self.probe.then(|| begin_active(req, cx))
    }

    /// Whether this is the probe of server mode `auto`.
    pub(super) fn probe(&self) -> bool {
        self.probe
    }
}

/// Starts the connection to the server's passive port `to`; a probe gets
/// the probe's shorter deadline.
fn connect(req: &Request, to: ServerAddr, probe: bool, cx: &mut Cx<'_>) -> Stage {
    let within = if probe {
        ConnectDeadline::PassiveProbe
    } else {
        ConnectDeadline::Connect
    };
    cx.out.prepare(
        req.id,
        Side::Server,
        Endpoint::Connect {
            to: to.into(),
            within,
        },
    );
    Stage::Connect(ServerConnect { probe })
}

/// The driver connects to the server's passive port.
#[derive(Debug)]
pub(super) struct ServerConnect {
    probe: bool,
}

impl ServerConnect {
    /// Whether this is the probe of server mode `auto`.
    pub(super) fn probe(&self) -> bool {
        self.probe
    }

    /// Connected: the client's side next.
    pub(super) fn connected(self, req: &Request, cx: &mut Cx<'_>) -> Stage {
        prepare_client(req, ServerMode::Passive, cx)
    }

    /// The connection failed: a probe falls back to active; `None` when
    /// the setup fails.
    pub(super) fn failed(self, req: &Request, cx: &mut Cx<'_>) -> Option<Stage> {
        self.probe.then(|| begin_active(req, cx))
    }
}

/// The driver opens a pinhole for the server's active connection.
#[derive(Debug)]
pub(super) struct ServerListen;

impl ServerListen {
    /// The pinhole is open at `local`: our PORT/EPRT names it.
    pub(super) fn listening(self, req: &Request, local: SocketAddr, cx: &mut Cx<'_>) -> Stage {
        send_port(req, local, false, cx)
    }
}

/// The kernel is asked to forward the server's active connection.
#[derive(Debug)]
pub(super) struct ForwardActive;

impl ForwardActive {
    /// The kernel pinhole is at `local`: our PORT/EPRT names it.
    pub(super) fn listening(self, req: &Request, local: SocketAddr, cx: &mut Cx<'_>) -> Stage {
        send_port(req, local, true, cx)
    }

    /// The kernel could not take it: the relay listens instead, and the
    /// kernel is not asked again for this setup.
    pub(super) fn refused(self, req: &mut Request, cx: &mut Cx<'_>) -> Stage {
        req.kernel_ok = false;
        begin_active(req, cx)
    }
}

fn send_port(req: &Request, local: SocketAddr, forwarded: bool, cx: &mut Cx<'_>) -> Stage {
    let ip = cx.cfg.server_advertise.unwrap_or(local.ip()).to_canonical();
    let at = SocketAddr::new(ip, local.port());
    let (verb, arg) = match at {
        SocketAddr::V4(v4) if cx.server.is_ipv4() => (cmd::PORT, encode_port(v4)),
        _ => (cmd::EPRT, encode_eprt(at)),
    };
    cx.out.send_server(format!("{verb} {arg}\r\n").into_bytes());
    cx.owed.expect(Pending::ServerActive { id: req.id, verb });
    Stage::PortReply(PortReply { forwarded })
}

/// Our PORT/EPRT is with the server.
#[derive(Debug)]
pub(super) struct PortReply {
    forwarded: bool,
}

impl PortReply {
    /// The server accepted: a forwarded channel is ready (its client side
    /// needs nothing more), a relayed one prepares the client's side next.
    pub(super) fn accepted(self, req: &Request, cx: &mut Cx<'_>) -> Result<Ready, Stage> {
        if self.forwarded {
            return Ok(Ready {
                server_mode: ServerMode::Active,
            });
        }
        Err(prepare_client(req, ServerMode::Active, cx))
    }
}

/// Asks for the client's side: a pinhole for a passive client, a
/// connection to an active one's PORT address.
fn prepare_client(req: &Request, server_mode: ServerMode, cx: &mut Cx<'_>) -> Stage {
    let endpoint = match req.client {
        ClientReq::Passive(_) => Endpoint::Listen {
            expect_peer: cx.cfg.client.into(),
        },
        ClientReq::Active(_, to) => Endpoint::Connect {
            to: to.into(),
            within: ConnectDeadline::Connect,
        },
    };
    cx.out.prepare(req.id, Side::Client, endpoint);
    Stage::Client(ClientSide { server_mode })
}

/// The server's side is ready; the driver prepares the client's.
#[derive(Debug)]
pub(super) struct ClientSide {
    server_mode: ServerMode,
}

impl ClientSide {
    /// The client's side is prepared.
    pub(super) fn prepared(self) -> Ready {
        Ready {
            server_mode: self.server_mode,
        }
    }
}

/// The kernel is asked to forward the client's connection to the server's
/// passive port `to`.
#[derive(Debug)]
pub(super) struct Forwarding {
    to: ServerAddr,
    probe: bool,
}

impl Forwarding {
    /// The kernel pinhole is in place.
    pub(super) fn prepared(self) -> Ready {
        Ready {
            server_mode: ServerMode::Passive,
        }
    }

    /// The kernel could not take it: the relay connects to the server's
    /// passive port instead, and the kernel is not asked again for this
    /// setup.
    pub(super) fn refused(self, req: &mut Request, cx: &mut Cx<'_>) -> Stage {
        req.kernel_ok = false;
        connect(req, self.to, self.probe, cx)
    }
}

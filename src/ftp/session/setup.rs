//! The data setups of a session: one channel at a time prepared side by
//! side, from the client's request to the reply that announces it, the
//! driver's reports on it, and the channel set up for the next transfer.
//! The stages themselves, and which moves between them are legal, are in
//! `stage.rs`.

use super::action::{ClientMode, DataId, Event, ServerMode, Side};
use super::client::ClientReq;
use super::output::{first_line, reply, Output};
use super::policy::{DataPlane, ServerDataMode, SessionConfig};
use super::server::passive_target;
use super::stage::{begin_active, begin_passive, Cx, Ready, Request, Stage};
use crate::ftp::codec::{encode_229, encode_lprt, encode_port};
use crate::ftp::command::Verb;
use crate::ftp::reply::ReplyCode;
use std::net::SocketAddr;

#[derive(Debug)]
struct Setup {
    req: Request,
    stage: Stage,
}

/// The session's data setups.
#[derive(Debug)]
pub(super) struct Data {
    setup: Option<Setup>,
    /// The channel set up for the next transfer command.
    ready: Option<DataId>,
    next_id: u64,
    /// The server's passive port did not answer (server mode `auto` goes
    /// active for the rest of the session).
    passive_failed: bool,
    /// A relayed connection to this server's passive port succeeded.
    passive_proven: bool,
}

impl Data {
    pub(super) fn new(cfg: &SessionConfig) -> Data {
        Data {
            setup: None,
            ready: None,
            next_id: 1,
            passive_failed: cfg.passive_known_dead,
            passive_proven: cfg.passive_known_alive && !cfg.passive_known_dead,
        }
    }

    /// Whether a setup is under way.
    pub(super) fn busy(&self) -> bool {
        self.setup.is_some()
    }

    /// The channel set up for the next transfer, now taken by one.
    pub(super) fn take_ready(&mut self) -> Option<DataId> {
        self.ready.take()
    }

    /// The channel set up for no transfer yet is no longer wanted.
    pub(super) fn release_ready(&mut self, out: &mut Output) {
        if let Some(id) = self.ready.take() {
            out.release(id);
        }
    }

    /// The session closes: nothing it set up is wanted.
    pub(super) fn close(&mut self, out: &mut Output) {
        self.release_ready(out);
        if let Some(s) = self.setup.take() {
            out.release(s.req.id);
        }
    }

    /// Starts a setup for `client`, towards the server in the mode the
    /// policy asks for (`requested`).
    pub(super) fn start(&mut self, client: ClientReq, requested: ServerDataMode, cx: &mut Cx<'_>) {
        self.release_ready(cx.out);
        let id = DataId(self.next_id);
        self.next_id += 1;
        let (server_mode, probe) = match requested {
            ServerDataMode::SameAsClient if client.mode().is_passive() => {
                (ServerMode::Passive, false)
            }
            ServerDataMode::SameAsClient => (ServerMode::Active, false),
            ServerDataMode::Passive => (ServerMode::Passive, false),
            ServerDataMode::Active => (ServerMode::Active, false),
            ServerDataMode::Auto if self.passive_failed => (ServerMode::Active, false),
            ServerDataMode::Auto => (ServerMode::Passive, true),
        };
        let req = Request {
            id,
            client,
            kernel_ok: matches!(cx.cfg.data_plane, DataPlane::Kernel { .. }),
        };
        let stage = match server_mode {
            ServerMode::Passive => begin_passive(&req, probe, cx),
            ServerMode::Active => begin_active(&req, cx),
        };
        self.setup = Some(Setup { req, stage });
    }

    /// Takes the setup out if it is channel `id`'s and `which` its stage.
    fn take(&mut self, id: DataId, which: impl Fn(&Stage) -> bool) -> Option<Setup> {
        let current = self.setup.as_ref()?;
        (current.req.id == id && which(&current.stage))
            .then(|| self.setup.take())
            .flatten()
    }

    /// The setup goes on at `stage`.
    fn carry_on(&mut self, req: Request, stage: Stage) -> Option<Vec<u8>> {
        self.setup = Some(Setup { req, stage });
        None
    }

    /// Ends a setup that failed: the client gets `text`.
    fn fail(&mut self, req: Request, code: u16, text: &str, out: &mut Output) -> Option<Vec<u8>> {
        out.release(req.id);
        Some(reply(code, text))
    }

    /// Ends a setup whose sides are ready: the driver starts the channel,
    /// the client gets `client_reply`.
    fn finish(
        &mut self,
        req: Request,
        ready: Ready,
        client_reply: Vec<u8>,
        out: &mut Output,
    ) -> Option<Vec<u8>> {
        self.ready = Some(req.id);
        out.start(req.id, req.client.mode(), ready.server_mode);
        Some(client_reply)
    }

    /// The server's answer to our PASV/EPSV for channel `id`. Returns the
    /// client's reply when the setup ended here (as do the reports below).
    pub(super) fn passive_reply(
        &mut self,
        id: DataId,
        verb: Verb,
        code: ReplyCode,
        text: &[u8],
        cx: &mut Cx<'_>,
    ) -> Option<Vec<u8>> {
        let Setup { req, stage } = self.take(id, |s| matches!(s, Stage::PassiveReply(_)))?;
        let Stage::PassiveReply(stage) = stage else {
            return None;
        };
        let trust = cx.cfg.trust_passive_address;
        match passive_target(verb, code, text, cx.server, trust, cx.out) {
            Ok(to) => {
                let next = stage.answered(&req, to, self.passive_proven, cx);
                self.carry_on(req, next)
            }
            Err(reason) => {
                if stage.probe() {
                    self.passive_failed = true;
                    cx.out.event(Event::PassiveFallback {
                        reason: reason.clone(),
                    });
                }
                match stage.unanswered(&req, cx) {
                    Some(next) => self.carry_on(req, next),
                    None => {
                        let text = format!("Can't open data connection: {reason}.");
                        self.fail(req, 425, &text, cx.out)
                    }
                }
            }
        }
    }

    /// The server's answer to our PORT/EPRT for channel `id`.
    pub(super) fn port_reply(
        &mut self,
        id: DataId,
        verb: Verb,
        code: ReplyCode,
        text: &[u8],
        cx: &mut Cx<'_>,
    ) -> Option<Vec<u8>> {
        let Setup { req, stage } = self.take(id, |s| matches!(s, Stage::PortReply(_)))?;
        let Stage::PortReply(stage) = stage else {
            return None;
        };
        if !code.is_success() {
            let msg = format!(
                "Can't open data connection: the server refused {verb} ({} {}).",
                code.0,
                first_line(text)
            );
            return self.fail(req, 425, &msg, cx.out);
        }
        match stage.accepted(&req, cx) {
            Ok(ready) => {
                let text = reply(
                    200,
                    &format!("{} command successful.", req.client.mode().as_str()),
                );
                self.finish(req, ready, text, cx.out)
            }
            Err(next) => self.carry_on(req, next),
        }
    }

    /// The driver prepared `side` of channel `id`: a listener bound at
    /// `local`, or a connection made from `local`.
    pub(super) fn prepared(
        &mut self,
        id: DataId,
        side: Side,
        local: SocketAddr,
        cx: &mut Cx<'_>,
    ) -> Option<Vec<u8>> {
        let Some(Setup { req, stage }) = self.take(id, |s| s.side() == side) else {
            // A channel this session issued and no longer wants: close what
            // the driver prepared. A live channel (a duplicate or wrong-side
            // report) and an id never issued are left alone.
            let live =
                self.setup.as_ref().is_some_and(|s| s.req.id == id) || self.ready == Some(id);
            if !live && id.0 < self.next_id {
                cx.out.release(id);
            }
            return None;
        };
        let next = match stage {
            Stage::Connect(stage) => {
                if stage.probe() && !self.passive_proven {
                    self.passive_proven = true;
                    cx.out.event(Event::PassiveAnswered);
                }
                stage.connected(&req, cx)
            }
            Stage::Listen(stage) => stage.listening(&req, local, cx),
            Stage::ForwardActive(stage) => stage.listening(&req, local, cx),
            Stage::Client(stage) => return self.client_ready(req, stage.prepared(), local, cx),
            Stage::Forwarding(stage) => return self.client_ready(req, stage.prepared(), local, cx),
            stage @ (Stage::PassiveReply(_) | Stage::PortReply(_)) => stage,
        };
        self.carry_on(req, next)
    }

    /// The client's side is ready at `local`: the client is told where
    /// to connect (or that its PORT succeeded).
    fn client_ready(
        &mut self,
        req: Request,
        ready: Ready,
        local: SocketAddr,
        cx: &mut Cx<'_>,
    ) -> Option<Vec<u8>> {
        let text = match req.client {
            ClientReq::Active(mode, _) => {
                reply(200, &format!("{} command successful.", mode.as_str()))
            }
            ClientReq::Passive(mode) => {
                let ip = cx.cfg.client_advertise.unwrap_or(local.ip()).to_canonical();
                let at = SocketAddr::new(ip, local.port());
                match (mode, at) {
                    (ClientMode::Pasv, SocketAddr::V4(v4)) => reply(
                        227,
                        &format!("Entering Passive Mode ({}).", encode_port(v4)),
                    ),
                    (ClientMode::Pasv, _) => {
                        let text = "PASV carries only IPv4 addresses; use EPSV.";
                        return self.fail(req, 425, text, cx.out);
                    }
                    (ClientMode::Lpsv, _) => reply(
                        228,
                        &format!("Entering Long Passive Mode ({}).", encode_lprt(at)),
                    ),
                    _ => reply(229, &encode_229(at.port())),
                }
            }
        };
        self.finish(req, ready, text, cx.out)
    }

    /// The driver could not prepare `side` of channel `id`.
    pub(super) fn failed(
        &mut self,
        id: DataId,
        side: Side,
        reason: &str,
        cx: &mut Cx<'_>,
    ) -> Option<Vec<u8>> {
        let Setup { mut req, stage } = self.take(id, |s| s.side() == side)?;
        let kernel_fallback = |out: &mut Output| {
            out.event(Event::KernelFallback {
                reason: reason.to_string(),
            })
        };
        let text = match stage {
            Stage::ForwardActive(stage) => {
                kernel_fallback(cx.out);
                let next = stage.refused(&mut req, cx);
                return self.carry_on(req, next);
            }
            Stage::Forwarding(stage) => {
                kernel_fallback(cx.out);
                let next = stage.refused(&mut req, cx);
                return self.carry_on(req, next);
            }
            Stage::Connect(stage) => {
                if stage.probe() {
                    self.passive_failed = true;
                    cx.out.event(Event::PassiveFallback {
                        reason: reason.to_string(),
                    });
                }
                match stage.failed(&req, cx) {
                    Some(next) => return self.carry_on(req, next),
                    None => format!("Can't open data connection to the server: {reason}."),
                }
            }
            Stage::Client(_) => match req.client {
                ClientReq::Active(_, to) => {
                    format!("Can't open data connection to {to}: {reason}.")
                }
                ClientReq::Passive(_) => format!("Can't open a passive port: {reason}."),
            },
            // A pinhole for the server that could not open, or a report
            // naming the server's side while its reply is awaited.
            Stage::Listen(_) | Stage::PassiveReply(_) | Stage::PortReply(_) => {
                format!("Can't open a data port towards the server: {reason}.")
            }
        };
        self.fail(req, 425, &text, cx.out)
    }
}

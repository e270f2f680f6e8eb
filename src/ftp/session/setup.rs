//! The data setup: one channel prepared side by side, from the client's
//! request to the reply that announces it, and the driver's reports on it.

use super::*;

impl Session {
    // ------------------------------------------------------------ data setup

    pub(super) fn start_setup(&mut self, client: ClientReq, policy: &dyn Policy) {
        let Some(server) = self.server else {
            self.reply_local(reply(503, "No server yet."));
            return;
        };
        if let Some(id) = self.ready.take() {
            self.push(Action::Release { id });
        }
        let id = DataId(self.next_id);
        self.next_id += 1;
        let requested = policy.server_mode(self.cfg.client.ip(), *server);
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
        let stage = match server_mode {
            ServerMode::Passive => Stage::ServerPassiveReply { probe },
            ServerMode::Active => Stage::ServerListen,
        };
        self.setup = Some(Setup {
            id,
            client,
            stage,
            kernel_ok: matches!(self.cfg.data_plane, DataPlane::Kernel { .. }),
        });
        match server_mode {
            ServerMode::Passive => self.server_passive(id, server, probe),
            ServerMode::Active => self.server_listen(id, server),
        }
    }

    pub(super) fn set_stage(&mut self, stage: Stage) {
        if let Some(s) = self.setup.as_mut() {
            s.stage = stage;
        }
    }

    pub(super) fn server_passive(&mut self, id: DataId, server: ServerAddr, probe: bool) {
        let verb = if server.is_ipv4() {
            cmd::PASV
        } else {
            cmd::EPSV
        };
        self.send_server(format!("{verb}\r\n").into_bytes());
        self.pending.push_back(Pending::ServerPassive { id, verb });
        self.set_stage(Stage::ServerPassiveReply { probe });
    }

    /// The server's side goes active (from the start, or as the fallback
    /// of a passive probe).
    pub(super) fn server_listen(&mut self, id: DataId, server: ServerAddr) {
        self.set_stage(Stage::ServerListen);
        if self.forward_active(id, server) {
            return;
        }
        self.push(Action::Prepare {
            id,
            side: Side::Server,
            endpoint: Endpoint::Listen {
                expect_peer: server.into(),
            },
        });
    }

    pub(super) fn client_side(&mut self, policy: &dyn Policy) {
        if self.finish_forwarded_active(policy) {
            return;
        }
        let Some(setup) = self.setup.as_ref() else {
            return;
        };
        let (id, server_mode) = (setup.id, setup.stage.server_mode());
        let endpoint = match setup.client {
            ClientReq::Passive(_) => Endpoint::Listen {
                expect_peer: self.cfg.client.into(),
            },
            ClientReq::Active(_, to) => Endpoint::Connect {
                to: to.into(),
                within: ConnectDeadline::Connect,
            },
        };
        self.set_stage(Stage::Client { server_mode });
        self.push(Action::Prepare {
            id,
            side: Side::Client,
            endpoint,
        });
    }

    /// Ends a setup that failed: the client gets `text`, held commands go on.
    pub(super) fn fail_setup(&mut self, code: u16, text: &str, policy: &dyn Policy) {
        if let Some(s) = self.setup.take() {
            self.push(Action::Release { id: s.id });
        }
        self.reply_local(reply(code, text));
        self.drain_held(policy);
    }

    pub(super) fn finish_setup(&mut self, client_reply: Vec<u8>, policy: &dyn Policy) {
        let Some(s) = self.setup.take() else { return };
        self.ready = Some(s.id);
        self.push(Action::Start {
            id: s.id,
            client_mode: s.client.mode(),
            server_mode: s.stage.server_mode(),
        });
        self.reply_local(client_reply);
        self.drain_held(policy);
    }

    pub(super) fn current(&self, id: DataId, side: Side) -> Option<Stage> {
        let s = self.setup.as_ref().filter(|s| s.id == id)?;
        (s.stage.side() == side).then_some(s.stage)
    }

    /// The driver prepared one side of channel `id`: a listener bound at
    /// `local`, or a connection made from `local`.
    pub fn data_prepared(
        &mut self,
        id: DataId,
        side: Side,
        local: SocketAddr,
        policy: &dyn Policy,
    ) {
        let Some(stage) = self.current(id, side) else {
            // A channel this session issued and no longer wants: close what
            // the driver prepared. A live channel (a duplicate or wrong-side
            // report) and an id never issued are left alone.
            let live = self.setup.as_ref().is_some_and(|s| s.id == id) || self.ready == Some(id);
            if !live && id.0 < self.next_id {
                self.push(Action::Release { id });
            }
            return;
        };
        match stage {
            Stage::ServerConnect { probe } => {
                if probe && !self.passive_proven {
                    self.passive_proven = true;
                    self.event(Event::PassiveAnswered);
                }
                self.client_side(policy)
            }
            Stage::ServerListen => {
                let Some(server) = self.server else { return };
                let ip = self
                    .cfg
                    .server_advertise
                    .unwrap_or(local.ip())
                    .to_canonical();
                let at = SocketAddr::new(ip, local.port());
                let (verb, arg) = match at {
                    SocketAddr::V4(v4) if server.is_ipv4() => (cmd::PORT, encode_port(v4)),
                    _ => (cmd::EPRT, encode_eprt(at)),
                };
                self.send_server(format!("{verb} {arg}\r\n").into_bytes());
                self.pending.push_back(Pending::ServerActive { id, verb });
                self.set_stage(Stage::ServerPortReply);
            }
            Stage::Client { .. } | Stage::Forwarding { .. } => {
                let Some(setup) = self.setup.as_ref() else {
                    return;
                };
                let text = match setup.client {
                    ClientReq::Active(mode, _) => {
                        reply(200, &format!("{} command successful.", mode.as_str()))
                    }
                    ClientReq::Passive(mode) => {
                        let ip = self
                            .cfg
                            .client_advertise
                            .unwrap_or(local.ip())
                            .to_canonical();
                        let at = SocketAddr::new(ip, local.port());
                        match (mode, at) {
                            (ClientMode::Pasv, SocketAddr::V4(v4)) => reply(
                                227,
                                &format!("Entering Passive Mode ({}).", encode_port(v4)),
                            ),
                            (ClientMode::Pasv, _) => {
                                self.fail_setup(
                                    425,
                                    "PASV carries only IPv4 addresses; use EPSV.",
                                    policy,
                                );
                                return;
                            }
                            (ClientMode::Lpsv, _) => reply(
                                228,
                                &format!("Entering Long Passive Mode ({}).", encode_lprt(at)),
                            ),
                            _ => reply(229, &encode_229(at.port())),
                        }
                    }
                };
                self.finish_setup(text, policy);
            }
            Stage::ServerPassiveReply { .. } | Stage::ServerPortReply => {}
        }
    }

    /// The driver could not prepare one side of channel `id`.
    pub fn data_failed(&mut self, id: DataId, side: Side, reason: &str, policy: &dyn Policy) {
        let Some(stage) = self.current(id, side) else {
            return;
        };
        if self.kernel_failed(id, stage, reason) {
            return;
        }
        let Some(setup) = self.setup.as_ref() else {
            return;
        };
        match stage {
            Stage::ServerConnect { probe: true } => {
                self.passive_failed = true;
                self.event(Event::PassiveFallback {
                    reason: reason.to_string(),
                });
                if let Some(server) = self.server {
                    self.server_listen(id, server);
                }
            }
            Stage::ServerConnect { probe: false } => {
                let text = format!("Can't open data connection to the server: {reason}.");
                self.fail_setup(425, &text, policy);
            }
            Stage::Client { .. } | Stage::Forwarding { .. } => {
                let text = match setup.client {
                    ClientReq::Active(_, to) => {
                        format!("Can't open data connection to {to}: {reason}.")
                    }
                    ClientReq::Passive(_) => format!("Can't open a passive port: {reason}."),
                };
                self.fail_setup(425, &text, policy);
            }
            _ => {
                let text = format!("Can't open a data port towards the server: {reason}.");
                self.fail_setup(425, &text, policy);
            }
        }
    }

    /// The driver's report on how data channel `id` ended (`Err` with the
    /// reason when the data path failed), for one line of the reply that
    /// waited for it ([`Action::ToClientAfterData`]); returns what the client
    /// gets instead of `held`. A broken transfer is never reported complete:
    /// a success reply becomes `426`, its leading lines are dropped, and the
    /// channel is released. Otherwise `held` goes out as it is.
    pub fn data_finished(
        &mut self,
        id: DataId,
        outcome: Result<(), &str>,
        held: Vec<u8>,
    ) -> Vec<u8> {
        if outcome.is_ok() {
            // Delivered: an ABOR from now on has no data to cut.
            if self.transfer == Some(id) {
                self.transfer = None;
            }
            return held;
        }
        let code = held
            .get(..3)
            .filter(|c| c.iter().all(u8::is_ascii_digit))
            .and_then(|c| std::str::from_utf8(c).ok()?.parse().ok())
            .map(ReplyCode);
        let last = code.is_some() && held.get(3).is_none_or(|&b| b != b'-');
        match code {
            Some(c) if last && !c.is_success() => held,
            Some(_) if last => {
                self.push(Action::Release { id });
                reply(426, "Connection closed; transfer aborted.")
            }
            // A leading or middle line of a multi-line reply: only its last
            // line says what the reply means, and it is answered above.
            _ if code.is_none_or(|c| c.is_success()) => Vec::new(),
            _ => held,
        }
    }

    /// Starts the connection to the server's passive port `to`. In server
    /// mode `auto` it is a probe, whose failure only switches the session
    /// to active, so it gets the probe's shorter deadline.
    pub(super) fn server_connect(&mut self, id: DataId, to: ServerAddr, probe: bool) {
        self.set_stage(Stage::ServerConnect { probe });
        let within = if probe {
            ConnectDeadline::PassiveProbe
        } else {
            ConnectDeadline::Connect
        };
        self.push(Action::Prepare {
            id,
            side: Side::Server,
            endpoint: Endpoint::Connect {
                to: to.into(),
                within,
            },
        });
    }
}

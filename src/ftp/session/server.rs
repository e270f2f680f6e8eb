//! What the server sends: replies matched to the commands that caused them,
//! forwarded, or consumed by the gateway (login, passive ports).

use super::*;

impl Session {
    /// A frame from the server.
    pub fn on_server(&mut self, frame: Frame, policy: &dyn Policy) {
        if matches!(self.phase, Phase::Closed | Phase::Opaque) {
            return;
        }
        let raw = match frame {
            Frame::Line(line) => line.raw,
            Frame::TooLong { prefix } => {
                self.event(Event::Unparsed {
                    from: Side::Server,
                    line: format!(
                        "over-long line cut: {}",
                        lossy(&prefix[..prefix.len().min(60)])
                    ),
                });
                prefix
            }
        };
        let Some(rl) = self.replies.classify(&raw) else {
            self.event(Event::Unparsed {
                from: Side::Server,
                line: lossy(&raw),
            });
            let mut bytes = raw;
            bytes.extend_from_slice(b"\r\n");
            self.send_client(bytes);
            return;
        };
        let code = rl.code;
        let consumes = matches!(
            self.pending.front(),
            Some(
                Pending::RoutedGreeting
                    | Pending::ServerPassive { .. }
                    | Pending::ServerActive { .. }
                    | Pending::Overdue
            )
        );
        if consumes {
            if self.collected.len() < MAX_COLLECT {
                self.collected
                    .extend_from_slice(&raw[rl.text_at.min(raw.len())..]);
                self.collected.push(b'\n');
            }
            if rl.last && !code.is_preliminary() {
                let text = std::mem::take(&mut self.collected);
                if let Some(head) = self.pending.pop_front() {
                    self.consumed_reply(head, code, &text, policy);
                }
                self.flush_local();
            } else if rl.last {
                self.collected.clear();
            }
            return;
        }
        if self.late_preliminary(code, rl.last) {
            return;
        }
        let mut bytes = raw;
        bytes.extend_from_slice(b"\r\n");
        match self.pending.front() {
            None => {
                if rl.first && matches!(code.0, 227..=229) {
                    self.event(Event::UnsolicitedPassive { code: code.0 });
                }
                self.send_client(bytes);
            }
            Some(&Pending::Forward { data: Some(id), .. })
                if !code.is_preliminary() && code.is_success() =>
            {
                self.push(Action::ToClientAfterData { id, bytes });
            }
            Some(_) => self.send_client(bytes),
        }
        if rl.last && !code.is_preliminary() {
            if let Some(head) = self.pending.pop_front() {
                self.forwarded_reply(head, code);
            }
            self.flush_local();
        }
    }

    pub(super) fn forwarded_reply(&mut self, head: Pending, code: ReplyCode) {
        let (verb, data) = match head {
            Pending::Forward { verb, data } => (verb, data),
            Pending::User { name } => {
                match code.0 {
                    230 => self.accept_login(Some(name)),
                    331 | 332 => self.candidate = Some(name),
                    _ => self.candidate = None,
                }
                return;
            }
            _ => return,
        };
        // After a failed transfer the channel will never be used: close it.
        // After a successful one the data has flowed (or is still being
        // accepted and relayed): the relay ends by itself.
        if let Some(id) = data.filter(|_| !code.is_success()) {
            self.push(Action::Release { id });
            if self.transfer == Some(id) {
                self.transfer = None;
            }
        }
        match verb {
            cmd::PASS | cmd::ACCT if code.0 == 230 => {
                let name = self.candidate.take();
                self.accept_login(name);
            }
            cmd::AUTH if code.0 == 234 => {
                self.phase = Phase::Opaque;
                self.event(Event::TlsPassthrough);
                if let Some(id) = self.ready.take() {
                    self.push(Action::Release { id });
                }
                self.push(Action::Opaque);
            }
            cmd::QUIT if code.is_success() => self.close(),
            _ => {}
        }
    }

    /// A 230 ended a login exchange for `name`; without one (a 230 to a
    /// PASS whose USER was refused, as vsftpd's "Already logged in") the
    /// identity already accepted stays.
    pub(super) fn accept_login(&mut self, name: Option<String>) {
        if let Some(name) = name {
            self.user = Some(name);
        } else if !self.logged_in {
            self.user = self.proposed.clone();
        }
        self.candidate = None;
        self.logged_in = true;
        self.event(Event::LoggedIn);
    }

    pub(super) fn consumed_reply(
        &mut self,
        head: Pending,
        code: ReplyCode,
        text: &[u8],
        policy: &dyn Policy,
    ) {
        match head {
            Pending::RoutedGreeting => {
                if code.is_success() {
                    let user = self.route_user.take().unwrap_or_default();
                    self.phase = Phase::Open;
                    let text = [&b"USER "[..], &user].concat();
                    self.send_server(encode_line(&text, false));
                    self.pending.push_back(Pending::User {
                        name: String::from_utf8_lossy(&user).into_owned(),
                    });
                    self.drain_held(policy);
                } else {
                    let first = lossy(text.split(|&b| b == b'\n').next().unwrap_or_default());
                    self.send_client(reply(
                        421,
                        &format!("The server is not ready: {} {first}", code.0),
                    ));
                    self.close();
                }
            }
            Pending::ServerPassive { id, verb } => {
                self.server_passive_reply(id, verb, code, text, policy)
            }
            Pending::ServerActive { id, verb } => {
                if self.current(id, Side::Server) != Some(Stage::ServerPortReply) {
                    return;
                }
                if code.is_success() {
                    self.client_side(policy);
                } else {
                    let first = lossy(text.split(|&b| b == b'\n').next().unwrap_or_default());
                    let msg = format!(
                        "Can't open data connection: the server refused {verb} ({} {first}).",
                        code.0
                    );
                    self.fail_setup(425, &msg, policy);
                }
            }
            Pending::Greeting
            | Pending::Forward { .. }
            | Pending::User { .. }
            | Pending::Local(_)
            | Pending::Overdue => {}
        }
    }

    pub(super) fn server_passive_reply(
        &mut self,
        id: DataId,
        verb: Verb,
        code: ReplyCode,
        text: &[u8],
        policy: &dyn Policy,
    ) {
        let Some(Stage::ServerPassiveReply { probe }) = self.current(id, Side::Server) else {
            return;
        };
        let Some(server) = self.server else { return };
        let parsed: Result<SocketAddr, String> = match code.0 {
            227 => codec::find_227(text)
                .map(|f| SocketAddr::V4(f.addr))
                .map_err(|e| e.to_string()),
            228 => codec::find_228(text).map_err(|e| e.to_string()),
            229 => codec::find_229(text)
                .map(|e| SocketAddr::new(e.addr.unwrap_or(server.ip()), e.port))
                .map_err(|e| e.to_string()),
            c => Err(format!(
                "the server answered {verb} with {c} {}",
                lossy(text.split(|&b| b == b'\n').next().unwrap_or_default())
            )),
        };
        let data = match parsed {
            Ok(a) => a,
            Err(reason) => {
                if code.is_success() {
                    self.event(Event::Unparsed {
                        from: Side::Server,
                        line: format!("{} {}", code.0, lossy(text)),
                    });
                }
                if probe {
                    self.passive_failed = true;
                    self.event(Event::PassiveFallback {
                        reason: reason.clone(),
                    });
                    self.server_listen(id, server);
                } else {
                    self.fail_setup(
                        425,
                        &format!("Can't open data connection: {reason}."),
                        policy,
                    );
                }
                return;
            }
        };
        let advertised = ServerAddr::new(data);
        let target = if self.cfg.trust_passive_address && !advertised.ip().is_unspecified() {
            advertised.scoped_like(server)
        } else {
            if advertised.ip() != server.ip() && !advertised.ip().is_unspecified() {
                self.event(Event::PassiveAddressIgnored {
                    advertised: advertised.ip(),
                    used: server.ip(),
                });
            }
            server.with_port(data.port())
        };
        if self.forward_passive(id, target, probe) {
            return;
        }
        self.server_connect(id, target, probe);
    }
}

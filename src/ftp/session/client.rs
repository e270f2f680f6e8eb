//! What the client sends: commands checked, forwarded, held or answered
//! by the gateway, and the data commands that start a setup.

use super::*;

impl Session {
    // ---------------------------------------------------------------- client

    /// A frame from the client.
    pub fn on_client(&mut self, frame: Frame, policy: &dyn Policy) {
        match self.phase {
            Phase::Closed | Phase::Opaque => return,
            _ => {}
        }
        if self.pipeline_full() {
            return;
        }
        match frame {
            Frame::TooLong { prefix } => {
                let detail = format!("line over the cap: {}", show_line(&prefix, 40).text);
                self.deny(500, "Command line too long.", Denial::LineTooLong, detail);
            }
            Frame::Line(line) => {
                if self.busy() || !self.held.is_empty() {
                    if self.held.len() >= self.cfg.max_held_lines {
                        self.event(Event::Denied {
                            reason: Denial::Pipeline,
                            detail: format!("{} commands held", self.held.len()),
                        });
                        self.send_client(reply(421, "Too many commands sent ahead; closing."));
                        self.close();
                        return;
                    }
                    self.held.push_back(line);
                    if !self.busy() {
                        self.drain_held(policy);
                    }
                    return;
                }
                self.client_line(line, policy);
            }
        }
    }

    pub(super) fn drain_held(&mut self, policy: &dyn Policy) {
        while !self.busy() && !matches!(self.phase, Phase::Closed | Phase::Opaque) {
            let Some(line) = self.held.pop_front() else {
                break;
            };
            self.client_line(line, policy);
        }
    }

    /// Closes the session when the client has run too far ahead of the
    /// server's replies (a server that never answers, or a client that
    /// pipelines without end): the queue of replies owed must stay bounded.
    pub(super) fn pipeline_full(&mut self) -> bool {
        if self.pending.len() < self.cfg.max_pending {
            return false;
        }
        self.event(Event::Denied {
            reason: Denial::Pipeline,
            detail: format!("{} replies owed", self.pending.len()),
        });
        self.send_client(reply(421, "Too many commands without replies; closing."));
        self.close();
        true
    }

    pub(super) fn client_line(&mut self, line: Line, policy: &dyn Policy) {
        if self.pipeline_full() {
            return;
        }
        let checked = match line.decode() {
            Ok(c) => c,
            Err(e) => {
                let shown = show_line(&line.raw, MAX_SHOWN);
                // The byte after the IAC is part of the line's text.
                let detail = if shown.secret {
                    format!("{}: {}", e.without_byte(), shown.text)
                } else {
                    format!("{e}: {}", shown.text)
                };
                self.deny(
                    500,
                    "Telnet sequence not allowed here; command refused.",
                    Denial::Telnet,
                    detail,
                );
                return;
            }
        };
        let text = checked.text;
        let command = match parse_command(&text) {
            Ok(c) => c,
            Err(e) => {
                let detail = format!("{e}: {}", show_line(&text, MAX_SHOWN).text);
                self.deny(
                    500,
                    "Syntax error, command unrecognized.",
                    Denial::Syntax,
                    detail,
                );
                return;
            }
        };
        let data_mode = match command.verb {
            cmd::PASV => Some(ClientMode::Pasv),
            cmd::EPSV => Some(ClientMode::Epsv),
            cmd::LPSV => Some(ClientMode::Lpsv),
            cmd::PORT => Some(ClientMode::Port),
            cmd::EPRT => Some(ClientMode::Eprt),
            cmd::LPRT => Some(ClientMode::Lprt),
            _ => None,
        };
        let ctx = CommandContext {
            verb: command.verb,
            user: self.user(),
            client: self.cfg.client.ip(),
            server: self.server.map(SocketAddr::from),
            data_mode,
        };
        if let Verdict::Deny {
            code,
            text: reply_text,
            rule,
        } = policy.check_command(&ctx)
        {
            let detail = format!("{} by rule {rule}", command.verb);
            self.deny(code, &reply_text, Denial::Rule(rule), detail);
            return;
        }
        if self.phase == Phase::WaitUser {
            self.before_route(command);
            return;
        }
        // The server gets exactly the text checked above, re-encoded: never
        // the raw bytes, whose telnet sequences it might read differently.
        let wire = encode_line(&text, checked.synch && command.verb == cmd::ABOR);
        match command.verb {
            cmd::USER => {
                // Logged in, the accepted identity stays until a new 230: a
                // refused USER leaves the server's login as it was.
                let name = lossy(command.arg);
                self.proposed = Some(name.clone());
                self.event(Event::User { name: name.clone() });
                self.send_server(wire);
                self.pending.push_back(Pending::User { name });
            }
            cmd::PORT | cmd::EPRT | cmd::LPRT => self.client_active(command, policy),
            cmd::PASV | cmd::EPSV | cmd::LPSV => self.client_passive(command, policy),
            cmd::AUTH => match policy.tls() {
                TlsPolicy::Refuse => self.deny(
                    534,
                    "TLS is not available through this gateway; continue without it.",
                    Denial::Tls,
                    format!("AUTH {}", lossy(command.arg)),
                ),
                TlsPolicy::Passthrough => self.forward(wire, command.verb, None),
            },
            cmd::REIN => {
                self.user = None;
                self.proposed = None;
                self.candidate = None;
                self.logged_in = false;
                self.epsv_all = false;
                if let Some(id) = self.ready.take() {
                    self.push(Action::Release { id });
                }
                self.forward(wire, command.verb, None);
            }
            cmd::ABOR => {
                self.cut_transfer();
                self.forward(wire, cmd::ABOR, None);
            }
            v => match Direction::of(v) {
                Some(direction) => {
                    let data = self.ready.take();
                    if let Some(id) = data {
                        self.transfer = Some(id);
                        self.push(Action::Transfer {
                            id,
                            verb: v,
                            direction,
                            arg: lossy(command.arg),
                        });
                    }
                    self.forward(wire, v, data);
                }
                None => self.forward(wire, v, None),
            },
        }
    }

    pub(super) fn forward(&mut self, wire: Vec<u8>, verb: Verb, data: Option<DataId>) {
        self.send_server(wire);
        self.pending.push_back(Pending::Forward { verb, data });
    }

    /// After `EPSV ALL` only EPSV may set up data (RFC 2428): refuses
    /// anything else and says so.
    pub(super) fn refused_after_epsv_all(&mut self, mode: ClientMode) -> bool {
        if !self.epsv_all {
            return false;
        }
        let detail = format!("{} after EPSV ALL", mode.as_str());
        self.deny(
            503,
            "EPSV ALL is in effect; only EPSV may be used.",
            Denial::Protocol,
            detail,
        );
        true
    }

    pub(super) fn client_active(&mut self, command: Command<'_>, policy: &dyn Policy) {
        let (mode, parsed) = match command.verb {
            cmd::PORT => (
                ClientMode::Port,
                codec::parse_port(command.arg).map(SocketAddr::V4),
            ),
            cmd::EPRT => (ClientMode::Eprt, codec::parse_eprt(command.arg)),
            _ => (ClientMode::Lprt, codec::parse_lprt(command.arg)),
        };
        let name = mode.as_str();
        if self.refused_after_epsv_all(mode) {
            return;
        }
        let addr = match parsed {
            Ok(a) => ClientAddr::new(a).scoped_like(self.cfg.client),
            Err(codec::CodecError::Family(_)) if mode == ClientMode::Eprt => {
                let text = "Network protocol not supported, use (1,2)";
                self.deny(
                    522,
                    text,
                    Denial::Syntax,
                    format!("EPRT {}", lossy(command.arg)),
                );
                return;
            }
            Err(e) => {
                let text = format!("Syntax error in {name} argument: {e}.");
                self.deny(
                    501,
                    &text,
                    Denial::Syntax,
                    format!("{name} {}: {e}", lossy(command.arg)),
                );
                return;
            }
        };
        let client_ip = self.cfg.client.ip();
        if self.cfg.bounce_protection && addr.ip() != client_ip {
            let text = format!(
                "Illegal {name} command: {} is not your address ({client_ip}).",
                addr.ip()
            );
            self.deny(
                500,
                &text,
                Denial::Bounce,
                format!("{name} {addr} from {client_ip}"),
            );
            return;
        }
        if self.cfg.refuse_low_ports && addr.port() < 1024 {
            let text = format!(
                "Illegal {name} command: port {} is below 1024.",
                addr.port()
            );
            self.deny(504, &text, Denial::LowPort, format!("{name} {addr}"));
            return;
        }
        self.start_setup(ClientReq::Active(mode, addr), policy);
    }

    pub(super) fn client_passive(&mut self, command: Command<'_>, policy: &dyn Policy) {
        let client_v4 = self.cfg.client.is_ipv4();
        let mode = match command.verb {
            cmd::PASV => ClientMode::Pasv,
            cmd::EPSV => ClientMode::Epsv,
            _ => ClientMode::Lpsv,
        };
        if mode == ClientMode::Epsv {
            let arg = String::from_utf8_lossy(command.arg)
                .trim()
                .to_ascii_uppercase();
            match arg.as_str() {
                "" => {}
                "ALL" => {
                    // Not forwarded: the server side may need PORT later.
                    self.epsv_all = true;
                    self.reply_local(reply(200, "EPSV ALL ok."));
                    return;
                }
                "1" | "2" => {
                    if (arg == "1") != client_v4 {
                        let text = if client_v4 {
                            "Network protocol not supported, use (1)"
                        } else {
                            "Network protocol not supported, use (2)"
                        };
                        self.deny(522, text, Denial::Protocol, format!("EPSV {arg}"));
                        return;
                    }
                }
                _ => {
                    self.deny(
                        501,
                        "Syntax error in EPSV argument.",
                        Denial::Syntax,
                        format!("EPSV {arg}"),
                    );
                    return;
                }
            }
        } else if self.refused_after_epsv_all(mode) {
            return;
        }
        // A pinhole admits only the expected peer, the client's control
        // address (RFC 2577). PASV and LPSV tell the client where to connect,
        // and it connects from an address of that family: to a v4 address a
        // v6 client comes from a v4 address the gateway cannot know, and the
        // pinhole would refuse it. So the advertised address must be of the
        // client's family (PASV: v4 only); EPSV carries no address, the
        // client comes back the way it reached the gateway, and always works.
        if matches!(mode, ClientMode::Pasv | ClientMode::Lpsv) {
            let advertise_v4 = self
                .cfg
                .client_advertise
                .map(|a| a.to_canonical().is_ipv4());
            let same_family = advertise_v4.is_none_or(|v4| v4 == client_v4);
            if !same_family || (mode == ClientMode::Pasv && !client_v4) {
                let text = if mode == ClientMode::Pasv && !client_v4 {
                    "PASV carries only IPv4 addresses; use EPSV."
                } else {
                    "The gateway's passive address is not of your address family; use EPSV."
                };
                let detail = format!(
                    "{} from {} with advertise {:?}",
                    mode.as_str(),
                    self.cfg.client.ip(),
                    self.cfg.client_advertise
                );
                self.deny(425, text, Denial::Protocol, detail);
                return;
            }
        }
        self.start_setup(ClientReq::Passive(mode), policy);
    }
}

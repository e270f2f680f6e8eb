//! What the client sends: lines held while the gateway is busy, and the
//! data commands checked into a request for a data setup.

use super::action::{ClientMode, Denial};
use super::output::{lossy, Refused};
use super::policy::SessionConfig;
use crate::addrs::ClientAddr;
use crate::ftp::codec;
use crate::ftp::command::{self as cmd, Command, Verb};
use crate::ftp::framer::{Line, TelnetError};
use crate::ftp::redact::{show_line, MAX_SHOWN};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// What the client asked for one data channel.
#[derive(Debug, Clone, Copy)]
pub(super) enum ClientReq {
    /// PASV, EPSV or LPSV: the client dials the gateway.
    Passive(ClientMode),
    /// PORT, EPRT or LPRT: the gateway dials the client there.
    Active(ClientMode, ClientAddr),
}

impl ClientReq {
    pub(super) fn mode(self) -> ClientMode {
        match self {
            ClientReq::Passive(m) | ClientReq::Active(m, _) => m,
        }
    }
}

/// The client's side of the dialogue: lines held while a setup is under
/// way, and whether `EPSV ALL` is in effect.
#[derive(Debug, Default)]
pub(super) struct ClientInput {
    held: VecDeque<Line>,
    epsv_all: bool,
}

impl ClientInput {
    /// How many lines wait.
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }

    pub(super) fn hold(&mut self, line: Line) {
        self.held.push_back(line);
    }

    /// The next line held, oldest first.
    pub(super) fn next(&mut self) -> Option<Line> {
        self.held.pop_front()
    }

    /// REIN: `EPSV ALL` ends with the login.
    pub(super) fn reset(&mut self) {
        self.epsv_all = false;
    }

    /// After `EPSV ALL` only EPSV may set up data (RFC 2428).
    fn refused_after_epsv_all(&self, mode: ClientMode) -> Result<(), Refused> {
        if !self.epsv_all {
            return Ok(());
        }
        Err(Refused::new(
            503,
            "EPSV ALL is in effect; only EPSV may be used.",
            Denial::Protocol,
            format!("{} after EPSV ALL", mode.as_str()),
        ))
    }

    /// PORT, EPRT or LPRT, checked: the address must be the client's own
    /// (bounce protection) and its port unprivileged.
    pub(super) fn active(
        &self,
        command: Command<'_>,
        cfg: &SessionConfig,
    ) -> Result<ClientReq, Refused> {
        let (mode, parsed) = match command.verb {
            cmd::PORT => (
                ClientMode::Port,
                codec::parse_port(command.arg).map(SocketAddr::V4),
            ),
            cmd::EPRT => (ClientMode::Eprt, codec::parse_eprt(command.arg)),
            _ => (ClientMode::Lprt, codec::parse_lprt(command.arg)),
        };
        let name = mode.as_str();
        self.refused_after_epsv_all(mode)?;
        let addr = match parsed {
            Ok(a) => ClientAddr::new(a).scoped_like(cfg.client),
            Err(codec::CodecError::Family(_)) if mode == ClientMode::Eprt => {
                return Err(Refused::new(
                    522,
                    "Network protocol not supported, use (1,2)",
                    Denial::Syntax,
                    format!("EPRT {}", lossy(command.arg)),
                ));
            }
            Err(e) => {
                return Err(Refused::new(
                    501,
                    format!("Syntax error in {name} argument: {e}."),
                    Denial::Syntax,
                    format!("{name} {}: {e}", lossy(command.arg)),
                ));
            }
        };
        let client_ip = cfg.client.ip();
        if cfg.bounce_protection && addr.ip() != client_ip {
            return Err(Refused::new(
                500,
                format!(
                    "Illegal {name} command: {} is not your address ({client_ip}).",
                    addr.ip()
                ),
                Denial::Bounce,
                format!("{name} {addr} from {client_ip}"),
            ));
        }
        if cfg.refuse_low_ports && addr.port() < 1024 {
            return Err(Refused::new(
                504,
                format!(
                    "Illegal {name} command: port {} is below 1024.",
                    addr.port()
                ),
                Denial::LowPort,
                format!("{name} {addr}"),
            ));
        }
        Ok(ClientReq::Active(mode, addr))
    }

    /// PASV, EPSV or LPSV, checked; `Ok(None)` for `EPSV ALL`, which the
    /// gateway answers itself (not forwarded: the server side may need
    /// PORT later).
    pub(super) fn passive(
        &mut self,
        command: Command<'_>,
        cfg: &SessionConfig,
    ) -> Result<Option<ClientReq>, Refused> {
        let client_v4 = cfg.client.is_ipv4();
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
                    self.epsv_all = true;
                    return Ok(None);
                }
                "1" | "2" if (arg == "1") != client_v4 => {
                    let text = if client_v4 {
                        "Network protocol not supported, use (1)"
                    } else {
                        "Network protocol not supported, use (2)"
                    };
                    return Err(Refused::new(
                        522,
                        text,
                        Denial::Protocol,
                        format!("EPSV {arg}"),
                    ));
                }
                "1" | "2" => {}
                _ => {
                    return Err(Refused::new(
                        501,
                        "Syntax error in EPSV argument.",
                        Denial::Syntax,
                        format!("EPSV {arg}"),
                    ));
                }
            }
        } else {
            self.refused_after_epsv_all(mode)?;
        }
        // A pinhole admits only the expected peer, the client's control
        // address (RFC 2577). PASV and LPSV tell the client where to connect,
        // and it connects from an address of that family: to a v4 address a
        // v6 client comes from a v4 address the gateway cannot know, and the
        // pinhole would refuse it. So the advertised address must be of the
        // client's family (PASV: v4 only); EPSV carries no address, the
        // client comes back the way it reached the gateway, and always works.
        if matches!(mode, ClientMode::Pasv | ClientMode::Lpsv) {
            let advertise_v4 = cfg.client_advertise.map(|a| a.to_canonical().is_ipv4());
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
                    cfg.client.ip(),
                    cfg.client_advertise
                );
                return Err(Refused::new(425, text, Denial::Protocol, detail));
            }
        }
        Ok(Some(ClientReq::Passive(mode)))
    }
}

/// The data mode a command asks for, for the policy.
pub(super) fn data_mode(verb: Verb) -> Option<ClientMode> {
    match verb {
        cmd::PASV => Some(ClientMode::Pasv),
        cmd::EPSV => Some(ClientMode::Epsv),
        cmd::LPSV => Some(ClientMode::Lpsv),
        cmd::PORT => Some(ClientMode::Port),
        cmd::EPRT => Some(ClientMode::Eprt),
        cmd::LPRT => Some(ClientMode::Lprt),
        _ => None,
    }
}

/// A line whose telnet bytes no FTP client sends.
pub(super) fn telnet_refused(line: &Line, e: TelnetError) -> Refused {
    let shown = show_line(&line.raw, MAX_SHOWN);
    // The byte after the IAC is part of the line's text.
    let detail = if shown.secret {
        format!("{}: {}", e.without_byte(), shown.text)
    } else {
        format!("{e}: {}", shown.text)
    };
    Refused::new(
        500,
        "Telnet sequence not allowed here; command refused.",
        Denial::Telnet,
        detail,
    )
}

/// A line that is not a command.
pub(super) fn syntax_refused(text: &[u8], e: impl std::fmt::Display) -> Refused {
    let detail = format!("{e}: {}", show_line(text, MAX_SHOWN).text);
    Refused::new(
        500,
        "Syntax error, command unrecognized.",
        Denial::Syntax,
        detail,
    )
}

/// Whether `verb`'s argument is a file or directory name, which a denial
/// then shows.
pub(super) fn names_a_file(verb: Verb) -> bool {
    const OTHERS: [Verb; 4] = [
        Verb::from_static("SIZE"),
        Verb::from_static("MDTM"),
        Verb::from_static("CWD"),
        Verb::from_static("XCWD"),
    ];
    super::action::Direction::of(verb).is_some()
        || (verb.is_write() && verb != cmd::SITE)
        || OTHERS.contains(&verb)
}

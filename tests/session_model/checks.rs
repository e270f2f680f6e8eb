//! The invariants the model checks on each action of the engine.

use super::Model;
use ftpalg::ftp::command::parse_command;
use ftpalg::ftp::framer::{DM, IAC, IP};
use ftpalg::ftp::session::{Action, Carriage, Endpoint, Side};
use std::net::SocketAddr;

impl Model {
    pub(super) fn check(&mut self, a: Action, answered: &Option<Option<Vec<u8>>>) {
        if self.trace {
            eprintln!("  <- {a:?}");
        }
        match a {
            Action::Prepare { id, side, endpoint } => {
                assert!(!self.closed, "Prepare after Close");
                // One channel in preparation: the driver holds no other
                // that has not started.
                for other in &self.held {
                    assert!(
                        *other == id || self.started.contains(other),
                        "{id:?} prepared while {other:?} is still in preparation"
                    );
                }
                assert!(
                    !self.ended.contains(&id),
                    "Prepare for {id:?}, which already ended"
                );
                self.setup = Some(id);
                self.prepare_ids.insert(id);
                self.held.insert(id);
                self.check_endpoint(side, endpoint, answered);
                self.outstanding.push((id, side, endpoint));
            }
            Action::Start { id, .. } => {
                assert!(
                    self.prepared.contains(&(id, Side::Server))
                        && self.prepared.contains(&(id, Side::Client)),
                    "Start for {id:?} without both sides reported prepared"
                );
                assert!(self.started.insert(id), "second Start for {id:?}");
                assert_eq!(self.setup, Some(id), "Start for a setup not under way");
                self.setup = None;
                self.ended.insert(id);
                // Like a driver, the model says how it carries the channel
                // as it starts it: through the gateway (the model's
                // sessions are on the relay data plane).
                self.s.data_started(id, Carriage::Through);
            }
            Action::Reset { id, .. } => {
                assert!(
                    self.held.remove(&id),
                    "Reset for {id:?}, which the driver no longer holds"
                );
                self.released.insert(id);
                if self.setup == Some(id) {
                    self.setup = None;
                }
                self.outstanding.retain(|o| o.0 != id);
                self.ended.insert(id);
            }
            Action::Retire { id, .. } => {
                assert!(self.started.contains(&id), "{id:?} retired before Start");
                assert!(
                    self.held.remove(&id),
                    "Retire for {id:?}, which the driver no longer holds"
                );
            }
            Action::Transfer { id, .. } => {
                assert!(self.started.contains(&id), "{id:?} used before Start");
                assert!(!self.released.contains(&id), "{id:?} used after Release");
            }
            Action::Cut { id } => {
                assert!(self.started.contains(&id), "{id:?} cut before Start");
                self.held.remove(&id);
            }
            Action::ToServer(bytes) => self.check_to_server(bytes),
            Action::Connect { .. } => self.connect_outstanding = true,
            Action::Close => {
                // What the driver still holds at the close is a transfer
                // under way, which ends with the session; anything else
                // was released.
                for id in &self.held {
                    assert!(
                        self.started.contains(id),
                        "{id:?} neither started nor released at close"
                    );
                }
                self.closed = true;
            }
            Action::ToClient(_) | Action::Opaque | Action::Event(_) => {}
        }
    }

    fn check_endpoint(&self, side: Side, endpoint: Endpoint, answered: &Option<Option<Vec<u8>>>) {
        match (side, endpoint) {
            (Side::Client, Endpoint::Listen { expect_peer }) => {
                assert_eq!(expect_peer, self.client.ip(), "pinhole for a stranger");
            }
            (Side::Client, Endpoint::Connect { to, .. }) => {
                assert_eq!(to.ip(), self.client.ip(), "data connection bounced");
                assert!(to.port() >= 1024, "data connection to a low port");
                if let (SocketAddr::V6(t), SocketAddr::V6(c)) = (to, self.client) {
                    if t.ip().is_unicast_link_local() {
                        assert_eq!(t.scope_id(), c.scope_id(), "scope lost");
                    }
                }
            }
            (_, Endpoint::Forward { .. }) => {
                panic!("a kernel forward asked of a session on the relay data plane")
            }
            (Side::Server, Endpoint::Listen { expect_peer }) => {
                let server = self
                    .s
                    .server()
                    .expect("server-side pinhole without a server");
                assert_eq!(expect_peer, server.ip());
            }
            (Side::Server, Endpoint::Connect { to, .. }) => {
                let server = self.s.server().expect("connect without a server");
                if !self.trust_passive {
                    assert_eq!(to.ip(), server.ip(), "passive address honoured");
                }
                match answered {
                    Some(Some(cmd)) if cmd == b"PASV" || cmd == b"EPSV" => {}
                    other => panic!(
                        "connect to the server not answering the gateway's own PASV/EPSV: {:?}",
                        other
                            .as_ref()
                            .map(|o| o.as_ref().map(|c| String::from_utf8_lossy(c).into_owned()))
                    ),
                }
            }
        }
    }

    fn check_to_server(&mut self, bytes: Vec<u8>) {
        let body = bytes
            .strip_suffix(b"\r\n")
            .unwrap_or_else(|| panic!("line to the server without CRLF: {bytes:?}"));
        assert!(
            !body.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
            "CR, LF or NUL inside a line to the server: {bytes:?}"
        );
        let (synch, body) = match body.strip_prefix(&[IAC, IP, IAC, DM]) {
            Some(rest) => (true, rest),
            None => (false, body),
        };
        // Undo the escaping of 255; a lone IAC would be a telnet command.
        let mut text = Vec::with_capacity(body.len());
        let mut i = 0;
        while i < body.len() {
            if body[i] == IAC {
                assert_eq!(
                    body.get(i + 1),
                    Some(&IAC),
                    "telnet command sent: {bytes:?}"
                );
                i += 1;
            }
            text.push(body[i]);
            i += 1;
        }
        let command = parse_command(&text)
            .unwrap_or_else(|e| panic!("the server got a non-command ({e}): {bytes:?}"));
        let verb = command.verb.as_str().to_string();
        assert!(!synch || verb == "ABOR", "synch before {verb}");
        assert_ne!(verb, "DELE", "a denied command reached the server");
        self.owed.push_back(Some(text.clone()));
        match verb.as_str() {
            "PASV" | "EPSV" => assert!(command.arg.is_empty(), "{bytes:?}"),
            "PORT" | "EPRT" => {
                let arg = String::from_utf8_lossy(command.arg);
                let named = if verb == "PORT" {
                    ftpalg::ftp::codec::parse_port(command.arg).map(SocketAddr::V4)
                } else {
                    ftpalg::ftp::codec::parse_eprt(command.arg)
                };
                let named = named.unwrap_or_else(|e| panic!("bad {verb} {arg}: {e}"));
                assert!(
                    self.gateway_ports.contains(&named),
                    "{verb} {arg} names no listener of the gateway"
                );
            }
            "LPRT" | "LPSV" => panic!("{verb} sent to the server"),
            _ => {
                // A client line, exactly as fed and checked: or the USER of
                // a USER name@host the client sent.
                let pos = self.fed.iter().position(|f| *f == text);
                // A routed USER carries the name part of a `USER name@host`.
                let name = text.get(5..).unwrap_or_default();
                let routed = verb == "USER"
                    && self.fed.iter().any(|f| {
                        parse_command(f).is_ok_and(|c| c.verb.as_str() == "USER")
                            && f.windows(name.len() + 1)
                                .any(|w| &w[..name.len()] == name && w[name.len()] == b'@')
                    });
                match pos {
                    Some(p) => {
                        self.fed.remove(p);
                    }
                    None => assert!(
                        routed,
                        "the server got a line the client never sent: {bytes:?}"
                    ),
                }
                if !routed || pos.is_some() {
                    let mut checked = self.policy.checked.borrow_mut();
                    let at = checked
                        .iter()
                        .position(|v| v.as_str() == verb)
                        .unwrap_or_else(|| panic!("{verb} forwarded without a policy check"));
                    checked.remove(at);
                }
            }
        }
    }
}

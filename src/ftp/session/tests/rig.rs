//! A session fed raw bytes through a real framer, with any policy: for the
//! tests where framing itself is under attack.

use super::super::*;
use crate::ftp::framer::LineFramer;

/// Denies every write command (rule `read-only`) and, for the user
/// `anonymous`, STOR (rule `anon-no-stor`); allows the rest.
pub(super) struct ReadOnly;

impl Policy for ReadOnly {
    fn check_command(&self, ctx: &CommandContext<'_>) -> Verdict {
        if ctx.verb == cmd::STOR && ctx.user == Some("anonymous") {
            return Verdict::Deny {
                code: 550,
                text: "No uploads for anonymous.".into(),
                rule: "anon-no-stor".into(),
            };
        }
        if ctx.verb.is_write() && ctx.verb != cmd::STOR {
            return Verdict::Deny {
                code: 550,
                text: "Read-only.".into(),
                rule: "read-only".into(),
            };
        }
        Verdict::Allow
    }
    fn server_mode(&self, _: IpAddr, _: SocketAddr) -> ServerDataMode {
        ServerDataMode::SameAsClient
    }
    fn tls(&self) -> TlsPolicy {
        TlsPolicy::Refuse
    }
}

pub(super) struct Rig<P: Policy> {
    pub s: Session,
    pub policy: P,
    framer: LineFramer,
}

impl<P: Policy> Rig<P> {
    /// A session with `cfg`, greeted by the server.
    pub fn with(cfg: SessionConfig, policy: P) -> Rig<P> {
        let mut r = Rig {
            s: Session::new(cfg),
            policy,
            framer: LineFramer::new(256),
        };
        r.server("220 hello");
        r.drain();
        r
    }
    pub fn new(policy: P) -> Rig<P> {
        Rig::with(
            SessionConfig::new(
                super::sa(super::CLIENT),
                Upstream::Fixed(super::sa(super::SERVER)),
            ),
            policy,
        )
    }
    /// Client bytes as they come off the socket.
    pub fn bytes(&mut self, b: &[u8]) {
        let mut frames = Vec::new();
        self.framer.push(b, &mut frames);
        for f in frames {
            self.s.on_client(f, &self.policy);
        }
    }
    pub fn server(&mut self, line: &str) {
        self.s
            .on_server(Frame::Line(Line::new(line.as_bytes())), &self.policy);
    }
    pub fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.s.poll_action()).collect()
    }
}

/// Everything written to the server, as one byte string.
pub(super) fn wire_to_server(acts: &[Action]) -> Vec<u8> {
    acts.iter()
        .filter_map(|a| match a {
            Action::ToServer(b) => Some(b.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The commands a server would run from `wire` if it split lines at any
/// CR or LF (vsftpd splits at LF; others at CR): upper-cased, trimmed.
pub(super) fn server_commands(wire: &[u8]) -> Vec<String> {
    wire.split(|&b| b == b'\n' || b == b'\r')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let l: Vec<u8> = l.iter().copied().filter(|&b| b < 0xf0).collect();
            String::from_utf8_lossy(&l).trim().to_ascii_uppercase()
        })
        .collect()
}

pub(super) fn denials(acts: &[Action]) -> Vec<Denial> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Event(Event::Denied { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn client_replies(acts: &[Action]) -> Vec<String> {
    acts.iter()
        .filter_map(|a| match a {
            Action::ToClient(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect()
}

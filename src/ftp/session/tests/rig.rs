//! The engine's test rig: a session driven line by line or with raw bytes
//! through a real framer (for the tests where framing itself is under
//! attack), under any policy; and the actions the tests expect of it.

use super::super::*;
use crate::ftp::framer::{Frame, Line, LineFramer};

pub(super) const CLIENT: &str = "100.64.0.2:40000";
pub(super) const SERVER: &str = "198.51.100.10:21";

pub(super) fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The usual session: [`CLIENT`] to the fixed [`SERVER`].
pub(super) fn config() -> SessionConfig {
    SessionConfig::new(sa(CLIENT), Upstream::Fixed(sa(SERVER)))
}

/// Allows every command, refuses TLS, and opens data towards the server
/// in `server_mode`.
pub(super) fn allow_all(server_mode: ServerDataMode) -> AllowAll {
    AllowAll {
        server_mode,
        tls: TlsPolicy::Refuse,
    }
}

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

/// A session under `policy`, with the framer a driver would read the
/// client through, and a clock the test moves: like a driver, the rig says
/// what time it is before it hands the session anything, and how a channel
/// it starts is carried (beside the gateway when its side was to be
/// forwarded by the kernel) as soon as it is asked to start it.
pub(super) struct Rig<P: Policy = AllowAll> {
    pub s: Session,
    pub policy: P,
    framer: LineFramer,
    pub now: Time,
    /// The session's actions taken so far, not yet drained.
    taken: Vec<Action>,
    /// Channels whose last side asked for is one the kernel forwards.
    forwarded: std::collections::HashSet<DataId>,
}

impl<P: Policy> Rig<P> {
    /// A session with `cfg` as it starts: nothing read from either side.
    pub fn open(cfg: SessionConfig, policy: P) -> Rig<P> {
        Rig {
            s: Session::new(cfg),
            policy,
            framer: LineFramer::new(256),
            now: Time::ZERO,
            taken: Vec::new(),
            forwarded: std::collections::HashSet::new(),
        }
    }

    /// Takes the session's actions as a driver carries them out, saying
    /// how each channel it starts is carried.
    fn take(&mut self) {
        while let Some(a) = self.s.poll_action() {
            match &a {
                Action::Prepare { id, endpoint, .. } => {
                    if matches!(endpoint, Endpoint::Forward { .. }) {
                        self.forwarded.insert(*id);
                    } else {
                        self.forwarded.remove(id);
                    }
                }
                Action::Start { id, .. } => {
                    let carriage = if self.forwarded.contains(id) {
                        Carriage::Beside
                    } else {
                        Carriage::Through
                    };
                    self.s.data_started(*id, carriage);
                }
                _ => {}
            }
            self.taken.push(a);
        }
    }

    /// A session with `cfg` whose server has greeted it; the greeting has
    /// reached the client, and nothing else has happened.
    pub fn with(cfg: SessionConfig, policy: P) -> Rig<P> {
        let mut r = Rig::open(cfg, policy);
        r.server("220 hello");
        assert_eq!(r.drain(), vec![to_client("220 hello")]);
        r
    }

    /// [`Rig::with`] the usual [`config`].
    pub fn new(policy: P) -> Rig<P> {
        Rig::with(config(), policy)
    }

    /// One client line, as the framer hands it over.
    pub fn client(&mut self, line: impl AsRef<[u8]>) {
        self.s.heard(self.now);
        self.s
            .on_client(Frame::Line(Line::new(line.as_ref())), &self.policy);
        self.take();
    }

    /// Client bytes as they come off the socket.
    pub fn bytes(&mut self, b: &[u8]) {
        self.s.heard(self.now);
        let mut frames = Vec::new();
        self.framer.push(b, &mut frames);
        for f in frames {
            self.s.on_client(f, &self.policy);
        }
        self.take();
    }

    /// One server line.
    pub fn server(&mut self, line: impl AsRef<[u8]>) {
        self.s.heard(self.now);
        self.s
            .on_server(Frame::Line(Line::new(line.as_ref())), &self.policy);
        self.take();
    }

    /// The relay of channel `id` has delivered (or failed to deliver) the
    /// server's data to the client.
    pub fn delivered(&mut self, id: u64, outcome: Result<(), &str>) {
        self.s.heard(self.now);
        self.s.data_delivered(DataId(id), outcome);
        self.take();
    }

    /// Channel `id` has ended.
    pub fn ended(&mut self, id: u64, outcome: Result<(), &str>) {
        self.s.heard(self.now);
        self.s.data_ended(DataId(id), outcome);
        self.take();
    }

    /// Time passes; the session's timeout is handled if it is due.
    pub fn later(&mut self, d: std::time::Duration) {
        self.now = self.now + d;
        if self.s.poll_timeout().is_some_and(|t| t <= self.now) {
            self.s.handle_timeout(self.now);
            self.take();
        }
    }

    /// Every action the session has for the driver.
    pub fn drain(&mut self) -> Vec<Action> {
        self.take();
        std::mem::take(&mut self.taken)
    }

    /// Actions without events, for terse assertions.
    pub fn acts(&mut self) -> Vec<Action> {
        self.drain()
            .into_iter()
            .filter(|a| !matches!(a, Action::Event(_)))
            .collect()
    }

    /// The driver has prepared channel `id`'s `side` at `local`.
    pub fn prepared(&mut self, id: u64, side: Side, local: &str) {
        self.s.heard(self.now);
        self.s
            .data_prepared(DataId(id), side, sa(local), &self.policy);
        self.take();
    }

    /// The driver could not prepare channel `id`'s `side`.
    pub fn failed(&mut self, id: u64, side: Side, why: &str) {
        self.s.heard(self.now);
        self.s.data_failed(DataId(id), side, why, &self.policy);
        self.take();
    }

    /// PASV through to both sides prepared: channel 1 is ready, its
    /// actions drained.
    pub fn pasv_prepared(&mut self) {
        self.client("PASV");
        self.server("227 (198,51,100,10,4,1)");
        self.prepared(1, Side::Server, "198.51.100.1:5000");
        self.prepared(1, Side::Client, "100.64.0.1:5001");
        self.acts();
    }
}

pub(super) fn to_client(s: &str) -> Action {
    Action::ToClient(format!("{s}\r\n").into_bytes())
}

/// The driver resets channel `id` for `why`.
pub(super) fn reset(id: u64, why: Cancel) -> Action {
    Action::Reset {
        id: DataId(id),
        why,
    }
}

pub(super) fn to_server(s: &str) -> Action {
    Action::ToServer(format!("{s}\r\n").into_bytes())
}

pub(super) fn start(id: u64, client_mode: ClientMode, server_mode: ServerMode) -> Action {
    Action::Start {
        id: DataId(id),
        client_mode,
        server_mode,
    }
}

pub(super) fn prepare(id: u64, side: Side, endpoint: Endpoint) -> Action {
    Action::Prepare {
        id: DataId(id),
        side,
        endpoint,
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

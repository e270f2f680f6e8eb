//! The per-session control-channel state machine.
//!
//! The driver feeds it client lines, server lines and the outcome of the
//! socket work it asked for; it answers with [`Action`]s, in order. It reads
//! no clock and touches no socket, so every decision here is unit-tested.
//!
//! The gateway terminates both control connections and both data
//! connections. For each transfer the client side follows what the client
//! asked for (PASV, EPSV, LPSV, PORT, EPRT, LPRT); the server side uses the
//! mode the policy chooses. Replies from the server are matched to the
//! commands that caused them in order, which keeps pipelined commands and
//! multi-line replies in step and lets a 227 be honoured only as the answer
//! to a PASV the gateway itself sent.

mod abort;
mod action;
mod client;
mod closing;
mod forward;
mod policy;
mod route;
mod server;
mod setup;

#[cfg(test)]
use route::split_user_host;
#[cfg(test)]
use std::net::IpAddr;

pub use action::{
    Action, ClientMode, ConnectDeadline, DataId, Denial, Direction, Endpoint, Event, ServerMode,
    Side,
};
pub use closing::CloseReason;
pub use policy::{
    AllowAll, CommandContext, DataPlane, Policy, ServerDataMode, SessionConfig, TlsPolicy,
    Upstream, Verdict,
};

use crate::addrs::{ClientAddr, ServerAddr};
use crate::ftp::codec::{self, encode_229, encode_eprt, encode_lprt, encode_port};
use crate::ftp::command::{self as cmd, parse_command, Command, Verb};
use crate::ftp::framer::{encode_line, Frame, Line};
use crate::ftp::redact::{show_line, MAX_SHOWN};
use crate::ftp::reply::{ReplyCode, ReplyTracker};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Cap on the text the engine collects from a reply it consumes itself.
const MAX_COLLECT: usize = 8 * 1024;

/// Where the session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for `USER name@host` (user@host routing).
    WaitUser,
    /// The driver is connecting to the server the client named.
    Routing,
    /// Waiting for the greeting of the server the client named.
    Greeting,
    /// Relaying commands and replies.
    Open,
    /// Copying raw bytes (TLS passed through).
    Opaque,
    /// Done.
    Closed,
}

#[derive(Debug)]
enum Pending {
    /// The server's greeting, forwarded.
    Greeting,
    /// The greeting of a server reached by user@host: swallowed, then USER.
    RoutedGreeting,
    /// A forwarded command whose reply is forwarded.
    Forward { verb: Verb, data: Option<DataId> },
    /// A forwarded USER: its reply says whether `name` is being logged in.
    User { name: String },
    /// Our PASV/EPSV to the server.
    ServerPassive { id: DataId, verb: Verb },
    /// Our PORT/EPRT to the server.
    ServerActive { id: DataId, verb: Verb },
    /// A reply of our own, waiting until earlier replies have been passed on.
    Local(Vec<u8>),
    /// A transfer the gateway answered itself (`426`) because the server
    /// stayed silent after its data was cut: the server's late reply is
    /// dropped, so the client never gets two answers to one command.
    Overdue,
}

#[derive(Debug, Clone, Copy)]
enum ClientReq {
    Passive(ClientMode),
    Active(ClientMode, ClientAddr),
}

impl ClientReq {
    fn mode(self) -> ClientMode {
        match self {
            ClientReq::Passive(m) | ClientReq::Active(m, _) => m,
        }
    }
}

/// Where a data setup stands; a stage carries what only it needs, and the
/// server side's mode follows from it. `probe` marks the server's passive
/// port tried in server mode `auto`: its failure switches the session to
/// active instead of failing the setup, and its connection gets the
/// probe's shorter deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Our PASV/EPSV is with the server.
    ServerPassiveReply { probe: bool },
    /// The driver connects to the server's passive port.
    ServerConnect { probe: bool },
    /// The driver opens a pinhole (or asks the kernel for one) for the
    /// server's active connection.
    ServerListen,
    /// Our PORT/EPRT is with the server.
    ServerPortReply,
    /// The server's side is ready in `server_mode`; the driver prepares the
    /// client's.
    Client { server_mode: ServerMode },
    /// The kernel is asked to forward the client's connection to the
    /// server's passive port `to`: a relay to `to` takes over if it fails.
    Forwarding { to: ServerAddr, probe: bool },
}

impl Stage {
    /// The server side's mode in this stage.
    fn server_mode(self) -> ServerMode {
        match self {
            Stage::ServerPassiveReply { .. }
            | Stage::ServerConnect { .. }
            | Stage::Forwarding { .. } => ServerMode::Passive,
            Stage::ServerListen | Stage::ServerPortReply => ServerMode::Active,
            Stage::Client { server_mode } => server_mode,
        }
    }

    /// Whether this stage tries the server's passive port as a probe.
    fn probe(self) -> bool {
        match self {
            Stage::ServerPassiveReply { probe }
            | Stage::ServerConnect { probe }
            | Stage::Forwarding { probe, .. } => probe,
            Stage::ServerListen | Stage::ServerPortReply | Stage::Client { .. } => false,
        }
    }

    /// The side whose driver reports this stage takes.
    fn side(self) -> Side {
        match self {
            Stage::ServerPassiveReply { .. }
            | Stage::ServerConnect { .. }
            | Stage::ServerListen
            | Stage::ServerPortReply => Side::Server,
            Stage::Client { .. } | Stage::Forwarding { .. } => Side::Client,
        }
    }
}

#[derive(Debug)]
struct Setup {
    id: DataId,
    client: ClientReq,
    stage: Stage,
    /// The kernel may forward this setup (`data.path: kernel`, and it has
    /// not failed for it).
    kernel_ok: bool,
}

/// One FTP control session as the gateway sees it.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    phase: Phase,
    server: Option<ServerAddr>,
    /// The user part of `USER name@host`, as the client sent it.
    route_user: Option<Vec<u8>>,
    route_attempts: u32,
    /// The identity the server accepted with its last 230.
    user: Option<String>,
    /// The name in the last USER sent: what rules see before a login.
    proposed: Option<String>,
    /// The name of the USER the server is taking a password for: bound by
    /// the 230 that ends the exchange, forgotten when the USER is refused.
    candidate: Option<String>,
    logged_in: bool,
    replies: ReplyTracker,
    pending: VecDeque<Pending>,
    held: VecDeque<Line>,
    setup: Option<Setup>,
    ready: Option<DataId>,
    /// The channel of the last transfer command, whose data may still flow
    /// (what ABOR cuts).
    transfer: Option<DataId>,
    /// The transfer ABOR cut, and the one whose preliminary reply has
    /// passed: a second preliminary after the cut ends it (`abort.rs`).
    cut: Option<DataId>,
    began: Option<DataId>,
    next_id: u64,
    epsv_all: bool,
    passive_failed: bool,
    /// A relayed connection to this server's passive port succeeded.
    passive_proven: bool,
    collected: Vec<u8>,
    actions: VecDeque<Action>,
}

fn reply(code: u16, text: &str) -> Vec<u8> {
    format!("{code} {text}\r\n").into_bytes()
}

fn lossy(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.into_owned()
    }
}

impl Session {
    /// Starts a session. With [`Upstream::Fixed`] the server's greeting is
    /// awaited; with [`Upstream::UserAtHost`] the gateway greets the client
    /// itself and waits for `USER name@host`.
    pub fn new(cfg: SessionConfig) -> Session {
        let mut s = Session {
            phase: Phase::Open,
            server: None,
            route_user: None,
            route_attempts: 0,
            user: None,
            proposed: None,
            candidate: None,
            logged_in: false,
            replies: ReplyTracker::default(),
            pending: VecDeque::new(),
            held: VecDeque::new(),
            setup: None,
            ready: None,
            transfer: None,
            cut: None,
            began: None,
            next_id: 1,
            epsv_all: false,
            passive_failed: cfg.passive_known_dead,
            passive_proven: cfg.passive_known_alive && !cfg.passive_known_dead,
            collected: Vec::new(),
            actions: VecDeque::new(),
            cfg,
        };
        match s.cfg.upstream {
            Upstream::Fixed(server) => {
                s.server = Some(ServerAddr::new(server));
                s.pending.push_back(Pending::Greeting);
            }
            Upstream::UserAtHost => {
                s.phase = Phase::WaitUser;
                s.send_client(reply(
                    220,
                    "ftpalg gateway ready; log in as USER name@host[:port].",
                ));
            }
        }
        s
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Where the session stands.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The server, once known.
    pub fn server(&self) -> Option<SocketAddr> {
        self.server.map(SocketAddr::from)
    }

    /// The client's address.
    pub fn client(&self) -> SocketAddr {
        *self.cfg.client
    }

    /// The user rules see: the identity the server accepted while logged
    /// in, else the name proposed in the last USER.
    pub fn user(&self) -> Option<&str> {
        if self.logged_in {
            self.user.as_deref()
        } else {
            self.proposed.as_deref()
        }
    }

    /// Whether the server accepted the login.
    pub fn logged_in(&self) -> bool {
        self.logged_in
    }

    /// How many replies are owed to the client and how many client lines
    /// are held, each bounded by the config (for metrics and tests).
    pub fn backlog(&self) -> (usize, usize) {
        (self.pending.len(), self.held.len())
    }

    /// Whether a data channel is being set up (client input is held).
    pub fn busy(&self) -> bool {
        matches!(self.phase, Phase::Routing | Phase::Greeting) || self.setup.is_some()
    }

    fn push(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn send_client(&mut self, bytes: Vec<u8>) {
        self.push(Action::ToClient(bytes));
    }

    fn send_server(&mut self, bytes: Vec<u8>) {
        self.push(Action::ToServer(bytes));
    }

    fn event(&mut self, e: Event) {
        self.push(Action::Event(e));
    }

    fn deny(&mut self, code: u16, text: &str, reason: Denial, detail: String) {
        self.event(Event::Denied { reason, detail });
        self.reply_local(reply(code, text));
    }

    /// Sends a reply of the gateway's own, after any replies still owed for
    /// earlier commands, so the client sees answers in command order.
    fn reply_local(&mut self, bytes: Vec<u8>) {
        if self.pending.is_empty() {
            self.send_client(bytes);
        } else {
            self.pending.push_back(Pending::Local(bytes));
        }
    }

    fn flush_local(&mut self) {
        while let Some(Pending::Local(_)) = self.pending.front() {
            if let Some(Pending::Local(bytes)) = self.pending.pop_front() {
                self.send_client(bytes);
            }
        }
    }

    fn close(&mut self) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            if let Some(id) = self.ready.take() {
                self.push(Action::Release { id });
            }
            if let Some(s) = self.setup.take() {
                self.push(Action::Release { id: s.id });
            }
            self.push(Action::Close);
        }
    }
}

#[cfg(test)]
mod tests;

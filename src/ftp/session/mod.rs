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
mod forward;
mod policy;

pub use action::{Action, ClientMode, DataId, Denial, Endpoint, Event, ServerMode, Side};
pub use policy::{
    AllowAll, CommandContext, DataPlane, Policy, ServerDataMode, SessionConfig, TlsPolicy,
    Upstream, Verdict,
};

use crate::ftp::codec::{self, encode_229, encode_eprt, encode_lprt, encode_port};
use crate::ftp::command::{self as cmd, parse_command, Command, Verb};
use crate::ftp::framer::{encode_line, Frame, Line};
use crate::ftp::reply::{ReplyCode, ReplyTracker};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

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
    Active(ClientMode, SocketAddr),
}

impl ClientReq {
    fn mode(self) -> ClientMode {
        match self {
            ClientReq::Passive(m) | ClientReq::Active(m, _) => m,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    ServerPassiveReply,
    ServerConnect,
    ServerListen,
    ServerPortReply,
    Client,
}

#[derive(Debug)]
struct Setup {
    id: DataId,
    client: ClientReq,
    server_mode: ServerMode,
    auto: bool,
    stage: Stage,
    /// The kernel may forward this setup (`data.path: kernel`, and it has
    /// not failed for it).
    kernel_ok: bool,
    /// The server's passive port, for a relay that takes over from a
    /// kernel forward that failed.
    forward_to: Option<SocketAddr>,
}

/// One FTP control session as the gateway sees it.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    phase: Phase,
    server: Option<SocketAddr>,
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

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// A v4-mapped address as plain v4; any other address unchanged, scope id
/// included (a link-local peer is only reachable through its interface).
fn canonical_addr(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => {
            SocketAddr::new(canonical(a.ip()), a.port())
        }
        _ => a,
    }
}

/// `to` with the scope id of `peer` when `to` is link-local and names no
/// scope itself: a data connection to `fe80::` goes out through the
/// interface the control connection came in on.
fn with_scope(to: SocketAddr, peer: SocketAddr) -> SocketAddr {
    match (to, peer) {
        (SocketAddr::V6(mut t), SocketAddr::V6(p))
            if t.scope_id() == 0 && t.ip().is_unicast_link_local() =>
        {
            t.set_scope_id(p.scope_id());
            SocketAddr::V6(t)
        }
        _ => to,
    }
}

impl Session {
    /// Starts a session. With [`Upstream::Fixed`] the server's greeting is
    /// awaited; with [`Upstream::UserAtHost`] the gateway greets the client
    /// itself and waits for `USER name@host`.
    pub fn new(mut cfg: SessionConfig) -> Session {
        cfg.client = canonical_addr(cfg.client);
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
                s.server = Some(canonical_addr(server));
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
        self.server
    }

    /// The client's address.
    pub fn client(&self) -> SocketAddr {
        self.cfg.client
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
                let detail = format!(
                    "line over the cap: {}",
                    lossy(&prefix[..prefix.len().min(40)])
                );
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

    fn drain_held(&mut self, policy: &dyn Policy) {
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
    fn pipeline_full(&mut self) -> bool {
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

    fn client_line(&mut self, line: Line, policy: &dyn Policy) {
        if self.pipeline_full() {
            return;
        }
        let checked = match line.decode() {
            Ok(c) => c,
            Err(e) => {
                let detail = format!("{e}: {}", lossy(&line.raw));
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
                let detail = format!("{e}: {}", lossy(&text));
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
            server: self.server,
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
            v if v.is_transfer() => {
                let data = self.ready.take();
                if let Some(id) = data {
                    self.transfer = Some(id);
                    self.push(Action::Transfer {
                        id,
                        verb: v,
                        arg: lossy(command.arg),
                    });
                }
                self.forward(wire, v, data);
            }
            v => self.forward(wire, v, None),
        }
    }

    fn forward(&mut self, wire: Vec<u8>, verb: Verb, data: Option<DataId>) {
        self.send_server(wire);
        self.pending.push_back(Pending::Forward { verb, data });
    }

    /// Commands before the client has named a server (user@host routing).
    fn before_route(&mut self, command: Command<'_>) {
        match command.verb {
            cmd::USER => {
                let arg = String::from_utf8_lossy(command.arg);
                match split_user_host(&arg) {
                    Some((user, host, port)) => {
                        self.proposed = Some(user.clone());
                        self.event(Event::User { name: user.clone() });
                        // The server gets the name as the client sent it,
                        // not as decoded for the rules and the log.
                        let raw = command.arg.trim_ascii();
                        let at = raw.iter().rposition(|&b| b == b'@').unwrap_or(raw.len());
                        self.route_user = Some(raw[..at].to_vec());
                        self.route_attempts += 1;
                        self.phase = Phase::Routing;
                        self.push(Action::Connect { host, port });
                    }
                    None => self.deny(
                        530,
                        "Log in as USER name@host[:port] to choose a server.",
                        Denial::Syntax,
                        format!("USER without host: {arg}"),
                    ),
                }
            }
            cmd::QUIT => {
                self.send_client(reply(221, "Goodbye."));
                self.close();
            }
            cmd::NOOP => self.send_client(reply(200, "NOOP ok.")),
            cmd::AUTH => self.deny(
                534,
                "TLS is not available before a server is chosen; continue without it.",
                Denial::Tls,
                "AUTH before USER name@host".into(),
            ),
            _ => self.send_client(reply(530, "Log in as USER name@host[:port] first.")),
        }
    }

    /// After `EPSV ALL` only EPSV may set up data (RFC 2428): refuses
    /// anything else and says so.
    fn refused_after_epsv_all(&mut self, mode: ClientMode) -> bool {
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

    fn client_active(&mut self, command: Command<'_>, policy: &dyn Policy) {
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
            Ok(a) => with_scope(canonical_addr(a), self.cfg.client),
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

    fn client_passive(&mut self, command: Command<'_>, policy: &dyn Policy) {
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
            let advertise_v4 = self.cfg.client_advertise.map(|a| canonical(a).is_ipv4());
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

    // ------------------------------------------------------------ data setup

    fn start_setup(&mut self, client: ClientReq, policy: &dyn Policy) {
        let Some(server) = self.server else {
            self.reply_local(reply(503, "No server yet."));
            return;
        };
        if let Some(id) = self.ready.take() {
            self.push(Action::Release { id });
        }
        let id = DataId(self.next_id);
        self.next_id += 1;
        let requested = policy.server_mode(self.cfg.client.ip(), server);
        let (server_mode, auto) = match requested {
            ServerDataMode::SameAsClient if client.mode().is_passive() => {
                (ServerMode::Passive, false)
            }
            ServerDataMode::SameAsClient => (ServerMode::Active, false),
            ServerDataMode::Passive => (ServerMode::Passive, false),
            ServerDataMode::Active => (ServerMode::Active, false),
            ServerDataMode::Auto if self.passive_failed => (ServerMode::Active, false),
            ServerDataMode::Auto => (ServerMode::Passive, true),
        };
        self.setup = Some(Setup {
            id,
            client,
            server_mode,
            auto,
            stage: Stage::ServerPassiveReply,
            kernel_ok: matches!(self.cfg.data_plane, DataPlane::Kernel { .. }),
            forward_to: None,
        });
        match server_mode {
            ServerMode::Passive => self.server_passive(id, server),
            ServerMode::Active => self.server_listen(id, server),
        }
    }

    fn set_stage(&mut self, stage: Stage) {
        if let Some(s) = self.setup.as_mut() {
            s.stage = stage;
        }
    }

    fn server_passive(&mut self, id: DataId, server: SocketAddr) {
        let verb = if server.is_ipv4() {
            cmd::PASV
        } else {
            cmd::EPSV
        };
        self.send_server(format!("{verb}\r\n").into_bytes());
        self.pending.push_back(Pending::ServerPassive { id, verb });
        self.set_stage(Stage::ServerPassiveReply);
    }

    fn server_listen(&mut self, id: DataId, server: SocketAddr) {
        if let Some(s) = self.setup.as_mut() {
            s.server_mode = ServerMode::Active;
            s.auto = false;
        }
        if self.forward_active(id, server) {
            return;
        }
        self.set_stage(Stage::ServerListen);
        self.push(Action::Prepare {
            id,
            side: Side::Server,
            endpoint: Endpoint::Listen {
                expect_peer: server.ip(),
            },
        });
    }

    fn client_side(&mut self, policy: &dyn Policy) {
        if self.finish_forwarded_active(policy) {
            return;
        }
        let Some(setup) = self.setup.as_ref() else {
            return;
        };
        let id = setup.id;
        let endpoint = match setup.client {
            ClientReq::Passive(_) => Endpoint::Listen {
                expect_peer: self.cfg.client.ip(),
            },
            ClientReq::Active(_, to) => Endpoint::Connect { to },
        };
        self.set_stage(Stage::Client);
        self.push(Action::Prepare {
            id,
            side: Side::Client,
            endpoint,
        });
    }

    /// Ends a setup that failed: the client gets `text`, held commands go on.
    fn fail_setup(&mut self, code: u16, text: &str, policy: &dyn Policy) {
        if let Some(s) = self.setup.take() {
            self.push(Action::Release { id: s.id });
        }
        self.reply_local(reply(code, text));
        self.drain_held(policy);
    }

    fn finish_setup(&mut self, client_reply: Vec<u8>, policy: &dyn Policy) {
        let Some(s) = self.setup.take() else { return };
        self.ready = Some(s.id);
        self.push(Action::Start {
            id: s.id,
            client_mode: s.client.mode(),
            server_mode: s.server_mode,
        });
        self.reply_local(client_reply);
        self.drain_held(policy);
    }

    fn current(&self, id: DataId, side: Side) -> Option<Stage> {
        let s = self.setup.as_ref().filter(|s| s.id == id)?;
        let side_ok = match s.stage {
            Stage::ServerConnect
            | Stage::ServerListen
            | Stage::ServerPortReply
            | Stage::ServerPassiveReply => side == Side::Server,
            Stage::Client => side == Side::Client,
        };
        side_ok.then_some(s.stage)
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
            Stage::ServerConnect => {
                if self.setup.as_ref().is_some_and(|s| s.auto) && !self.passive_proven {
                    self.passive_proven = true;
                    self.event(Event::PassiveAnswered);
                }
                self.client_side(policy)
            }
            Stage::ServerListen => {
                let Some(server) = self.server else { return };
                let ip = canonical(self.cfg.server_advertise.unwrap_or(local.ip()));
                let at = SocketAddr::new(ip, local.port());
                let (verb, arg) = match at {
                    SocketAddr::V4(v4) if server.is_ipv4() => (cmd::PORT, encode_port(v4)),
                    _ => (cmd::EPRT, encode_eprt(at)),
                };
                self.send_server(format!("{verb} {arg}\r\n").into_bytes());
                self.pending.push_back(Pending::ServerActive { id, verb });
                self.set_stage(Stage::ServerPortReply);
            }
            Stage::Client => {
                let Some(setup) = self.setup.as_ref() else {
                    return;
                };
                let text = match setup.client {
                    ClientReq::Active(mode, _) => {
                        reply(200, &format!("{} command successful.", mode.as_str()))
                    }
                    ClientReq::Passive(mode) => {
                        let ip = canonical(self.cfg.client_advertise.unwrap_or(local.ip()));
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
            Stage::ServerPassiveReply | Stage::ServerPortReply => {}
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
            Stage::ServerConnect if setup.auto => {
                self.passive_failed = true;
                self.event(Event::PassiveFallback {
                    reason: reason.to_string(),
                });
                if let Some(server) = self.server {
                    self.server_listen(id, server);
                }
            }
            Stage::ServerConnect => {
                let text = format!("Can't open data connection to the server: {reason}.");
                self.fail_setup(425, &text, policy);
            }
            Stage::Client => {
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

    // ---------------------------------------------------------------- server

    /// The driver connected to the server the client named.
    pub fn upstream_connected(&mut self, server: SocketAddr) {
        if self.phase != Phase::Routing {
            return;
        }
        self.server = Some(canonical_addr(server));
        self.phase = Phase::Greeting;
        self.pending.push_back(Pending::RoutedGreeting);
    }

    /// The driver could not reach (or the policy refused) the server the
    /// client named.
    pub fn upstream_failed(&mut self, reason: &str, policy: &dyn Policy) {
        if self.phase != Phase::Routing {
            return;
        }
        self.event(Event::Denied {
            reason: Denial::Rule("route".into()),
            detail: reason.to_string(),
        });
        if self.route_attempts >= self.cfg.max_route_attempts {
            self.send_client(reply(
                421,
                &format!("{reason}; too many attempts, closing."),
            ));
            self.close();
            return;
        }
        self.phase = Phase::WaitUser;
        self.proposed = None;
        self.send_client(reply(530, &format!("{reason}.")));
        self.drain_held(policy);
    }

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

    fn forwarded_reply(&mut self, head: Pending, code: ReplyCode) {
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
    fn accept_login(&mut self, name: Option<String>) {
        if let Some(name) = name {
            self.user = Some(name);
        } else if !self.logged_in {
            self.user = self.proposed.clone();
        }
        self.candidate = None;
        self.logged_in = true;
        self.event(Event::LoggedIn);
    }

    fn consumed_reply(&mut self, head: Pending, code: ReplyCode, text: &[u8], policy: &dyn Policy) {
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

    fn server_passive_reply(
        &mut self,
        id: DataId,
        verb: Verb,
        code: ReplyCode,
        text: &[u8],
        policy: &dyn Policy,
    ) {
        if self.current(id, Side::Server) != Some(Stage::ServerPassiveReply) {
            return;
        }
        let Some(server) = self.server else { return };
        let auto = self.setup.as_ref().is_some_and(|s| s.auto);
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
                if auto {
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
        let advertised = canonical(data.ip());
        let target = if self.cfg.trust_passive_address && !advertised.is_unspecified() {
            with_scope(SocketAddr::new(advertised, data.port()), server)
        } else {
            if advertised != server.ip() && !advertised.is_unspecified() {
                self.event(Event::PassiveAddressIgnored {
                    advertised,
                    used: server.ip(),
                });
            }
            let mut at = server;
            at.set_port(data.port());
            at
        };
        if self.forward_passive(id, target) {
            return;
        }
        self.set_stage(Stage::ServerConnect);
        self.push(Action::Prepare {
            id,
            side: Side::Server,
            endpoint: Endpoint::Connect { to: target },
        });
    }
}

/// Splits `name@host[:port]`, `name@[v6]:port` or `name@v6` at the last `@`.
fn split_user_host(arg: &str) -> Option<(String, String, u16)> {
    let (user, hostport) = arg.trim().rsplit_once('@')?;
    if user.is_empty() || hostport.is_empty() {
        return None;
    }
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) => (h.to_string(), p.parse().ok()?),
            None if after.is_empty() => (h.to_string(), 21),
            None => return None,
        }
    } else if hostport.matches(':').count() == 1 {
        let (h, p) = hostport.split_once(':')?;
        (h.to_string(), p.parse().ok()?)
    } else {
        (hostport.to_string(), 21)
    };
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((user.to_string(), host, port))
}

#[cfg(test)]
mod tests;

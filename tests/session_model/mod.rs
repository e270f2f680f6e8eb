//! A model driver for the session engine, shared by the property test
//! (`tests/ftp_properties.rs`) and the `session` fuzz target.
//!
//! It reads a byte string as a script: the session's settings, then steps
//! that are client lines, server lines, or the driver's outcome for a
//! `Prepare` or `Connect` the engine asked for (prepared, failed, late,
//! duplicate, for a stale id). After every step it checks what the engine
//! asked for against what the driver reported and what the policy saw, and
//! panics with the reason when an invariant breaks.

#![allow(dead_code)]

use ftpalg::ftp::command::{parse_command, Verb};
use ftpalg::ftp::framer::{Frame, LineFramer, DM, IAC, IP};
use ftpalg::ftp::reply::ReplyTracker;
use ftpalg::ftp::session::{
    Action, CommandContext, DataId, Endpoint, Phase, Policy, ServerDataMode, Session,
    SessionConfig, Side, TlsPolicy, Upstream, Verdict,
};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// Reads the script; past its end every byte is 0.
struct Script<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }
    fn pick<'t, T>(&mut self, table: &'t [T]) -> &'t T {
        &table[usize::from(self.byte()) % table.len()]
    }
    fn port(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
}

/// Denies DELE always (so a DELE at the server is a breach), allows the
/// rest, and records every verb it was asked about.
struct ModelPolicy {
    server_mode: ServerDataMode,
    tls: TlsPolicy,
    checked: RefCell<Vec<Verb>>,
}

impl Policy for ModelPolicy {
    fn check_command(&self, ctx: &CommandContext<'_>) -> Verdict {
        self.checked.borrow_mut().push(ctx.verb);
        if ctx.verb.as_str() == "DELE" {
            return Verdict::Deny {
                code: 550,
                text: "Read-only.".into(),
                rule: "no-dele".into(),
            };
        }
        Verdict::Allow
    }
    fn server_mode(&self, _: IpAddr, _: SocketAddr) -> ServerDataMode {
        self.server_mode
    }
    fn tls(&self) -> TlsPolicy {
        self.tls
    }
}

const CLIENT_LINES: &[&[u8]] = &[
    b"USER anonymous",
    b"USER bob",
    b"USER ftp@198.51.100.10",
    b"USER a@[2001:db8:2::10]:21",
    b"PASS x",
    b"PASV",
    b"EPSV",
    b"EPSV ALL",
    b"EPSV 2",
    b"LPSV",
    b"PORT 100,64,0,2,156,65",
    b"PORT 6,6,6,6,4,1",
    b"PORT 100,64,0,2,0,21",
    b"EPRT |2|2001:db8:1::2|40001|",
    b"EPRT |1|100.64.0.2|40001|",
    b"EPRT |2|fe80::2|40001|",
    b"LPRT 4,4,100,64,0,2,2,156,65",
    b"RETR f",
    b"STOR f",
    b"LIST",
    b"DELE f",
    b"\xff\xf4\xff\xf2ABOR",
    b"\xff\xf4\xffABOR",
    b"REIN",
    b"AUTH TLS",
    b"QUIT",
    b"NOOP",
    b"NOOP\xff\nDELE f",
    b"RETR a\rDELE f",
    b"RETR a\xff\xffb",
];

const CODES: &[u16] = &[
    220, 200, 230, 331, 530, 150, 125, 226, 227, 229, 228, 421, 425, 500, 550, 221, 234, 350,
];

/// The model: the engine, the two framers, and what the driver knows.
pub struct Model {
    s: Session,
    policy: ModelPolicy,
    from_client: LineFramer,
    from_server: LineFramer,
    client: SocketAddr,
    server_v6: bool,
    trust_passive: bool,
    max_pending: usize,
    max_held: usize,
    /// Prepare requests not yet answered.
    outstanding: Vec<(DataId, Side, Endpoint)>,
    /// Sides reported prepared.
    prepared: HashSet<(DataId, Side)>,
    /// Every id given to Prepare.
    prepare_ids: BTreeSet<DataId>,
    /// Ids that got Start or Release.
    ended: HashSet<DataId>,
    started: HashSet<DataId>,
    released: HashSet<DataId>,
    /// The one setup under way.
    setup: Option<DataId>,
    /// Addresses the driver reported for server-side listeners: the only
    /// ones PORT/EPRT may name.
    gateway_ports: Vec<SocketAddr>,
    /// Texts of the client lines fed that decoded.
    fed: Vec<Vec<u8>>,
    /// Replies the server owes, mirroring the engine's queue: `None` for a
    /// greeting, else the command text sent.
    owed: VecDeque<Option<Vec<u8>>>,
    replies: ReplyTracker,
    connect_outstanding: bool,
    closed: bool,
    steps: usize,
    /// Print every step and action (set MODEL_TRACE).
    trace: bool,
}

fn v6(s: &str, port: u16, scope: u32) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(
        s.parse::<Ipv6Addr>().unwrap(),
        port,
        0,
        scope,
    ))
}

impl Model {
    fn new(script: &mut Script<'_>) -> Model {
        let client = match script.byte() % 3 {
            0 => "100.64.0.2:40000".parse().unwrap(),
            1 => "[2001:db8:1::2]:40000".parse().unwrap(),
            _ => v6("fe80::2", 40000, 3),
        };
        let upstream = match script.byte() % 3 {
            0 => Upstream::Fixed("198.51.100.10:21".parse().unwrap()),
            1 => Upstream::Fixed("[2001:db8:2::10]:21".parse().unwrap()),
            _ => Upstream::UserAtHost,
        };
        let server_v6 = matches!(upstream, Upstream::Fixed(SocketAddr::V6(_)));
        let mut cfg = SessionConfig::new(client, upstream);
        let flags = script.byte();
        cfg.client_advertise = match flags % 3 {
            0 => None,
            1 => Some("203.0.113.1".parse().unwrap()),
            _ => Some("2001:db8:3::1".parse().unwrap()),
        };
        cfg.passive_known_dead = flags & 4 != 0;
        cfg.trust_passive_address = flags & 8 != 0;
        cfg.max_pending = 2 + usize::from(flags >> 4);
        cfg.max_held_lines = 1 + usize::from(script.byte() % 16);
        let server_mode = *script.pick(&[
            ServerDataMode::SameAsClient,
            ServerDataMode::Passive,
            ServerDataMode::Active,
            ServerDataMode::Auto,
        ]);
        let tls = *script.pick(&[TlsPolicy::Refuse, TlsPolicy::Passthrough]);
        let owed = match upstream {
            Upstream::Fixed(_) => VecDeque::from([None]),
            Upstream::UserAtHost => VecDeque::new(),
        };
        let mut m = Model {
            max_pending: cfg.max_pending,
            max_held: cfg.max_held_lines,
            trust_passive: cfg.trust_passive_address,
            s: Session::new(cfg),
            policy: ModelPolicy {
                server_mode,
                tls,
                checked: RefCell::new(Vec::new()),
            },
            from_client: LineFramer::new(128),
            from_server: LineFramer::new(128),
            client,
            server_v6,
            outstanding: Vec::new(),
            prepared: HashSet::new(),
            prepare_ids: BTreeSet::new(),
            ended: HashSet::new(),
            started: HashSet::new(),
            released: HashSet::new(),
            setup: None,
            gateway_ports: Vec::new(),
            fed: Vec::new(),
            owed,
            replies: ReplyTracker::default(),
            connect_outstanding: false,
            closed: false,
            steps: 0,
            trace: std::env::var_os("MODEL_TRACE").is_some(),
        };
        m.settle(None);
        m
    }

    fn client_bytes(&mut self, bytes: &[u8]) {
        if self.trace {
            eprintln!("client {:?}", String::from_utf8_lossy(bytes));
        }
        let mut frames = Vec::new();
        self.from_client.push(bytes, &mut frames);
        for f in frames {
            if let Frame::Line(l) = &f {
                if let Ok(c) = l.decode() {
                    self.fed.push(c.text.into_owned());
                }
            }
            self.s.on_client(f, &self.policy);
            self.settle(None);
        }
    }

    fn server_bytes(&mut self, bytes: &[u8]) {
        if self.trace {
            eprintln!("server {:?}", String::from_utf8_lossy(bytes));
        }
        let mut frames = Vec::new();
        self.from_server.push(bytes, &mut frames);
        for f in frames {
            let raw = match &f {
                Frame::Line(l) => l.raw.clone(),
                Frame::TooLong { prefix } => prefix.clone(),
            };
            // Mirror the engine's reply matching while it still reads lines.
            let mut answered = None;
            if !matches!(self.s.phase(), Phase::Closed | Phase::Opaque) {
                if let Some(rl) = self.replies.classify(&raw) {
                    if rl.last && !rl.code.is_preliminary() {
                        answered = Some(self.owed.pop_front().flatten());
                    }
                }
            }
            self.s.on_server(f, &self.policy);
            self.settle(answered);
        }
    }

    fn server_side_local(&mut self, port: u16) -> SocketAddr {
        let server_v6 = self.server_v6 || self.s.server().is_some_and(|s| s.is_ipv6());
        let ip: IpAddr = if server_v6 {
            "2001:db8:2::1".parse().unwrap()
        } else {
            "198.51.100.1".parse().unwrap()
        };
        SocketAddr::new(ip, port.max(1))
    }

    fn client_side_local(&self, port: u16) -> SocketAddr {
        let ip: IpAddr = if self.client.is_ipv4() {
            "100.64.0.1".parse().unwrap()
        } else {
            "2001:db8:1::1".parse().unwrap()
        };
        SocketAddr::new(ip, port.max(1))
    }

    fn report(&mut self, id: DataId, side: Side, ok: bool, port: u16) {
        if self.trace {
            eprintln!("driver {id:?} {side:?} prepared={ok}");
        }
        if ok {
            let local = match side {
                Side::Server => self.server_side_local(port),
                Side::Client => self.client_side_local(port),
            };
            if side == Side::Server {
                self.gateway_ports.push(local);
            }
            self.prepared.insert((id, side));
            self.s.data_prepared(id, side, local, &self.policy);
        } else {
            self.s.data_failed(id, side, "timed out", &self.policy);
        }
        self.settle(None);
    }

    fn step(&mut self, script: &mut Script<'_>) {
        self.steps += 1;
        match script.byte() % 10 {
            0 | 1 => {
                let mut line = script.pick(CLIENT_LINES).to_vec();
                line.extend_from_slice(b"\r\n");
                self.client_bytes(&line);
            }
            2 => {
                let n = usize::from(script.byte() % 32);
                let mut bytes: Vec<u8> = (0..n).map(|_| script.byte()).collect();
                if script.byte() & 1 == 0 {
                    bytes.extend_from_slice(b"\r\n");
                }
                self.client_bytes(&bytes);
            }
            3 | 4 => {
                let code = *script.pick(CODES);
                let port = script.port();
                let (h, l) = (port >> 8, port & 0xff);
                let text = match code {
                    227 => format!("Entering Passive Mode (198,51,100,10,{h},{l})."),
                    229 => format!("Entering Extended Passive Mode (|||{port}|)"),
                    228 => format!("Entering Long Passive Mode (4,4,198,51,100,10,2,{h},{l})"),
                    _ => "text".into(),
                };
                let reply = if script.byte() % 4 == 0 {
                    format!("{code}-first\r\n {code} inside\r\n{code} {text}\r\n")
                } else {
                    format!("{code} {text}\r\n")
                };
                self.server_bytes(reply.as_bytes());
            }
            5 => {
                let n = usize::from(script.byte() % 32);
                let mut bytes: Vec<u8> = (0..n).map(|_| script.byte()).collect();
                bytes.extend_from_slice(b"\r\n");
                self.server_bytes(&bytes);
            }
            6 | 7 => {
                if self.outstanding.is_empty() {
                    return;
                }
                let k = usize::from(script.byte()) % self.outstanding.len();
                let (id, side, _) = self.outstanding.remove(k);
                let ok = script.byte() % 4 != 0;
                let port = script.port();
                self.report(id, side, ok, port);
            }
            8 => {
                // Late, duplicate or stale: any id near the ones used.
                let max = self.prepare_ids.iter().next_back().map_or(1, |d| d.0 + 2);
                let id = DataId(u64::from(script.byte()) % (max + 1));
                let side = if script.byte() & 1 == 0 {
                    Side::Client
                } else {
                    Side::Server
                };
                let ok = script.byte() & 1 == 0;
                let port = script.port();
                // A duplicate of an answered request is not an answer: keep
                // `outstanding` as it is.
                if self.trace {
                    eprintln!("driver stale {id:?} {side:?} prepared={ok}");
                }
                if ok {
                    let local = match side {
                        Side::Server => self.server_side_local(port),
                        Side::Client => self.client_side_local(port),
                    };
                    let live = self.outstanding.iter().any(|o| o.0 == id && o.1 == side);
                    if live {
                        return;
                    }
                    self.s.data_prepared(id, side, local, &self.policy);
                } else {
                    let live = self.outstanding.iter().any(|o| o.0 == id && o.1 == side);
                    if live {
                        return;
                    }
                    self.s.data_failed(id, side, "stale", &self.policy);
                }
                self.settle(None);
            }
            _ => {
                let ok = script.byte() & 1 == 0;
                let routing = *self.s.phase() == Phase::Routing;
                if self.trace {
                    eprintln!("upstream ok={ok}");
                }
                self.connect_outstanding = false;
                if ok {
                    if routing {
                        self.owed.push_back(None);
                    }
                    self.s
                        .upstream_connected("198.51.100.10:21".parse().unwrap());
                } else {
                    self.s.upstream_failed("no route", &self.policy);
                }
                self.settle(None);
            }
        }
    }

    /// Takes the engine's actions and checks each. `answered` is set when
    /// the last server line completed a reply: the command it answered.
    fn settle(&mut self, answered: Option<Option<Vec<u8>>>) {
        let (pending, held) = self.s.backlog();
        assert!(
            pending <= self.max_pending + 2,
            "{pending} replies owed, bound {}",
            self.max_pending
        );
        assert!(held <= self.max_held, "{held} lines held");
        while let Some(a) = self.s.poll_action() {
            self.check(a, &answered);
        }
    }

    fn check(&mut self, a: Action, answered: &Option<Option<Vec<u8>>>) {
        if self.trace {
            eprintln!("  <- {a:?}");
        }
        match a {
            Action::Prepare { id, side, endpoint } => {
                assert!(!self.closed, "Prepare after Close");
                if let Some(open) = self.setup {
                    assert_eq!(open, id, "a second setup while {open:?} is under way");
                }
                assert!(
                    !self.ended.contains(&id),
                    "Prepare for {id:?}, which already ended"
                );
                self.setup = Some(id);
                self.prepare_ids.insert(id);
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
            }
            Action::Release { id } => {
                self.released.insert(id);
                if self.setup == Some(id) {
                    self.setup = None;
                }
                self.outstanding.retain(|o| o.0 != id);
                self.ended.insert(id);
            }
            Action::Transfer { id, .. } => {
                assert!(self.started.contains(&id), "{id:?} used before Start");
                assert!(!self.released.contains(&id), "{id:?} used after Release");
            }
            Action::ToClientAfterData { id, .. } => {
                assert!(self.started.contains(&id), "{id:?} used before Start");
            }
            Action::ToServer(bytes) => self.check_to_server(bytes),
            Action::Connect { .. } => self.connect_outstanding = true,
            Action::Close => {
                for id in &self.prepare_ids {
                    assert!(
                        self.ended.contains(id),
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
            (Side::Client, Endpoint::Connect { to }) => {
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
            (Side::Server, Endpoint::Connect { to }) => {
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

/// Runs one script; panics when an invariant breaks. Returns the number of
/// steps taken.
pub fn run(bytes: &[u8]) -> usize {
    let mut script = Script { bytes, at: 0 };
    let mut m = Model::new(&mut script);
    let mut steps = 0;
    while !script.done() && steps < 400 {
        m.step(&mut script);
        steps += 1;
    }
    steps
}

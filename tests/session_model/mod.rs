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

mod checks;

use ftpalg::ftp::command::Verb;
use ftpalg::ftp::framer::{Frame, LineFramer};
use ftpalg::ftp::reply::ReplyTracker;
use ftpalg::ftp::session::{
    Action, CommandContext, DataId, Endpoint, Phase, Policy, RouteFailure, ServerDataMode, Session,
    SessionConfig, Side, Time, Timeouts, TlsPolicy, Upstream, Verdict,
};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

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
    /// Channels the driver holds: prepared, and neither reset, retired,
    /// cut nor reported ended.
    held: HashSet<DataId>,
    /// The session's clock, as the model driver keeps it.
    now: Time,
    /// The channel prepared last, until it starts or is reset.
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
        // Short enough for the steps that let time pass to reach them.
        cfg.timeouts = Timeouts {
            login: Duration::from_secs(4),
            control_idle: Duration::from_secs(6),
        };
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
            held: HashSet::new(),
            now: Time::ZERO,
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
            let mut preliminary_end = false;
            if !matches!(self.s.phase(), Phase::Closed | Phase::Opaque) {
                if let Some(rl) = self.replies.classify(&raw) {
                    if rl.last && !rl.code.is_preliminary() {
                        answered = Some(self.owed.pop_front().flatten());
                    }
                    preliminary_end = rl.last && rl.code.is_preliminary();
                }
            }
            self.s.on_server(f, &self.policy);
            // A second preliminary reply after ABOR cut the transfer ends
            // it (the engine answers 426 in its place): the command is
            // answered.
            let acts: Vec<Action> = std::iter::from_fn(|| self.s.poll_action()).collect();
            let cut_426 = |a: &Action| matches!(a, Action::ToClient(b) if b.as_slice() == b"426 Connection closed; transfer aborted.\r\n");
            if preliminary_end && acts.iter().any(cut_426) {
                answered = Some(self.owed.pop_front().flatten());
            }
            for a in acts {
                self.check(a, &answered);
            }
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
        // Like a driver, the model says what time it is before it hands the
        // session anything.
        self.s.heard(self.now);
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
                // The end of a channel or of its delivery, for any id: late,
                // stale or live; or time passing.
                match script.byte() % 4 {
                    0 => {
                        let how = script.byte();
                        let ok = how & 1 == 0;
                        if how & 2 == 0 {
                            self.held.remove(&id);
                            self.s
                                .data_ended(id, if ok { Ok(()) } else { Err("reset") });
                        } else {
                            self.s
                                .data_delivered(id, if ok { Ok(()) } else { Err("stalled") });
                        }
                        self.settle(None);
                        return;
                    }
                    1 => {
                        let ms = u64::from(script.byte()) * 40;
                        self.later(Duration::from_millis(ms));
                        return;
                    }
                    _ => {}
                }
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
                    self.s
                        .upstream_failed(RouteFailure::NotAllowed("no route"), &self.policy);
                }
                self.settle(None);
            }
        }
    }

    /// Time passes; the session's deadline is handled if it is due. Its
    /// deadlines are never in the past of a clock that only runs forward.
    fn later(&mut self, d: Duration) {
        self.now = Time::from_start(self.now.since_start() + d);
        if self.trace {
            eprintln!("time {:?}", self.now);
        }
        if let Some(due) = self.s.poll_timeout() {
            if due <= self.now {
                self.s.handle_timeout(self.now);
                let next = self.s.poll_timeout();
                assert!(
                    next.is_none_or(|t| t > self.now),
                    "a deadline still due after handle_timeout: {next:?} at {:?}",
                    self.now
                );
            }
        }
        self.settle(None);
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

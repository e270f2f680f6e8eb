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
mod channels;
mod client;
mod closing;
mod ends;
mod forward;
mod held;
mod login;
mod output;
mod policy;
mod route;
mod server;
mod setup;
mod stage;
mod timers;

#[cfg(test)]
use route::split_user_host;
#[cfg(test)]
use std::net::IpAddr;

pub use action::{
    Action, Cancel, Carriage, ClientMode, ConnectDeadline, DataId, Denial, Direction, Endpoint,
    Event, Retire, ServerMode, Side,
};
pub use closing::CloseReason;
pub use ends::{PathEnd, TransferEnd};
pub use policy::{
    AllowAll, CommandContext, DataPlane, Policy, ServerDataMode, SessionConfig, TlsPolicy,
    Upstream, Verdict,
};
pub use route::RouteFailure;
pub use timers::{Time, Timeouts};

use crate::addrs::ServerAddr;
use crate::ftp::command::{self as cmd, parse_command, Command, Verb};
use crate::ftp::framer::{encode_line, Frame, Line};
use crate::ftp::redact::show_line;
use crate::ftp::refusal::Refusal;
use crate::ftp::reply::ReplyCode;
use abort::{Preliminary, Transfers};
use client::ClientInput;
use login::Login;
use output::{first_line, lossy, reply, Output, Refused};
use route::{BeforeRoute, Route};
use server::{Owed, Pending, Read};
use setup::Data;
use stage::Cx;
use std::net::SocketAddr;
use timers::Timers;

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

/// One FTP control session as the gateway sees it. Each part of its state
/// is a type of its own, in a file of its own, changed only through its
/// methods: what goes to the driver, with the client's output held behind
/// data channels and the channels themselves (`output.rs`, `held.rs`,
/// `channels.rs`), the replies the server owes (`server.rs`), the client's
/// held lines and data commands (`client.rs`), the login (`login.rs`), the
/// route (`route.rs`), the data setups (`setup.rs`, `stage.rs`,
/// `forward.rs`), the transfers `ABOR` may cut (`abort.rs`) and the
/// deadlines (`timers.rs`). This file ties them together.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    phase: Phase,
    server: Option<ServerAddr>,
    out: Output,
    owed: Owed,
    input: ClientInput,
    login: Login,
    route: Route,
    data: Data,
    transfers: Transfers,
    /// What was decided about the recent channels' transfers, for the
    /// class each ends under.
    ends: ends::Ends,
    /// The session closes because the client said QUIT.
    quit: bool,
    timers: Timers,
}

impl Session {
    /// Starts a session. With [`Upstream::Fixed`] the server's greeting is
    /// awaited; with [`Upstream::UserAtHost`] the gateway greets the client
    /// itself and waits for `USER name@host`.
    pub fn new(cfg: SessionConfig) -> Session {
        let mut s = Session {
            phase: Phase::Open,
            server: None,
            out: Output::default(),
            owed: Owed::default(),
            input: ClientInput::default(),
            login: Login::default(),
            route: Route::default(),
            data: Data::new(&cfg),
            transfers: Transfers::default(),
            ends: ends::Ends::default(),
            quit: false,
            timers: Timers::new(cfg.timeouts),
            cfg,
        };
        match s.cfg.upstream {
            Upstream::Fixed(server) => {
                s.server = Some(ServerAddr::new(server));
                s.owed.expect(Pending::Greeting);
            }
            Upstream::UserAtHost => {
                s.phase = Phase::WaitUser;
                s.out.send_client(reply(
                    220,
                    "ftpalg gateway ready; log in as USER name@host[:port].",
                ));
            }
        }
        s
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop()
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
        self.login.user()
    }

    /// Whether the server accepted the login.
    pub fn logged_in(&self) -> bool {
        self.login.logged_in()
    }

    /// How many replies are owed to the client and how many client lines
    /// are held, each bounded by the config (for metrics and tests).
    pub fn backlog(&self) -> (usize, usize) {
        (self.owed.len(), self.input.held())
    }

    /// Whether a data channel is being set up (client input is held).
    pub fn busy(&self) -> bool {
        matches!(self.phase, Phase::Routing | Phase::Greeting) || self.data.busy()
    }

    /// The data plane this session was started with.
    pub fn data_plane(&self) -> DataPlane {
        self.cfg.data_plane
    }

    /// Bytes of client output held until data channels have delivered
    /// (the driver stops reading both peers while its own queue and these
    /// are over its cap).
    pub fn held_bytes(&self) -> usize {
        self.out.held_bytes()
    }

    /// Whether client output waits for a data channel (a session that is
    /// to end closes once none does).
    pub fn holding(&self) -> bool {
        self.out.holding()
    }

    /// Whether a transfer is under way, relayed or forwarded by the kernel.
    pub fn transfers_running(&self) -> bool {
        self.out.running()
    }

    /// The channels whose transfer the server reported complete and whose
    /// data is through, only their closing left: what a session that has
    /// ended waits for a moment, so their transfers are logged whole.
    pub fn delivered_channels(&self) -> Vec<DataId> {
        self.out.delivered_ids()
    }

    /// A frame from the client.
    pub fn on_client(&mut self, frame: Frame, policy: &dyn Policy) {
        if matches!(self.phase, Phase::Closed | Phase::Opaque) || self.pipeline_full() {
            return;
        }
        let line = match frame {
            Frame::TooLong { prefix } => {
                let detail = format!("line over the cap: {}", show_line(&prefix, 40).text);
                let r = Refused::new(500, "Command line too long.", Denial::LineTooLong, detail);
                return self.deny(r);
            }
            Frame::Line(line) => line,
        };
        if !self.busy() && self.input.held() == 0 {
            return self.client_line(line, policy);
        }
        if self.input.held() >= self.cfg.max_held_lines {
            self.out.event(Event::Denied {
                reason: Denial::Pipeline,
                detail: format!("{} commands held", self.input.held()),
                file: None,
            });
            self.out
                .send_client(reply(421, "Too many commands sent ahead; closing."));
            return self.close();
        }
        self.input.hold(line);
        if !self.busy() {
            self.drain_held(policy);
        }
    }

    fn drain_held(&mut self, policy: &dyn Policy) {
        while !self.busy() && !matches!(self.phase, Phase::Closed | Phase::Opaque) {
            let Some(line) = self.input.next() else {
                break;
            };
            self.client_line(line, policy);
        }
    }

    /// Closes the session when the client has run too far ahead of the
    /// server's replies (a server that never answers, or a client that
    /// pipelines without end): the queue of replies owed must stay bounded.
    fn pipeline_full(&mut self) -> bool {
        if self.owed.len() < self.cfg.max_pending {
            return false;
        }
        self.out.event(Event::Denied {
            reason: Denial::Pipeline,
            detail: format!("{} replies owed", self.owed.len()),
            file: None,
        });
        self.out
            .send_client(reply(421, "Too many commands without replies; closing."));
        self.close();
        true
    }

    fn client_line(&mut self, line: Line, policy: &dyn Policy) {
        if self.pipeline_full() {
            return;
        }
        let checked = match line.decode() {
            Ok(c) => c,
            Err(e) => return self.deny(client::telnet_refused(&line, e)),
        };
        let text = checked.text;
        let command = match parse_command(&text) {
            Ok(c) => c,
            Err(e) => return self.deny(client::syntax_refused(&text, e)),
        };
        let ctx = CommandContext {
            verb: command.verb,
            user: self.user(),
            client: self.cfg.client.ip(),
            server: self.server(),
            data_mode: client::data_mode(command.verb),
        };
        if let Verdict::Deny { code, text, rule } = policy.check_command(&ctx) {
            return self.deny_by_rule(command, code, text, rule);
        }
        if self.phase == Phase::WaitUser {
            return self.before_route(command);
        }
        // The server gets exactly the text checked above, re-encoded: never
        // the raw bytes, whose telnet sequences it might read differently.
        let wire = encode_line(&text, checked.synch && command.verb == cmd::ABOR);
        match command.verb {
            cmd::USER => {
                let name = lossy(command.arg);
                self.login.propose(name.clone());
                self.out.event(Event::User { name: name.clone() });
                self.out.send_server(wire);
                self.owed.expect(Pending::User { name });
            }
            cmd::PORT | cmd::EPRT | cmd::LPRT => match self.input.active(command, &self.cfg) {
                Ok(req) => self.start_setup(req, policy),
                Err(r) => self.deny(r),
            },
            cmd::PASV | cmd::EPSV | cmd::LPSV => match self.input.passive(command, &self.cfg) {
                Ok(Some(req)) => self.start_setup(req, policy),
                Ok(None) => self
                    .owed
                    .reply_local(reply(200, "EPSV ALL ok."), &mut self.out),
                Err(r) => self.deny(r),
            },
            cmd::AUTH => match policy.tls() {
                TlsPolicy::Refuse => self.deny(Refused::new(
                    534,
                    "TLS is not available through this gateway; continue without it.",
                    Denial::Tls,
                    format!("AUTH {}", lossy(command.arg)),
                )),
                TlsPolicy::Passthrough => self.forward(wire, command.verb, None),
            },
            cmd::REIN => {
                self.login.reset();
                self.input.reset();
                self.data.release_ready(&mut self.out);
                self.forward(wire, command.verb, None);
            }
            cmd::ABOR => {
                self.cut_transfer();
                self.forward(wire, cmd::ABOR, None);
            }
            verb => self.forward_command(command, wire, verb),
        }
    }

    /// Forwards a command; a transfer takes the channel set up for it.
    fn forward_command(&mut self, command: Command<'_>, wire: Vec<u8>, verb: Verb) {
        let Some(direction) = Direction::of(verb) else {
            return self.forward(wire, verb, None);
        };
        let data = self.data.take_ready();
        if let Some(id) = data {
            self.transfers.bind(id);
            self.ends.bound(id);
            self.out.push(Action::Transfer {
                id,
                verb,
                direction,
                arg: lossy(command.arg),
            });
        }
        self.forward(wire, verb, data);
    }

    fn forward(&mut self, wire: Vec<u8>, verb: Verb, data: Option<DataId>) {
        self.out.send_server(wire);
        self.owed.expect(Pending::Forward { verb, data });
    }

    fn deny(&mut self, r: Refused) {
        self.out.event(Event::Denied {
            reason: r.reason,
            detail: r.detail,
            file: None,
        });
        self.owed.reply_local(reply(r.code, &r.text), &mut self.out);
    }

    /// The rules refuse `command`: the denial names its file, and a
    /// transfer refused leaves the channel set up for it unused, released,
    /// its end the rules' refusal.
    fn deny_by_rule(&mut self, command: Command<'_>, code: u16, text: String, rule: String) {
        let detail = format!("{} by rule {rule}", command.verb);
        let reason = Denial::Rule(rule);
        let file = (!command.arg.is_empty() && client::names_a_file(command.verb))
            .then(|| lossy(command.arg));
        if Direction::of(command.verb).is_some() {
            if let Some(id) = self.data.take_ready() {
                self.out.release(id);
                self.ends.denied(
                    id,
                    reason.to_string(),
                    command.verb.to_string(),
                    file.clone().unwrap_or_default(),
                );
            }
        }
        self.out.event(Event::Denied {
            reason,
            detail,
            file,
        });
        self.owed.reply_local(reply(code, &text), &mut self.out);
    }

    /// Commands before the client has named a server (user@host routing).
    fn before_route(&mut self, command: Command<'_>) {
        match self.route.before(command) {
            BeforeRoute::Connect { user, host, port } => {
                self.login.propose(user.clone());
                self.out.event(Event::User { name: user });
                self.phase = Phase::Routing;
                self.out.push(Action::Connect { host, port });
            }
            BeforeRoute::Reply(bytes) => self.out.send_client(bytes),
            BeforeRoute::Quit => {
                self.out.send_client(reply(221, "Goodbye."));
                self.quit = true;
                self.close();
            }
            BeforeRoute::Refuse(r) => self.deny(r),
        }
    }

    /// The driver connected to the server the client named.
    pub fn upstream_connected(&mut self, server: SocketAddr) {
        if self.phase != Phase::Routing {
            return;
        }
        self.server = Some(ServerAddr::new(server));
        self.phase = Phase::Greeting;
        self.owed.expect(Pending::RoutedGreeting);
    }

    /// The driver did not reach the server the client named: the rules
    /// do not let it (`530`: the client may name another, up to
    /// `max_route_attempts`), or it could not be reached (`421`, and the
    /// session ends, as with a listener's fixed server). Neither is the
    /// engine's denial: the driver logs and counts each.
    pub fn upstream_failed(&mut self, failure: RouteFailure<'_>, policy: &dyn Policy) {
        if self.phase != Phase::Routing {
            return;
        }
        let reason = match failure {
            RouteFailure::Unreachable(reason) => {
                self.out.send_client(reply(421, &format!("{reason}.")));
                return self.close();
            }
            RouteFailure::NotAllowed(reason) => reason,
        };
        if self.route.attempts() >= self.cfg.max_route_attempts {
            let text = format!("{reason}; too many attempts, closing.");
            self.out.send_client(reply(421, &text));
            return self.close();
        }
        self.phase = Phase::WaitUser;
        self.login.withdraw();
        self.out.send_client(reply(530, &format!("{reason}.")));
        self.drain_held(policy);
    }

    /// A frame from the server.
    pub fn on_server(&mut self, frame: Frame, policy: &dyn Policy) {
        if matches!(self.phase, Phase::Closed | Phase::Opaque) {
            return;
        }
        let (rl, bytes) = match self.owed.read(frame, &mut self.out) {
            Read::Done => return,
            Read::Consumed(head, code, text) => {
                self.consumed_reply(head, code, &text, policy);
                return self.owed.flush_local(&mut self.out);
            }
            Read::Forward(rl, bytes) => (rl, bytes),
        };
        let code = rl.code;
        if let Some(owed) = self.owed.transfer_first() {
            match self.transfers.preliminary(owed, code, rl.last) {
                Preliminary::Passes => {}
                Preliminary::Dropped => return,
                Preliminary::EndsCutTransfer => {
                    self.owed.answered();
                    self.out.release(owed);
                    self.out.send_client(held::ABORTED.to_vec());
                    return self.owed.flush_local(&mut self.out);
                }
            }
        }
        if let Some(&Pending::Forward { data: Some(id), .. }) = self.owed.front() {
            if rl.first && !code.is_preliminary() && !code.is_success() {
                let line = String::from_utf8_lossy(&bytes);
                self.ends
                    .server_refused(id, code.0, line.trim_end().to_string());
            }
        }
        match self.owed.front() {
            None => {
                if rl.first && matches!(code.0, 227..=229) {
                    self.out.event(Event::UnsolicitedPassive { code: code.0 });
                }
                self.out.send_client(bytes);
            }
            Some(&Pending::Forward { data: Some(id), .. })
                if !code.is_preliminary() && code.is_success() =>
            {
                // Not before the transfer's data: held until its channel
                // has delivered, settled as `426` if its data path failed.
                if self.out.success_reply(id, bytes, self.timers.now()) {
                    // Delivered: an ABOR from now on has no data to cut.
                    self.transfers.over(id);
                }
            }
            Some(_) => self.out.send_client(bytes),
        }
        if rl.last && !code.is_preliminary() {
            if let Some(head) = self.owed.answered() {
                self.forwarded_reply(head, code);
            }
            self.owed.flush_local(&mut self.out);
        }
    }

    fn forwarded_reply(&mut self, head: Pending, code: ReplyCode) {
        let (verb, data) = match head {
            Pending::Forward { verb, data } => (verb, data),
            Pending::User { name } => {
                if self.login.user_answered(name, code.0) {
                    self.logged_in_now();
                }
                return;
            }
            _ => return,
        };
        // After a failed transfer the channel will never be used: close it.
        // After a successful one the data has flowed (or is still being
        // accepted and relayed): the relay ends by itself.
        if let Some(id) = data.filter(|_| !code.is_success()) {
            self.out.release(id);
            self.transfers.over(id);
        }
        match verb {
            cmd::PASS | cmd::ACCT if code.0 == 230 => {
                self.login.password_accepted();
                self.logged_in_now();
            }
            cmd::AUTH if code.0 == 234 => {
                self.phase = Phase::Opaque;
                self.timers.stop();
                self.out.event(Event::TlsPassthrough);
                self.data.release_ready(&mut self.out);
                self.out.push(Action::Opaque);
            }
            cmd::QUIT if code.is_success() => {
                self.quit = true;
                self.close();
            }
            _ => {}
        }
    }

    fn logged_in_now(&mut self) {
        self.timers.login_met();
        self.out.event(Event::LoggedIn);
    }

    fn consumed_reply(&mut self, head: Pending, code: ReplyCode, text: &[u8], policy: &dyn Policy) {
        let ended = match head {
            Pending::RoutedGreeting if code.is_success() => {
                let user = self.route.take_user();
                self.phase = Phase::Open;
                let line = [&b"USER "[..], &user].concat();
                self.out.send_server(encode_line(&line, false));
                self.owed.expect(Pending::User {
                    name: String::from_utf8_lossy(&user).into_owned(),
                });
                return self.drain_held(policy);
            }
            Pending::RoutedGreeting => {
                let text = format!("The server is not ready: {} {}", code.0, first_line(text));
                self.out.send_client(reply(421, &text));
                return self.close();
            }
            Pending::ServerPassive { id, verb } => {
                self.with_setup(|data, cx| data.passive_reply(id, verb, code, text, cx))
            }
            Pending::ServerActive { id, verb } => {
                self.with_setup(|data, cx| data.port_reply(id, verb, code, text, cx))
            }
            Pending::Greeting
            | Pending::Forward { .. }
            | Pending::User { .. }
            | Pending::Local(_)
            | Pending::Overdue => None,
        };
        self.setup_ended(ended, policy);
    }

    fn start_setup(&mut self, client: client::ClientReq, policy: &dyn Policy) {
        let Some(server) = self.server else {
            return self
                .owed
                .reply_local(reply(503, "No server yet."), &mut self.out);
        };
        let requested = policy.server_mode(self.cfg.client.ip(), *server);
        self.with_setup(|data, cx| {
            data.start(client, requested, cx);
            None
        });
    }

    /// Runs one step of the data setup with what it needs of the session.
    fn with_setup(
        &mut self,
        step: impl FnOnce(&mut Data, &mut Cx<'_>) -> Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        let server = self.server?;
        let mut cx = Cx {
            cfg: &self.cfg,
            server,
            out: &mut self.out,
            owed: &mut self.owed,
        };
        step(&mut self.data, &mut cx)
    }

    /// A setup ended with `reply` to the client: held commands go on.
    fn setup_ended(&mut self, reply: Option<Vec<u8>>, policy: &dyn Policy) {
        if let Some(bytes) = reply {
            self.owed.reply_local(bytes, &mut self.out);
            self.drain_held(policy);
        }
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
        let ended = self.with_setup(|data, cx| data.prepared(id, side, local, cx));
        self.setup_ended(ended, policy);
    }

    /// The driver could not prepare one side of channel `id`.
    pub fn data_failed(&mut self, id: DataId, side: Side, reason: &str, policy: &dyn Policy) {
        let ended = self.with_setup(|data, cx| data.failed(id, side, reason, cx));
        self.setup_ended(ended, policy);
    }

    /// `ABOR` from the client: releases a data channel set up for no
    /// transfer yet, and cuts the one of the last transfer. `ABOR` itself
    /// is forwarded by the caller, after this.
    fn cut_transfer(&mut self) {
        self.data.release_ready(&mut self.out);
        let Some(id) = self.transfers.cut() else {
            return;
        };
        self.out.event(Event::Aborted { id });
        self.ends.aborted(id);
        self.out.cut(id);
        self.arm_reply_deadline(id);
    }

    /// A server silent about a transfer whose data was cut is answered
    /// for after `cut_reply_timeout`.
    fn arm_reply_deadline(&mut self, id: DataId) {
        if self.owed.unanswered(id) {
            self.timers.reply_within(id, self.cfg.cut_reply_timeout);
        }
    }

    /// The driver's report, as it starts channel `id` ([`Action::Start`],
    /// before it hands the session anything else), of how the channel's
    /// bytes are carried: through the gateway, where the replies held
    /// behind the channel wait until it has delivered, or beside it, where
    /// they need not wait for bytes the gateway never sees.
    pub fn data_started(&mut self, id: DataId, carriage: Carriage) {
        if self.out.carried(id, carriage) {
            self.transfers.over(id);
        }
    }

    /// The driver's report that the server-to-client direction of channel
    /// `id`'s relay has ended, `Err` with the reason when it failed: the
    /// replies held behind the channel go out, as `426` if it failed.
    pub fn data_delivered(&mut self, id: DataId, outcome: Result<(), &str>) {
        if self.out.delivered(id, outcome, self.timers.now()) {
            self.transfers.over(id);
        }
    }

    /// The driver's report that channel `id` has ended, `Err` with the
    /// reason when its data path failed: its relay task finished (a client
    /// that closed its data connection early, a reset, a stall, no
    /// connection in time), its connection beside the gateway (the
    /// kernel's) closed or failed, or it could not start. A failed relay
    /// whose transfer the server has not answered yet arms the reply
    /// deadline; the end of a channel beside the gateway is learned late
    /// (from conntrack), and arms none.
    pub fn data_ended(&mut self, id: DataId, outcome: Result<(), &str>) {
        let Some((carriage, delivered)) = self.out.ended(id, outcome) else {
            return;
        };
        if delivered {
            self.transfers.over(id);
        }
        if matches!(self.phase, Phase::Closed | Phase::Opaque) {
            return;
        }
        if outcome.is_err() && carriage != Some(Carriage::Beside) {
            self.arm_reply_deadline(id);
        }
    }

    /// The reply deadline of channel `id` passed. If the transfer's reply
    /// is still the next one owed, the client gets `426` from the gateway
    /// and the server's late reply will be dropped; otherwise (answered
    /// meanwhile, or other replies owed first) nothing happens.
    fn reply_overdue(&mut self, id: DataId) {
        // A multi-line reply the server has begun is left to finish: only
        // silence is answered.
        if self.owed.transfer_first() != Some(id) || self.owed.in_reply() {
            return;
        }
        self.owed.answered_for_the_server();
        self.out.event(Event::ReplyOverdue { id });
        self.out.release(id);
        self.out.send_client(held::ABORTED.to_vec());
        self.owed.flush_local(&mut self.out);
    }

    /// How the transfer on channel `id` ended, now that its data path
    /// ended with `path`: the one class it is logged and counted under,
    /// or [`TransferEnd::NotATransfer`] for a channel no transfer used.
    /// Asked once per channel; a second answer is `NotATransfer`.
    pub fn transfer_end(&mut self, id: DataId, path: PathEnd<'_>) -> TransferEnd {
        self.ends.end(id, path)
    }

    /// Whether the session closed because the client said QUIT (for the
    /// end reason the driver logs).
    pub fn quit(&self) -> bool {
        self.quit
    }

    /// The rules' timeouts, passed again whenever the driver may hold newer
    /// ones (a reload applies to the deadlines running).
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timers.set(timeouts);
    }

    /// The driver has heard from a peer or about a data channel at `now`
    /// (it says so before it hands the session what it heard, and once when
    /// it starts listening to both peers): the control idle timeout starts
    /// again, and what follows is timed from `now`.
    pub fn heard(&mut self, now: Time) {
        self.timers.heard(now);
    }

    /// When [`Session::handle_timeout`] is next due, if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        let dialogue = !matches!(self.phase, Phase::Closed | Phase::Opaque);
        let deadlines = self.timers.next(dialogue);
        [deadlines, self.out.next_linger()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The driver's clock reached `now` (at least the time
    /// [`Session::poll_timeout`] named): what was due happens. Like any
    /// other wakeup, it starts the control idle timeout again.
    pub fn handle_timeout(&mut self, now: Time) {
        let dialogue = !matches!(self.phase, Phase::Closed | Phase::Opaque);
        let fired = self.timers.expire(now, dialogue);
        self.out.lingered(now);
        for id in fired.replies {
            self.reply_overdue(id);
        }
        if fired.login {
            self.out.event(Event::LoginTimeout);
            self.dismiss(Refusal::LoginTimeout.reply());
        }
        // Not while a transfer runs: a long transfer keeps the control
        // connection silent throughout.
        if fired.idle && self.phase != Phase::Closed && !self.out.running() {
            self.out.event(Event::IdleTimeout);
            self.out.cancel_all(Cancel::IdleTimeout);
            self.out.send_client(closing::idle_reply());
            self.close();
        }
        self.timers.heard(now);
    }

    /// The driver ends the session for `why`: the client is told why, and
    /// the session closes ([`Action::Close`]).
    pub fn end(&mut self, why: CloseReason) {
        match why {
            CloseReason::ServerClosed if self.phase == Phase::Closed => return,
            CloseReason::ServerClosed | CloseReason::Shutdown => {
                self.out.send_client(why.reply());
            }
            CloseReason::GraceOver => {
                self.out.cancel_all(Cancel::Shutdown);
                self.out.send_client(why.reply());
            }
            CloseReason::Evicted => return self.dismiss(why.reply()),
        }
        self.close();
    }

    /// Admission's end of a session (evicted, or too slow to log in): the
    /// client gets what it was owed, as it stands, then `last`.
    fn dismiss(&mut self, last: Vec<u8>) {
        self.out.release_held();
        self.out.send_client(last);
        self.close();
    }

    /// Closes the session: nothing it set up is wanted, and no deadline of
    /// the dialogue applies. Transfers under way end with the session, as
    /// the driver ends it.
    fn close(&mut self) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.data.close(&mut self.out);
            self.timers.stop();
            self.out.push(Action::Close);
        }
    }
}

#[cfg(test)]
mod tests;

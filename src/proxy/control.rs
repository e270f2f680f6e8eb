//! Drives one FTP session: reads both control connections, feeds the
//! engine, and carries out its actions on sockets.

use super::admission::{Closing, Slot};
use super::pinhole::{connect_as, connect_from, Pinhole, PinholeRequest};
use super::relay::{relay, Moved, RelayLimits};
use super::{Gateway, SessionGuard};
use crate::ftp::command::{self as cmd, Verb};
use crate::ftp::framer::LineFramer;
use crate::ftp::session::{
    Action, ClientMode, DataId, Endpoint, Event, ServerDataMode, ServerMode, Session,
    SessionConfig, Side, Upstream,
};
use crate::rules::{Kind, Listener, Rules, RulesPolicy};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// One side of a data channel before the relay starts.
enum Prepared {
    Pinhole(Pinhole),
    Stream(TcpStream),
}

struct Channel {
    client: Option<Prepared>,
    server: Option<Prepared>,
    cancel: Option<oneshot::Sender<()>>,
    running: bool,
    /// The server-to-client direction is still under way.
    delivering: bool,
    modes: Option<(ClientMode, ServerMode)>,
    transfer: Option<(Verb, String)>,
}

impl Channel {
    fn new() -> Channel {
        Channel {
            client: None,
            server: None,
            cancel: None,
            running: false,
            delivering: false,
            modes: None,
            transfer: None,
        }
    }
}

enum DataEvent {
    Upstream(Result<TcpStream, String>),
    Connected {
        id: DataId,
        side: Side,
        result: io::Result<TcpStream>,
    },
    Delivered {
        id: DataId,
    },
    Finished {
        id: DataId,
        result: Result<Moved, String>,
        elapsed: Duration,
    },
}

struct Driver {
    gw: Arc<Gateway>,
    listener: Listener,
    started_rules: Arc<Rules>,
    id: u64,
    session: Session,
    client_local: SocketAddr,
    client_r: Option<OwnedReadHalf>,
    client_w: OwnedWriteHalf,
    server_r: Option<OwnedReadHalf>,
    server_w: Option<OwnedWriteHalf>,
    server_local: Option<SocketAddr>,
    from_client: LineFramer,
    from_server: LineFramer,
    channels: HashMap<DataId, Channel>,
    out: VecDeque<(Option<DataId>, Vec<u8>)>,
    tx: mpsc::UnboundedSender<DataEvent>,
    rx: mpsc::UnboundedReceiver<DataEvent>,
    opaque: bool,
    closing: bool,
    pinhole_bind: IpAddr,
    /// What the session limits know of this session: its input, its login,
    /// and whether it must make room for a newcomer.
    admission: Arc<Slot>,
}

/// Serves one accepted client connection until the session ends.
/// `listener` is the accepting listener's entry in `rules`, the rules in
/// force when the connection was accepted.
pub(crate) async fn serve(
    gw: Arc<Gateway>,
    rules: Arc<Rules>,
    listener: Listener,
    client: TcpStream,
    peer: SocketAddr,
    guard: SessionGuard,
) {
    let id = guard.id();
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let client_local = match client.local_addr() {
        Ok(a) => SocketAddr::new(a.ip().to_canonical(), a.port()),
        Err(_) => return,
    };
    info!(session = id, client = %peer, listener = %listener.name, "session start");
    let started = Instant::now();
    let result = start(
        gw.clone(),
        listener,
        rules,
        client,
        peer,
        client_local,
        guard.slot(),
    )
    .await;
    match result {
        Ok(user) => {
            info!(session = id, client = %peer, user = user.as_deref().unwrap_or("-"), secs = started.elapsed().as_secs_f64(), "session end")
        }
        Err(e) => {
            info!(session = id, client = %peer, secs = started.elapsed().as_secs_f64(), error = %e, "session end")
        }
    }
    drop(guard);
}

/// The server the connection is for, for listeners that know it up front.
fn fixed_upstream(
    listener: &Listener,
    client: &TcpStream,
    client_local: SocketAddr,
) -> io::Result<Option<SocketAddr>> {
    match listener.kind {
        Kind::Explicit | Kind::Reverse => Ok(listener.upstream),
        Kind::UserAtHost => Ok(None),
        Kind::Transparent if listener.tproxy => Ok(Some(client_local)),
        Kind::Transparent => {
            super::transparent::original_destination_or_local(client, client_local).map(Some)
        }
    }
}

async fn start(
    gw: Arc<Gateway>,
    listener: Listener,
    rules: Arc<Rules>,
    mut client: TcpStream,
    peer: SocketAddr,
    client_local: SocketAddr,
    admission: Arc<Slot>,
) -> io::Result<Option<String>> {
    let id = admission.id;
    if let Err(e) = super::keepalive::enable(&client, rules.limits.control_keepalive) {
        warn!(session = id, client = %peer, error = %e, "cannot set keepalive on the client's control connection");
    }
    let upstream = match fixed_upstream(&listener, &client, client_local) {
        Ok(u) => u,
        Err(e) => {
            let _ = client
                .write_all(b"421 Cannot tell which server this connection is for.\r\n")
                .await;
            return Err(e);
        }
    };
    let mut server = None;
    if let Some(to) = upstream {
        if gw.is_own_listener(to) {
            // Reached directly, a transparent listener's original
            // destination is itself: connecting on would loop through the
            // gateway until a limit stopped it.
            warn!(session = id, client = %peer, server = %to, reason = "destination is one of the gateway's own listeners", "denied");
            gw.metrics
                .denied
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            client
                .write_all(b"421 This connection is addressed to the gateway itself, not to an FTP server.\r\n")
                .await?;
            return Ok(None);
        }
        if !listener.may_reach(to.ip()) {
            warn!(session = id, client = %peer, server = %to, reason = "server not allowed", "denied");
            client
                .write_all(b"421 That server is not reachable through this gateway.\r\n")
                .await?;
            return Ok(None);
        }
        // Admission may close the session before the driver runs: a slow
        // server must not keep an evicted session's sockets open.
        let connect = connect_from(None, to, rules.limits.connect_timeout);
        let connected = tokio::select! {
            r = connect => r,
            why = admission.closing(rules.limits.login_timeout) => {
                if why == Closing::LoginTimeout {
                    gw.metrics
                        .login_timeouts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                warn!(session = id, client = %peer, server = %to, reason = why.reason(), "closing while connecting to the server");
                let _ = tokio::time::timeout(Duration::from_secs(2), client.write_all(why.reply())).await;
                return Ok(None);
            }
        };
        match connected {
            Ok(s) => server = Some(s),
            Err(e) => {
                warn!(session = id, client = %peer, server = %to, error = %e, "cannot reach server");
                client
                    .write_all(format!("421 Cannot reach the server {to}: {e}.\r\n").as_bytes())
                    .await?;
                return Ok(None);
            }
        }
    }
    let mut cfg = SessionConfig::new(
        peer,
        upstream
            .map(Upstream::Fixed)
            .unwrap_or(Upstream::UserAtHost),
    );
    cfg.bounce_protection = rules.security.bounce_protection;
    cfg.refuse_low_ports = rules.security.refuse_low_ports;
    cfg.trust_passive_address = rules.security.trust_passive_address;
    cfg.passive_known_dead = upstream.is_some_and(|u| gw.passive_known_dead(u.ip()));
    cfg.client_advertise = match listener.kind {
        Kind::Reverse => listener.advertise_for(peer.ip()),
        // The client believes it talks to the server itself; the firewall
        // redirects its data connections to that address here too.
        Kind::Transparent => upstream.map(|u| u.ip()),
        _ => None,
    };
    let pinhole_bind = match (listener.kind, cfg.client_advertise) {
        (_, Some(_)) => unspecified_like(client_local.ip()),
        (_, None) => client_local.ip(),
    };
    let session = Session::new(cfg);
    let (client_r, client_w) = client.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let max_line = rules.limits.max_line;
    let mut d = Driver {
        gw,
        listener,
        started_rules: rules,
        id,
        session,
        client_local,
        client_r: Some(client_r),
        client_w,
        server_r: None,
        server_w: None,
        server_local: None,
        from_client: LineFramer::new(max_line),
        from_server: LineFramer::new(max_line),
        channels: HashMap::new(),
        out: VecDeque::new(),
        tx,
        rx,
        opaque: false,
        closing: false,
        pinhole_bind,
        admission,
    };
    if let Some(s) = server {
        d.attach_server(s);
    }
    let r = d.run().await;
    let user = d.session.user().map(String::from);
    r.map(|_| user)
}

fn unspecified_like(ip: IpAddr) -> IpAddr {
    if ip.is_ipv4() {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    }
}

async fn readable_opt(r: &Option<OwnedReadHalf>) -> io::Result<()> {
    match r {
        Some(r) => r.readable().await,
        None => std::future::pending().await,
    }
}

thread_local! {
    /// One read buffer per worker thread instead of two per session: idle
    /// sessions then cost only their state, not their buffers.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 16 * 1024]);
}

/// Reads what is there into the framer: `Some(0)` at end of stream, `None`
/// if the readiness was spurious.
fn read_frames(
    half: &Option<OwnedReadHalf>,
    framer: &mut LineFramer,
    frames: &mut Vec<crate::ftp::framer::Frame>,
) -> io::Result<Option<usize>> {
    let Some(half) = half else { return Ok(None) };
    READ_BUF.with(|b| {
        let mut b = b.borrow_mut();
        match half.try_read(&mut b) {
            Ok(n) => {
                framer.push(&b[..n], frames);
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    })
}

impl Driver {
    /// The policy now in force for this session's listener: the reloaded
    /// rules if the listener still exists in them, else the rules the
    /// session started with.
    fn policy(&self) -> RulesPolicy {
        let now = self.gw.rules();
        match now.listener_index(&self.listener.name) {
            Some(i) => RulesPolicy::new(now, i),
            None => {
                let i = self
                    .started_rules
                    .listener_index(&self.listener.name)
                    .unwrap_or(0);
                RulesPolicy::new(self.started_rules.clone(), i)
            }
        }
    }

    fn attach_server(&mut self, s: TcpStream) {
        let _ = s.set_nodelay(true);
        let keepalive = self.policy().rules().limits.control_keepalive;
        if let Err(e) = super::keepalive::enable(&s, keepalive) {
            warn!(session = self.id, error = %e, "cannot set keepalive on the server's control connection");
        }
        self.server_local = s
            .local_addr()
            .ok()
            .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()));
        let (r, w) = s.into_split();
        self.server_r = Some(r);
        self.server_w = Some(w);
    }

    fn transfer_running(&self) -> bool {
        self.channels.values().any(|c| c.running)
    }

    async fn run(&mut self) -> io::Result<()> {
        let _ = self.client_w.as_ref().set_nodelay(true);
        let mut frames = Vec::new();
        let mut shutdown = self.gw.shutdown_signal();
        loop {
            self.execute().await?;
            self.flush().await?;
            if self.closing {
                self.finish_close().await;
                return Ok(());
            }
            if self.opaque {
                return self.go_opaque().await;
            }
            let (idle, login_timeout) = {
                let policy = self.policy();
                let l = &policy.rules().limits;
                (l.control_idle_timeout, l.login_timeout)
            };
            tokio::select! {
                r = readable_opt(&self.client_r) => {
                    r?;
                    frames.clear();
                    let Some(n) = read_frames(&self.client_r, &mut self.from_client, &mut frames)? else { continue };
                    if n == 0 {
                        debug!(session = self.id, "client closed the control connection");
                        return Ok(());
                    }
                    self.admission.touch();
                    let policy = self.policy();
                    for f in frames.drain(..) {
                        self.session.on_client(f, &policy);
                    }
                }
                r = readable_opt(&self.server_r) => {
                    r?;
                    frames.clear();
                    let Some(n) = read_frames(&self.server_r, &mut self.from_server, &mut frames)? else { continue };
                    if n == 0 {
                        debug!(session = self.id, "server closed the control connection");
                        self.execute().await?;
                        self.out.iter_mut().for_each(|o| o.0 = None);
                        if !self.closing {
                            self.out.push_back((None, b"421 The server closed the control connection.\r\n".to_vec()));
                        }
                        self.flush().await?;
                        return Ok(());
                    }
                    let policy = self.policy();
                    for f in frames.drain(..) {
                        self.session.on_server(f, &policy);
                    }
                }
                Some(ev) = self.rx.recv() => self.data_event(ev),
                _ = tokio::time::sleep(idle) => {
                    if !self.transfer_running() {
                        warn!(session = self.id, reason = "control idle timeout", "closing");
                        self.out.iter_mut().for_each(|o| o.0 = None);
                        self.out.push_back((None, b"421 Idle timeout; closing control connection.\r\n".to_vec()));
                        self.flush().await?;
                        return Ok(());
                    }
                }
                why = self.admission.closing(login_timeout) => return self.close_for(why).await,
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; }, if !self.transfer_running() && !self.session.busy() => {
                    self.out.push_back((None, b"421 The gateway is shutting down.\r\n".to_vec()));
                    self.flush().await?;
                    return Ok(());
                }
            }
        }
    }

    /// Closes the session for admission (evicted, or too slow to log in):
    /// `421`, within a bound, since the client may not be reading.
    async fn close_for(&mut self, why: Closing) -> io::Result<()> {
        if why == Closing::LoginTimeout {
            self.gw
                .metrics
                .login_timeouts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            warn!(session = self.id, client = %self.session.client(), reason = why.reason(), "closing");
        }
        self.out.iter_mut().for_each(|o| o.0 = None);
        self.out.push_back((None, why.reply().to_vec()));
        let _ = tokio::time::timeout(Duration::from_secs(2), self.flush()).await;
        Ok(())
    }

    async fn finish_close(&mut self) {
        self.out.iter_mut().for_each(|o| o.0 = None);
        let _ = self.flush().await;
        let _ = self.client_w.shutdown().await;
        if let Some(w) = self.server_w.as_mut() {
            let _ = w.shutdown().await;
        }
    }

    /// Writes queued client output in order, stopping at a reply that must
    /// wait for a running data relay to finish.
    async fn flush(&mut self) -> io::Result<()> {
        while let Some((wait, _)) = self.out.front() {
            if let Some(id) = wait {
                if self.channels.get(id).is_some_and(|c| c.delivering) {
                    return Ok(());
                }
            }
            if let Some((_, bytes)) = self.out.pop_front() {
                self.client_w.write_all(&bytes).await?;
            }
        }
        Ok(())
    }

    async fn execute(&mut self) -> io::Result<()> {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::ToClient(b) => self.out.push_back((None, b)),
                Action::ToClientAfterData { id, bytes } => self.out.push_back((Some(id), bytes)),
                Action::ToServer(b) => {
                    if let Some(w) = self.server_w.as_mut() {
                        w.write_all(&b).await?;
                    }
                }
                Action::Connect { host, port } => self.connect_upstream(host, port),
                Action::Prepare { id, side, endpoint } => self.prepare(id, side, endpoint),
                Action::Start {
                    id,
                    client_mode,
                    server_mode,
                } => self.start_relay(id, client_mode, server_mode),
                Action::Transfer { id, verb, arg } => {
                    if let Some(c) = self.channels.get_mut(&id) {
                        c.transfer = Some((verb, arg));
                    }
                }
                Action::Release { id } => {
                    if let Some(c) = self.channels.get_mut(&id) {
                        if let Some(cancel) = c.cancel.take() {
                            let _ = cancel.send(());
                        }
                        if !c.running {
                            self.channels.remove(&id);
                        }
                    }
                }
                Action::Opaque => self.opaque = true,
                Action::Close => self.closing = true,
                Action::Event(e) => self.log_event(e),
            }
        }
        Ok(())
    }

    fn log_event(&self, e: Event) {
        let id = self.id;
        let client = self.session.client();
        let user = self.session.user().unwrap_or("-").to_string();
        match e {
            Event::Denied { reason, detail } => {
                warn!(session = id, client = %client, user = %user, reason = %reason, detail = %detail, "denied");
                self.gw
                    .metrics
                    .denied
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Event::Unparsed { from, line } => {
                info!(session = id, from = ?from, line = %line, "passed through a line it could not parse")
            }
            Event::UnsolicitedPassive { code } => warn!(
                session = id,
                code, "unsolicited passive reply from the server: not honoured"
            ),
            Event::PassiveAddressIgnored { advertised, used } => {
                info!(session = id, advertised = %advertised, used = %used, "server advertised another address in its passive reply; using the control connection's")
            }
            Event::PassiveFallback { reason } => {
                warn!(session = id, reason = %reason, "server passive port unreachable; using active mode towards it");
                if let Some(server) = self.session.server() {
                    self.gw.mark_passive_dead(server.ip());
                }
            }
            Event::User { name } => debug!(session = id, user = %name, "user"),
            Event::LoggedIn => {
                self.admission.settle();
                info!(session = id, client = %client, user = %user, "logged in")
            }
            Event::TlsPassthrough => {
                // The login is encrypted from here on: the gateway cannot
                // tell, so the session counts as logged in.
                self.admission.settle();
                info!(
                    session = id,
                    "TLS passed through; data channels not inspected"
                )
            }
        }
    }

    fn connect_upstream(&mut self, host: String, port: u16) {
        let tx = self.tx.clone();
        let listener = self.listener.clone();
        let timeout = self.policy().rules().limits.connect_timeout;
        tokio::spawn(async move {
            let result = async {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map_err(|e| format!("Cannot resolve {host}: {e}"))?
                    .collect();
                let allowed: Vec<SocketAddr> = addrs
                    .iter()
                    .copied()
                    .filter(|a| listener.may_reach(a.ip()))
                    .collect();
                if allowed.is_empty() {
                    return Err(format!("{host} is not reachable through this gateway"));
                }
                let mut last = String::new();
                for a in allowed {
                    match connect_from(None, a, timeout).await {
                        Ok(s) => return Ok(s),
                        Err(e) => last = format!("Cannot connect to {a}: {e}"),
                    }
                }
                Err(last)
            }
            .await;
            let _ = tx.send(DataEvent::Upstream(result));
        });
    }

    fn prepare(&mut self, id: DataId, side: Side, endpoint: Endpoint) {
        let policy = self.policy();
        let rules = policy.rules();
        self.channels.entry(id).or_insert_with(Channel::new);
        match endpoint {
            Endpoint::Listen { expect_peer } => {
                let (bind, range) = match side {
                    Side::Client => (self.pinhole_bind, rules.data.client_ports),
                    Side::Server => (
                        self.server_local
                            .map(|a| a.ip())
                            .unwrap_or(unspecified_like(expect_peer)),
                        rules.data.server_ports,
                    ),
                };
                let req = PinholeRequest {
                    bind,
                    range,
                    expect_peer: rules.security.check_data_peer.then_some(expect_peer),
                    transparent: side == Side::Client && self.listener.tproxy,
                };
                match self.gw.pinholes.open(req) {
                    Ok(p) => {
                        let local = p.local_addr();
                        debug!(session = self.id, ?side, %local, expect = %expect_peer, "pinhole open");
                        let c = self.channels.entry(id).or_insert_with(Channel::new);
                        match side {
                            Side::Client => c.client = Some(Prepared::Pinhole(p)),
                            Side::Server => c.server = Some(Prepared::Pinhole(p)),
                        }
                        self.session.data_prepared(id, side, local, &policy);
                    }
                    Err(e) => {
                        warn!(session = self.id, ?side, error = %e, "cannot open pinhole");
                        self.session.data_failed(id, side, &e.to_string(), &policy);
                    }
                }
            }
            Endpoint::Connect { to } => {
                let (from, timeout) = match side {
                    Side::Client => (Some(self.client_local.ip()), rules.limits.connect_timeout),
                    Side::Server => {
                        let probe = if policy.listener().server_mode == ServerDataMode::Auto {
                            rules.data.passive_probe_timeout
                        } else {
                            rules.limits.connect_timeout
                        };
                        (self.server_local.map(|a| a.ip()), probe)
                    }
                };
                // Under TPROXY the client expects the server's address as
                // the source of an active-mode connection.
                let transparent = side == Side::Client && self.listener.tproxy;
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = connect_as(from, to, timeout, transparent).await;
                    let _ = tx.send(DataEvent::Connected { id, side, result });
                });
            }
        }
    }

    fn start_relay(&mut self, id: DataId, client_mode: ClientMode, server_mode: ServerMode) {
        let rules = self.policy().rules().clone();
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        let (Some(client), Some(server)) = (c.client.take(), c.server.take()) else {
            return;
        };
        let (cancel_tx, cancel_rx) = oneshot::channel();
        c.cancel = Some(cancel_tx);
        c.running = true;
        c.delivering = true;
        c.modes = Some((client_mode, server_mode));
        let tx = self.tx.clone();
        let deadline = rules.data.pinhole_timeout;
        let limits = RelayLimits {
            idle: rules.limits.transfer_idle_timeout,
            rate: rules.limits.bandwidth_per_session,
        };
        let session = self.id;
        let metrics = self.gw.metrics.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let strangers = |who: &'static str| {
                let metrics = metrics.clone();
                move |peer: SocketAddr| {
                    metrics
                        .strangers
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    warn!(session, side = who, stranger = %peer, reason = "unexpected peer", "denied: pinhole connection refused");
                }
            };
            let establish = async {
                let c = establish(client, deadline, strangers("client"));
                let s = establish(server, deadline, strangers("server"));
                tokio::try_join!(c, s)
            };
            let result = tokio::select! {
                r = establish => match r {
                    Ok((c, s)) => {
                        let (done_tx, done_rx) = oneshot::channel();
                        let tx2 = tx.clone();
                        tokio::spawn(async move {
                            if done_rx.await.is_ok() {
                                let _ = tx2.send(DataEvent::Delivered { id });
                            }
                        });
                        relay(c, s, limits, done_tx).await.map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e),
                },
                _ = cancel_rx => Err("not used".to_string()),
            };
            let _ = tx.send(DataEvent::Finished {
                id,
                result,
                elapsed: started.elapsed(),
            });
        });
    }

    fn data_event(&mut self, ev: DataEvent) {
        let policy = self.policy();
        match ev {
            DataEvent::Upstream(Ok(stream)) => {
                let addr = stream.peer_addr();
                self.attach_server(stream);
                match addr {
                    Ok(a) => {
                        info!(session = self.id, server = %a, "routed");
                        self.session.upstream_connected(a);
                    }
                    Err(e) => self.session.upstream_failed(&e.to_string(), &policy),
                }
            }
            DataEvent::Upstream(Err(reason)) => {
                warn!(session = self.id, reason = %reason, "route failed");
                self.session.upstream_failed(&reason, &policy);
            }
            DataEvent::Connected { id, side, result } => match result {
                Ok(stream) => {
                    // Until the relay takes it, dropping it must reset.
                    super::pinhole::reset_on_close(&stream);
                    let local = stream.local_addr().unwrap_or(self.client_local);
                    if let Some(c) = self.channels.get_mut(&id) {
                        match side {
                            Side::Client => c.client = Some(Prepared::Stream(stream)),
                            Side::Server => c.server = Some(Prepared::Stream(stream)),
                        }
                        self.session.data_prepared(id, side, local, &policy);
                    }
                }
                Err(e) => {
                    debug!(session = self.id, ?side, error = %e, "data connect failed");
                    self.session.data_failed(id, side, &e.to_string(), &policy);
                }
            },
            DataEvent::Delivered { id } => {
                if let Some(c) = self.channels.get_mut(&id) {
                    c.delivering = false;
                }
            }
            DataEvent::Finished {
                id,
                result,
                elapsed,
            } => {
                let Some(c) = self.channels.remove(&id) else {
                    return;
                };
                let (cm, sm) = c
                    .modes
                    .map(|(c, s)| (c.as_str(), s.as_str()))
                    .unwrap_or(("-", "-"));
                let (verb, file) = c
                    .transfer
                    .unwrap_or((Verb::from_static("NONE"), String::new()));
                let direction = match verb {
                    cmd::RETR => "download",
                    cmd::STOR | cmd::STOU | cmd::APPE => "upload",
                    cmd::LIST | cmd::NLST | cmd::MLSD => "listing",
                    _ => "-",
                };
                let server = self
                    .session
                    .server()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                let user = self.session.user().unwrap_or("-").to_string();
                match result {
                    Ok(m) => {
                        self.gw
                            .metrics
                            .transfers
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        info!(session = self.id, client = %self.session.client(), server = %server, user = %user, direction, command = %verb, file = %file, client_mode = cm, server_mode = sm, bytes_up = m.up, bytes_down = m.down, secs = elapsed.as_secs_f64(), result = "ok", "transfer")
                    }
                    Err(e) if e == "not used" => {
                        debug!(session = self.id, "data channel released unused")
                    }
                    Err(e) => {
                        warn!(session = self.id, client = %self.session.client(), server = %server, user = %user, direction, command = %verb, file = %file, client_mode = cm, server_mode = sm, secs = elapsed.as_secs_f64(), result = "failed", error = %e, "transfer")
                    }
                }
            }
        }
    }

    /// After AUTH TLS passes through: copy raw bytes both ways.
    async fn go_opaque(&mut self) -> io::Result<()> {
        let (Some(mut cr), Some(mut sr), Some(mut sw)) = (
            self.client_r.take(),
            self.server_r.take(),
            self.server_w.take(),
        ) else {
            return Ok(());
        };
        let from_client = self.from_client.take_buffered();
        if !from_client.is_empty() {
            sw.write_all(&from_client).await?;
        }
        let from_server = self.from_server.take_buffered();
        if !from_server.is_empty() {
            self.client_w.write_all(&from_server).await?;
        }
        let cw = &mut self.client_w;
        let up = async {
            tokio::io::copy(&mut cr, &mut sw).await?;
            sw.shutdown().await
        };
        let down = async {
            tokio::io::copy(&mut sr, cw).await?;
            cw.shutdown().await
        };
        tokio::try_join!(up, down)?;
        Ok(())
    }
}

async fn establish(
    p: Prepared,
    deadline: Duration,
    on_stranger: impl FnMut(SocketAddr),
) -> Result<TcpStream, String> {
    match p {
        Prepared::Stream(s) => Ok(s),
        Prepared::Pinhole(p) => p
            .accept(deadline, on_stranger)
            .await
            .map_err(|e| e.to_string()),
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        for c in self.channels.values_mut() {
            if let Some(cancel) = c.cancel.take() {
                // A relay under way goes on; one still waiting is cancelled.
                let _ = cancel.send(());
            }
        }
    }
}

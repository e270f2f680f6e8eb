//! Drives one FTP session: reads both control connections, feeds the
//! engine, and carries out its actions on sockets.
//!
//! Bounds: replies queued for the client are capped (`OUT_CAP`; over it
//! neither connection is read, so TCP pushes back), every control write
//! has a deadline, and the session's data channels (`channels`) end with
//! it.

mod actions;
mod channels;
mod opaque;
mod output;
mod passive;
mod route;
mod shared;

use output::bounded_write;
pub(super) use passive::PassiveMemo;
use route::fixed_upstream;
pub(super) use shared::{OwnListeners, SessionGateway};

use super::admission::{Dismissal, SessionGuard, Slot};
use super::datapath::{PathReport, SessionPaths};
use super::sockets::{connect_from, unspecified_like};
use crate::addrs::{ClientAddr, GatewayAddr};
use crate::ftp::framer::LineFramer;
use crate::ftp::refusal::Refusal;
use crate::ftp::session::{
    Action, CloseReason, DataId, DataPlane, Event, Session, SessionConfig, Upstream,
};
use crate::rules::{DataPath, Kind, Listener, Rules, RulesPolicy};
use channels::{Cancel, Channel, DataEvent};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Bytes of client output queued before the driver stops reading either
/// connection: behind a held reply, pipelined commands wait in the peers'
/// socket buffers instead of the gateway's memory.
const OUT_CAP: usize = 64 * 1024;

struct Driver {
    gw: Arc<SessionGateway>,
    listener: Listener,
    started_rules: Arc<Rules>,
    id: u64,
    session: Session,
    client_local: GatewayAddr,
    client_r: Option<OwnedReadHalf>,
    client_w: OwnedWriteHalf,
    server_r: Option<OwnedReadHalf>,
    server_w: Option<OwnedWriteHalf>,
    server_local: Option<GatewayAddr>,
    from_client: LineFramer,
    from_server: LineFramer,
    channels: HashMap<DataId, Channel>,
    /// Where the channels get their paths; the session's state in the
    /// kernel ends with it.
    paths: SessionPaths,
    /// Channels whose data path failed, newest last (bounded).
    failed: VecDeque<(DataId, String)>,
    out: VecDeque<(Option<DataId>, Vec<u8>)>,
    /// Bytes in `out`.
    out_bytes: usize,
    tx: mpsc::UnboundedSender<DataEvent>,
    rx: mpsc::UnboundedReceiver<DataEvent>,
    opaque: bool,
    /// The session is to end: nothing more is read, and it closes once no
    /// queued reply waits for a data channel.
    close_pending: bool,
    pinhole_bind: IpAddr,
    /// What the session limits know of this session: its input, its login,
    /// and whether it must make room for a newcomer.
    admission: Arc<Slot>,
}

/// Serves one accepted client connection until the session ends.
/// `listener` is the accepting listener's entry in `rules`, the rules in
/// force when the connection was accepted.
pub(crate) async fn serve(
    gw: Arc<SessionGateway>,
    rules: Arc<Rules>,
    listener: Listener,
    client: TcpStream,
    peer: ClientAddr,
    guard: SessionGuard,
) {
    let id = guard.id();
    let client_local = match client.local_addr() {
        Ok(a) => GatewayAddr::new(a),
        Err(_) => return,
    };
    gw.telemetry.session_start(id, *peer, &listener.name);
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
    let secs = started.elapsed().as_secs_f64();
    let t = &gw.telemetry;
    match result {
        Ok(user) => t.session_end(id, *peer, user.as_deref(), secs, None),
        Err(e) => t.session_end(id, *peer, None, secs, Some(&e.to_string())),
    }
    drop(guard);
}

async fn start(
    gw: Arc<SessionGateway>,
    listener: Listener,
    rules: Arc<Rules>,
    mut client: TcpStream,
    peer: ClientAddr,
    client_local: GatewayAddr,
    admission: Arc<Slot>,
) -> io::Result<Option<String>> {
    let id = admission.id;
    // Keepalive, Nagle off and urgent data inline come with the socket from
    // its listener (`listeners.rs`).
    let upstream = match fixed_upstream(&listener, &client, client_local) {
        Ok(u) => u,
        Err(e) => {
            let _ = client.write_all(&Refusal::UnknownDestination.reply()).await;
            return Err(e);
        }
    };
    let mut server = None;
    if let Some(to) = upstream {
        if gw.listeners.is_own_listener(to) {
            // Reached directly, a transparent listener's original
            // destination is itself: connecting on would loop through the
            // gateway until a limit stopped it.
            gw.telemetry.denied(
                Some(id),
                *peer,
                "-",
                "self-destination",
                &format!("{to} is one of the gateway's own listeners"),
            );
            client.write_all(&Refusal::SelfDestination.reply()).await?;
            return Ok(None);
        }
        if !listener.may_reach(to.ip()) {
            gw.telemetry.denied(
                Some(id),
                *peer,
                "-",
                "server-not-allowed",
                &format!("{to} is not in the listener's servers"),
            );
            client.write_all(&Refusal::ServerNotAllowed.reply()).await?;
            return Ok(None);
        }
        // Admission may close the session before the driver runs: a slow
        // server must not keep an evicted session's sockets open.
        let connect = connect_from(None, to, rules.limits.connect_timeout);
        let connected = tokio::select! {
            r = connect => r,
            why = admission.dismissed(rules.limits.login_timeout) => {
                match why {
                    Dismissal::LoginTimeout => gw.telemetry.login_timeout(id, *peer, Some(to)),
                    Dismissal::Evicted => warn!(session = id, client = %peer, server = %to, reason = why.reason(), "closing while connecting to the server"),
                }
                let _ = tokio::time::timeout(Duration::from_secs(2), client.write_all(&why.reply())).await;
                return Ok(None);
            }
        };
        match connected {
            Ok(s) => server = Some(s),
            Err(e) => {
                warn!(session = id, client = %peer, server = %to, error = %e, "cannot reach server");
                let error = e.to_string();
                client
                    .write_all(
                        &Refusal::Unreachable {
                            server: to,
                            error: &error,
                        }
                        .reply(),
                    )
                    .await?;
                return Ok(None);
            }
        }
    }
    let mut cfg = SessionConfig::for_client(
        peer,
        upstream
            .map(Upstream::Fixed)
            .unwrap_or(Upstream::UserAtHost),
    );
    cfg.bounce_protection = rules.security.bounce_protection;
    cfg.refuse_low_ports = rules.security.refuse_low_ports;
    cfg.trust_passive_address = rules.security.trust_passive_address;
    cfg.passive_known_dead = upstream.is_some_and(|u| gw.passive.known_dead(u.ip()));
    cfg.passive_known_alive = upstream.is_some_and(|u| gw.passive.known_alive(u.ip()));
    cfg.client_advertise = match listener.kind {
        Kind::Reverse => listener.advertise_for(peer.ip()),
        // The client believes it talks to the server itself; the firewall
        // redirects its data connections to that address here too.
        Kind::Transparent => upstream.map(|u| u.ip()),
        _ => None,
    };
    cfg.data_plane = match rules.data.path {
        DataPath::Kernel | DataPath::Auto if gw.kernel.is_some() => DataPlane::Kernel {
            exact: listener.kind == Kind::Transparent,
        },
        _ => DataPlane::Relay,
    };
    let pinhole_bind = match (listener.kind, cfg.client_advertise) {
        (_, Some(_)) => unspecified_like(client_local.ip()),
        (_, None) => client_local.ip(),
    };
    let session = Session::new(cfg);
    let (client_r, client_w) = client.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let to_session = tx.clone();
    let paths = SessionPaths::new(
        id,
        gw.telemetry.clone(),
        gw.kernel.as_ref(),
        Arc::new(move |report: PathReport| {
            let _ = to_session.send(DataEvent::Path(report));
        }),
    );
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
        paths,
        failed: VecDeque::new(),
        out: VecDeque::new(),
        out_bytes: 0,
        tx,
        rx,
        opaque: false,
        close_pending: false,
        pinhole_bind,
        admission,
    };
    if let Some(s) = server {
        d.attach_server(s);
    }
    let r = d.run().await;
    d.finish_transfers().await;
    let user = d.session.user().map(String::from);
    r.map(|_| user)
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
        let now = self.gw.rules.get();
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
        self.server_local = s.local_addr().ok().map(GatewayAddr::new);
        let (r, w) = s.into_split();
        self.server_r = Some(r);
        self.server_w = Some(w);
    }

    async fn run(&mut self) -> io::Result<()> {
        let mut frames = Vec::new();
        let mut shutdown = self.gw.shutdown.shutdown_signal();
        let mut hard_stop = self.gw.shutdown.hard_stop_signal();
        loop {
            self.execute().await?;
            self.flush().await?;
            if self.close_pending && !self.waiting_on_data() {
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
            // Over the cap, or closing: read nothing more from either peer.
            let read = !self.close_pending && self.out_bytes <= OUT_CAP;
            tokio::select! {
                r = readable_opt(&self.client_r), if read => {
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
                r = readable_opt(&self.server_r), if read => {
                    r?;
                    frames.clear();
                    let Some(n) = read_frames(&self.server_r, &mut self.from_server, &mut frames)? else { continue };
                    if n == 0 {
                        debug!(session = self.id, "server closed the control connection");
                        self.execute().await?;
                        if !self.close_pending {
                            self.push_out(None, self.session.close_reply(CloseReason::ServerClosed));
                        }
                        // Replies still waiting for their data go out once
                        // it is delivered (or failed), then the session ends.
                        self.close_pending = true;
                        continue;
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
                        self.kill_all(Cancel::IdleTimeout);
                        self.push_out(None, self.session.close_reply(CloseReason::IdleTimeout));
                        self.flush().await?;
                        return Ok(());
                    }
                }
                why = self.admission.dismissed(login_timeout) => return self.close_for(why).await,
                // At a stop a session ends between commands only: not while
                // a transfer runs, a data channel is set up, or a reply is
                // owed to the client (a transfer's 226 that the server sends
                // after the data has ended).
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; }, if !self.transfer_running() && !self.session.busy() && self.session.backlog().0 == 0 => {
                    self.push_out(None, self.session.close_reply(CloseReason::Shutdown));
                    self.flush().await?;
                    return Ok(());
                }
                _ = async { let _ = hard_stop.wait_for(|stop| *stop).await; } => {
                    warn!(session = self.id, reason = "shutdown grace over", "closing; transfers still running are reset");
                    self.kill_all(Cancel::Shutdown);
                    self.push_out(None, self.session.close_reply(CloseReason::Shutdown));
                    self.flush().await?;
                    return Ok(());
                }
            }
        }
    }

    /// Closes the session for admission (evicted, or too slow to log in):
    /// `421`, within a bound, since the client may not be reading.
    async fn close_for(&mut self, why: Dismissal) -> io::Result<()> {
        if why == Dismissal::LoginTimeout {
            self.gw
                .telemetry
                .login_timeout(self.id, self.session.client(), None);
        }
        self.out.iter_mut().for_each(|o| o.0 = None);
        self.push_out(None, why.reply().to_vec());
        let _ = tokio::time::timeout(Duration::from_secs(2), self.flush()).await;
        Ok(())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The session's channels end with it: a relay aborted drops its
        // sockets, which reset unless their direction had ended cleanly;
        // what the session holds in the kernel is released in one request
        // first, so the channels dropped next ask nothing of the kernel.
        if self.transfer_running() {
            warn!(
                session = self.id,
                reason = "session ended",
                "resetting its data channels"
            );
        }
        self.paths.end();
    }
}

//! Drives one FTP session: reads both control connections, feeds the
//! engine, and carries out its actions on sockets.
//!
//! Bounds: replies queued for the client are capped (`OUT_CAP`; over it
//! neither connection is read, so TCP pushes back), every control write
//! has a deadline, and the session's data channels (`channels`) end with
//! it. The session's deadlines are the engine's: the driver sleeps until
//! the one it names and tells it the time.

mod actions;
mod channels;
mod ended;
mod opaque;
mod output;
mod passive;
mod route;
mod shared;
mod start;

use crate::proxy::plain::plain_io_error;
use output::bounded_write;
pub(super) use passive::PassiveMemo;
pub(super) use shared::{OwnListeners, SessionGateway};

use super::admission::{SessionGuard, Slot};
use super::datapath::SessionPaths;
use super::sockets::connect_from;
use crate::addrs::{ClientAddr, GatewayAddr};
use crate::ftp::framer::LineFramer;
use crate::ftp::session::{Action, CloseReason, DataId, Event, Session, Time, Timeouts};
use crate::rules::{Kind, Listener, Rules, RulesPolicy};
use channels::{Channel, DataEvent};
use std::collections::HashMap;
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
    /// The session's clock: the engine's times count from its start.
    clock: Clock,
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
    /// Client output to write (what waits for a data channel the engine
    /// holds).
    out: Vec<u8>,
    tx: mpsc::UnboundedSender<DataEvent>,
    rx: mpsc::UnboundedReceiver<DataEvent>,
    opaque: bool,
    /// The session is to end: nothing more is read, and it closes once no
    /// reply waits for a data channel.
    close_pending: bool,
    /// Admission ends the session (evicted, or too slow to log in): its
    /// last words get a short bound, since the client may not be reading.
    dismissed: bool,
    /// Why it ended, once it has (`closed` when the engine closed it).
    end: &'static str,
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
    let result = start::start(
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
        Ok(end) => t.session_end(
            id,
            *peer,
            end.user.as_deref(),
            end.server.as_deref(),
            secs,
            end.reason,
        ),
        Err(e) => {
            let reason = format!("error: {}", plain_io_error(&e));
            t.session_end(id, *peer, None, None, secs, &reason)
        }
    }
    drop(guard);
}

/// A session's clock: the driver's readings of it are the engine's times.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn start() -> Clock {
        Clock(Instant::now())
    }

    /// The session's time now.
    fn now(&self) -> Time {
        Time::from_start(self.0.elapsed())
    }

    /// When the engine's time `t` comes.
    fn instant(&self, t: Time) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.0 + t.since_start())
    }
}

/// Sleeps until `at`, or for ever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The timeouts the engine times, as `rules` set them.
fn timeouts(rules: &Rules) -> Timeouts {
    Timeouts {
        login: rules.limits.login_timeout,
        control_idle: rules.limits.control_idle_timeout,
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

    /// The driver heard from a peer or about a data channel: the engine
    /// is told the time.
    fn heard(&mut self) {
        let now = self.clock.now();
        self.session.heard(now);
    }

    async fn run(&mut self) -> io::Result<()> {
        let mut frames = Vec::new();
        let mut shutdown = self.gw.shutdown.shutdown_signal();
        let mut hard_stop = self.gw.shutdown.hard_stop_signal();
        loop {
            self.execute().await?;
            if self.dismissed {
                let _ = tokio::time::timeout(Duration::from_secs(2), self.flush()).await;
                return Ok(());
            }
            self.flush().await?;
            if self.close_pending && !self.session.holding() {
                self.finish_close().await;
                return Ok(());
            }
            if self.opaque {
                self.end = "tls passthrough ended";
                return self.go_opaque().await;
            }
            // A reload applies to the deadlines running.
            self.session.set_timeouts(timeouts(self.policy().rules()));
            let deadline = self.session.poll_timeout().map(|t| self.clock.instant(t));
            // Over the cap, or closing: read nothing more from either peer.
            let read = !self.close_pending && self.out.len() + self.session.held_bytes() <= OUT_CAP;
            tokio::select! {
                r = readable_opt(&self.client_r), if read => {
                    r?;
                    self.heard();
                    frames.clear();
                    let Some(n) = read_frames(&self.client_r, &mut self.from_client, &mut frames)? else { continue };
                    if n == 0 {
                        debug!(session = self.id, "client closed the control connection");
                        self.end = "client closed";
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
                    self.heard();
                    frames.clear();
                    let Some(n) = read_frames(&self.server_r, &mut self.from_server, &mut frames)? else { continue };
                    if n == 0 {
                        debug!(session = self.id, "server closed the control connection");
                        self.end = "server closed";
                        // Replies still waiting for their data go out once
                        // it is delivered (or failed), then the session ends.
                        self.session.end(CloseReason::ServerClosed);
                        self.close_pending = true;
                        continue;
                    }
                    let policy = self.policy();
                    for f in frames.drain(..) {
                        self.session.on_server(f, &policy);
                    }
                }
                Some(ev) = self.rx.recv() => {
                    self.heard();
                    self.data_event(ev);
                }
                () = sleep_until(deadline) => self.session.handle_timeout(self.clock.now()),
                () = self.admission.evicted() => {
                    self.session.end(CloseReason::Evicted);
                    self.end = "evicted";
                    self.dismissed = true;
                }
                // At a stop a session ends between commands only: not while
                // a transfer runs, a data channel is set up, or a reply is
                // owed to the client (a transfer's 226 that the server sends
                // after the data has ended).
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; }, if !self.session.transfers_running() && !self.session.busy() && self.session.backlog().0 == 0 => {
                    self.session.end(CloseReason::Shutdown);
                    self.end = "shutdown";
                    self.execute().await?;
                    self.flush().await?;
                    return Ok(());
                }
                _ = async { let _ = hard_stop.wait_for(|stop| *stop).await; } => {
                    warn!(session = self.id, reason = "shutdown grace over", "closing; transfers still running are reset");
                    self.session.end(CloseReason::GraceOver);
                    self.end = "shutdown grace over";
                    self.execute().await?;
                    self.flush().await?;
                    return Ok(());
                }
            }
        }
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

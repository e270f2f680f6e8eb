//! The metrics endpoint: `GET /metrics` (Prometheus text from
//! [`super::events::Telemetry`]), `GET /healthz`, and `GET /status` and
//! `/status.json` (the live sessions, behind a bearer token when the rules
//! name one). `HEAD` answers as `GET` does, without the body; a query
//! string is ignored. A reload that changes `metrics.listen` moves the
//! endpoint: the new address is bound before the old one is let go, and
//! if it cannot be, the endpoint stays where it was.
//!
//! A bounded server that idle peers cannot starve. The accept loop never
//! waits: past [`CONNECTIONS`] a newcomer gets `503` and is closed. A
//! request head must come within [`HEAD_DEADLINE`]; of the connections
//! still waiting for theirs at most [`WAITING`] are kept, the oldest making
//! room for a newcomer, so a liveness probe gets in whatever idle sockets
//! are held. Rendering `/metrics` and `/status` takes one of [`SLOTS`]
//! (`503` when none is free); `/healthz` and the small error replies need
//! none.

mod request;
#[cfg(test)]
mod tests;

use super::events::Telemetry;
use super::shutdown::ShutdownWatch;
use crate::rules::{MetricsSettings, StatusToken};
use request::{Reply, Request};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};
use tracing::{debug, info, warn};

/// Connections handled at once, whatever they are doing; past it a
/// newcomer is answered `503` at once and closed.
const CONNECTIONS: usize = 64;
/// Connections kept while they have not sent their request head; past it
/// the oldest of them is closed for a newcomer.
const WAITING: usize = 32;
/// `/metrics` and `/status` answers rendered and written at once; past it
/// `503`.
const SLOTS: usize = 8;
/// How long a peer has to send its request head.
const HEAD_DEADLINE: Duration = Duration::from_secs(1);
/// Deadline for a whole exchange.
const DEADLINE: Duration = Duration::from_secs(5);
/// Refusals are summed up in the log at most this often.
const DENIAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The endpoint as it runs: where it is bound, its bounds, and the
/// `/status` token in force.
pub(crate) struct Endpoint {
    bound: Mutex<Bound>,
    /// The runtime the accept loops run on (a reload may come from a
    /// thread outside it).
    rt: tokio::runtime::Handle,
    shutdown: ShutdownWatch,
    connections: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    waiting: Mutex<Waiting>,
    token: RwLock<Option<StatusToken>>,
    denials: Denials,
    /// What `/metrics` and `/status` show.
    telemetry: Arc<Telemetry>,
}

/// The listener in use: the address the rules asked for, where that bound,
/// and the accept loop, whose end closes the listening socket.
struct Bound {
    listen: SocketAddr,
    addr: SocketAddr,
    /// Set as soon as the loop is spawned.
    accepting: Option<tokio::task::JoinHandle<()>>,
}

/// The connections that have not sent their head, oldest first, each with
/// the sender whose drop closes it.
#[derive(Default)]
struct Waiting {
    next: u64,
    queue: VecDeque<(u64, oneshot::Sender<()>)>,
}

/// Binds the endpoint that `settings` describe and serves `telemetry` until
/// the gateway stops. Call within the runtime it is to run on.
pub(crate) fn serve(
    telemetry: Arc<Telemetry>,
    shutdown: ShutdownWatch,
    settings: &MetricsSettings,
) -> std::io::Result<Arc<Endpoint>> {
    let listener = bind(settings.listen)?;
    let addr = listener.local_addr()?;
    let ep = Arc::new(Endpoint {
        bound: Mutex::new(Bound {
            listen: settings.listen,
            addr,
            accepting: None,
        }),
        rt: tokio::runtime::Handle::current(),
        shutdown,
        connections: Arc::new(Semaphore::new(CONNECTIONS)),
        slots: Arc::new(Semaphore::new(SLOTS)),
        waiting: Mutex::default(),
        token: RwLock::new(settings.status_token.clone()),
        denials: Denials::default(),
        telemetry,
    });
    let accepting = tokio::spawn(accept_loop(ep.clone(), listener));
    ep.bound.lock().unwrap_or_else(|p| p.into_inner()).accepting = Some(accepting);
    info!(
        addr = %addr,
        status = if settings.status_token.is_some() { "bearer token" } else { "open" },
        "metrics endpoint listening (/metrics, /healthz, /status)"
    );
    ep.warn_exposure();
    Ok(ep)
}

/// A listening socket for `listen`, as `TcpListener::bind` makes one
/// (`SO_REUSEADDR`, so a restart finds the port free), but synchronously:
/// a reload binds from outside the runtime. Call within the runtime.
fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(1024)
}

/// Accepts until the gateway stops or the endpoint moves (the task is then
/// aborted, which drops the listener).
async fn accept_loop(ep: Arc<Endpoint>, listener: TcpListener) {
    let mut stop = ep.shutdown.shutdown_signal();
    if *stop.borrow_and_update() {
        return;
    }
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => ep.admit(stream, peer),
            Err(e) => {
                // Out of descriptors, most likely: give them time to
                // come back rather than spin.
                warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Endpoint {
    /// Where the endpoint is bound now.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.bound.lock().unwrap_or_else(|p| p.into_inner()).addr
    }

    /// Takes a new connection on, without ever waiting.
    fn admit(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            // A fresh socket's send buffer takes this whole: no wait.
            let _ = stream.try_write(&Reply::busy().bytes());
            self.denials.note(peer, "connection limit");
            return;
        };
        let (id, closed) = self.wait_for_head();
        let ep = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(DEADLINE, ep.exchange(stream, peer, id, closed)).await;
        });
    }

    /// Registers a connection as waiting for its head; the oldest waiting
    /// one is closed if [`WAITING`] are.
    fn wait_for_head(&self) -> (u64, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if w.queue.len() >= WAITING {
            // Dropping the sender wakes the connection, which closes.
            w.queue.pop_front();
        }
        w.next += 1;
        let id = w.next;
        w.queue.push_back((id, tx));
        (id, rx)
    }

    fn head_done(&self, id: u64) {
        let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        w.queue.retain(|(i, _)| *i != id);
    }

    async fn exchange(
        &self,
        mut s: TcpStream,
        peer: SocketAddr,
        id: u64,
        closed: oneshot::Receiver<()>,
    ) {
        let head = tokio::select! {
            h = tokio::time::timeout(HEAD_DEADLINE, request::read_head(&mut s)) => Some(h),
            _ = closed => None,
        };
        self.head_done(id);
        let head = match head {
            None => {
                return self
                    .denials
                    .note(peer, "closed for a newer connection before its request")
            }
            Some(Err(_)) => return self.denials.note(peer, "no request within 1 s"),
            Some(Ok(Err(_))) => return,
            Some(Ok(Ok(h))) => h,
        };
        let head = String::from_utf8_lossy(&head);
        let req = request::parse(&head);
        let (reply, _slot) = self.route(&req, peer);
        let wire = if req.method == "HEAD" {
            reply.head()
        } else {
            reply.bytes()
        };
        if s.write_all(&wire).await.is_ok() {
            let _ = s.shutdown().await;
        }
    }

    /// The reply to `req`, and the slot it holds while it is written.
    fn route(
        &self,
        req: &Request,
        peer: SocketAddr,
    ) -> (Reply, Option<tokio::sync::SemaphorePermit<'_>>) {
        let telemetry = &self.telemetry;
        if !matches!(req.method, "GET" | "HEAD") {
            return (Reply::method_not_allowed(), None);
        }
        let page = match req.path {
            "/healthz" => {
                return (Reply::new("200 OK", "text/plain", "ok\n".into()), None);
            }
            "/metrics" => Page::Metrics,
            "/status" => Page::Status,
            "/status.json" => Page::StatusJson,
            _ => {
                let r = Reply::new("404 Not Found", "text/plain", "not found\n".into());
                return (r, None);
            }
        };
        if page != Page::Metrics && !self.authorized(req) {
            self.denials.note(peer, "status without its bearer token");
            return (Reply::unauthorized(req.authorization), None);
        }
        let Ok(slot) = self.slots.try_acquire() else {
            self.denials.note(peer, "every render slot busy");
            return (Reply::busy(), None);
        };
        let reply = match page {
            Page::Metrics => Reply::new(
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                telemetry.encode(),
            ),
            Page::Status => {
                Reply::new("200 OK", "text/plain; charset=utf-8", telemetry.live.text())
            }
            Page::StatusJson => Reply::new("200 OK", "application/json", telemetry.live.json()),
        };
        (reply, Some(slot))
    }

    /// Whether `req` may see `/status`: always when no token is set.
    fn authorized(&self, req: &Request) -> bool {
        let token = self.token.read().unwrap_or_else(|p| p.into_inner());
        match (&*token, req.bearer) {
            (None, _) => true,
            (Some(t), Some(b)) => t.matches(b.as_bytes()),
            (Some(_), None) => false,
        }
    }

    /// Applies reloaded rules: the endpoint moves to a changed
    /// `metrics.listen` (see [`Endpoint::move_to`]) and the `/status`
    /// token is re-read with them.
    pub(crate) fn reload(self: &Arc<Self>, settings: Option<&MetricsSettings>) {
        let Some(m) = settings else {
            warn!(addr = %self.addr(), "the rules no longer have a metrics section; the endpoint and its /status token stay until a restart");
            return;
        };
        self.move_to(m.listen);
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = m.status_token.clone();
        self.warn_exposure();
    }

    /// Moves the endpoint to `listen` if the rules changed it: binds the
    /// new address, then lets the old one go, so that a scrape always
    /// finds one of them. If the new address cannot be bound the endpoint
    /// stays where it is, and the telemetry logs and counts why.
    /// Exchanges under way on the old address finish.
    fn move_to(self: &Arc<Self>, listen: SocketAddr) {
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        if bound.listen == listen {
            return;
        }
        let bound_now = {
            let _rt = self.rt.enter();
            bind(listen).and_then(|l| Ok((l.local_addr()?, l)))
        };
        match bound_now {
            Ok((addr, listener)) => {
                let accepting = Some(self.rt.spawn(accept_loop(self.clone(), listener)));
                let old = std::mem::replace(
                    &mut *bound,
                    Bound {
                        listen,
                        addr,
                        accepting,
                    },
                );
                if let Some(task) = old.accepting {
                    task.abort();
                }
                info!(from = %old.addr, to = %addr, "metrics endpoint moved");
            }
            Err(e) => {
                let why = if overlaps(bound.addr, listen) {
                    format!("{e} (the endpoint holds that port on an overlapping address itself: such a move needs a restart)")
                } else {
                    e.to_string()
                };
                self.telemetry
                    .metrics_listen_failed(bound.addr, listen, &why);
            }
        }
    }

    /// Says, when the endpoint can be reached from other hosts, what
    /// `/status` shows them and whether a token guards it.
    fn warn_exposure(&self) {
        let addr = self.addr();
        if addr.ip().to_canonical().is_loopback() {
            return;
        }
        let guarded = self.token.read().map(|t| t.is_some()).unwrap_or(false);
        if guarded {
            warn!(addr = %addr, status = "bearer token",
                "metrics endpoint reachable beyond loopback: /status shows user names, client addresses and file names to holders of the token; /metrics and /healthz are open");
        } else {
            warn!(addr = %addr, status = "open",
                "metrics endpoint reachable beyond loopback: /status shows user names, client addresses and file names to anyone who reaches it; set metrics.status_token_file or listen on 127.0.0.1");
        }
    }
}

/// Whether a socket bound to `held` keeps one for `wanted` from binding:
/// the same port, and one of them the wildcard of its family (or `::`,
/// which may take IPv4 too).
fn overlaps(held: SocketAddr, wanted: SocketAddr) -> bool {
    let wild = |a: SocketAddr, other: SocketAddr| {
        a.ip().is_unspecified() && (a.is_ipv4() == other.is_ipv4() || a.is_ipv6())
    };
    held.port() == wanted.port() && (wild(held, wanted) || wild(wanted, held))
}

/// The answers that cost a render slot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    Metrics,
    Status,
    StatusJson,
}

/// Refusals: each logged at debug, and summed up at warn at most every
/// [`DENIAL_LOG_EVERY`], so a flood of connections cannot flood the log.
#[derive(Default)]
struct Denials(Mutex<DenialLog>);

#[derive(Default)]
struct DenialLog {
    last: Option<Instant>,
    since: BTreeMap<&'static str, u64>,
}

impl Denials {
    fn note(&self, peer: SocketAddr, reason: &'static str) {
        debug!(peer = %peer, reason, "metrics endpoint: refused");
        let mut d = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *d.since.entry(reason).or_default() += 1;
        if d.last.is_some_and(|t| t.elapsed() < DENIAL_LOG_EVERY) {
            return;
        }
        let counts = std::mem::take(&mut d.since)
            .into_iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        d.last = Some(Instant::now());
        warn!(last_peer = %peer, refused = %counts, "metrics endpoint: connections refused or closed");
    }
}

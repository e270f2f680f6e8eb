//! The gateway over tokio: listeners, sessions, data relays, reload and
//! shutdown. All protocol decisions are the sans-IO engine's; this layer
//! only moves bytes and reports what happened.

mod control;
pub mod pinhole;
pub mod relay;
mod splice;
mod transparent;

use crate::rules::{self, Rules};
use dashmap::DashMap;
use pinhole::{bind_listener, Pinholes, UserspacePinholes};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// Why the gateway could not run.
#[derive(Debug, Error)]
pub enum ProxyError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({name}): {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Signal handling could not be set up.
    #[error("signal setup failed: {0}")]
    Signal(io::Error),
}

/// Counters exported for monitoring.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sessions accepted.
    pub sessions: AtomicU64,
    /// Sessions refused by limits.
    pub refused: AtomicU64,
    /// Requests denied (bounce, rules, ...).
    pub denied: AtomicU64,
    /// Completed transfers.
    pub transfers: AtomicU64,
    /// Connections to pinholes from unexpected peers.
    pub strangers: AtomicU64,
    /// Successful reloads.
    pub reloads: AtomicU64,
    /// Data channels holding sockets now (pinholes, connections, relays).
    pub data_channels: AtomicU64,
}

/// State shared by every session.
pub struct Gateway {
    rules: RwLock<Arc<Rules>>,
    active: AtomicU32,
    per_client: DashMap<IpAddr, u32>,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// Set when the shutdown grace has ended: relays still running are reset.
    hard_stop: watch::Sender<bool>,
    pinholes: Box<dyn Pinholes>,
    /// Servers whose passive ports did not answer, and when that was seen.
    passive_dead: DashMap<IpAddr, std::time::Instant>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// Held by a session for as long as it lives; counts it against limits.
pub(crate) struct SessionGuard {
    gw: Arc<Gateway>,
    client: IpAddr,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.gw.active.fetch_sub(1, Ordering::AcqRel);
        if let dashmap::Entry::Occupied(mut e) = self.gw.per_client.entry(self.client) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

impl Gateway {
    fn new(rules: Rules) -> Arc<Gateway> {
        let (shutdown, _) = watch::channel(false);
        let (hard_stop, _) = watch::channel(false);
        Arc::new(Gateway {
            rules: RwLock::new(Arc::new(rules)),
            active: AtomicU32::new(0),
            per_client: DashMap::new(),
            next_id: AtomicU64::new(1),
            shutdown,
            hard_stop,
            pinholes: Box::new(UserspacePinholes),
            passive_dead: DashMap::new(),
            metrics: Arc::new(Metrics::default()),
        })
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Sessions alive now.
    pub fn active_sessions(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    fn hard_stop_signal(&self) -> watch::Receiver<bool> {
        self.hard_stop.subscribe()
    }

    /// Replaces the rules for new sessions and new transfers. Listener
    /// addresses are bound at start; changes to them need a restart.
    pub fn replace_rules(&self, new: Rules) {
        let old = self.rules();
        let listeners_changed = old.listeners.len() != new.listeners.len()
            || old
                .listeners
                .iter()
                .zip(&new.listeners)
                .any(|(a, b)| a.name != b.name || a.listen != b.listen);
        if listeners_changed {
            warn!("listener addresses changed in the rules; they take effect at the next restart");
        }
        match self.rules.write() {
            Ok(mut w) => *w = Arc::new(new),
            Err(p) => *p.into_inner() = Arc::new(new),
        }
        self.metrics.reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// How long a server stays known as passive-dead: long enough that each
    /// session does not pay the probe again, short enough that a fixed
    /// firewall is noticed.
    const PASSIVE_DEAD_TTL: Duration = Duration::from_secs(600);

    /// Remembers that `server`'s passive ports do not answer.
    pub(crate) fn mark_passive_dead(&self, server: IpAddr) {
        self.passive_dead.insert(server, std::time::Instant::now());
    }

    /// Whether `server`'s passive ports were seen dead recently.
    pub(crate) fn passive_known_dead(&self, server: IpAddr) -> bool {
        match self.passive_dead.get(&server).map(|t| t.elapsed()) {
            Some(age) if age < Self::PASSIVE_DEAD_TTL => true,
            Some(_) => {
                self.passive_dead.remove(&server);
                false
            }
            None => false,
        }
    }

    /// Counts a new session against the limits, or refuses it.
    fn admit(self: &Arc<Self>, client: IpAddr) -> Result<SessionGuard, &'static str> {
        let limits = self.rules().limits.clone();
        if self.active.fetch_add(1, Ordering::AcqRel) >= limits.sessions {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return Err("too many sessions");
        }
        let mut entry = self.per_client.entry(client).or_insert(0);
        if *entry >= limits.sessions_per_client {
            drop(entry);
            self.active.fetch_sub(1, Ordering::AcqRel);
            return Err("too many sessions from this address");
        }
        *entry += 1;
        Ok(SessionGuard {
            gw: self.clone(),
            client,
        })
    }
}

/// A running gateway: its listeners' addresses and the means to reload and
/// stop it.
pub struct Handle {
    gw: Arc<Gateway>,
    /// Bound listener addresses, in rules order.
    pub addrs: Vec<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Handle {
    /// The shared state.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }

    /// Applies new rules to new sessions and transfers.
    pub fn reload(&self, rules: Rules) {
        self.gw.replace_rules(rules);
    }

    /// Stops accepting, lets sessions finish their transfers for up to
    /// `grace`, then returns.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.gw.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.gw.active_sessions() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = self.gw.active_sessions();
        if left > 0 {
            warn!(
                sessions = left,
                "shutdown deadline reached; closing the sessions left"
            );
        }
        // Transfers still running are cut with a reset, never a FIN, so no
        // peer takes a truncated file for a complete one.
        let _ = self.gw.hard_stop.send(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while self.gw.active_sessions() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Binds every listener and starts serving.
pub async fn start(rules: Rules) -> Result<Handle, ProxyError> {
    let gw = Gateway::new(rules);
    let rules = gw.rules();
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for (index, l) in rules.listeners.iter().enumerate() {
        let transparent = l.tproxy;
        let listener =
            bind_listener(l.listen, transparent, 1024).map_err(|source| ProxyError::Bind {
                name: l.name.clone(),
                addr: l.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ProxyError::Bind {
            name: l.name.clone(),
            addr: l.listen,
            source,
        })?;
        info!(listener = %l.name, %addr, kind = ?l.kind, "listening");
        addrs.push(addr);
        tasks.push(tokio::spawn(accept_loop(gw.clone(), index, listener)));
    }
    Ok(Handle { gw, addrs, tasks })
}

async fn accept_loop(gw: Arc<Gateway>, index: usize, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep going.
                error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let client = peer.ip().to_canonical();
        match gw.admit(client) {
            Ok(guard) => {
                gw.metrics.sessions.fetch_add(1, Ordering::Relaxed);
                let id = gw.next_id.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(control::serve(gw.clone(), index, stream, peer, id, guard));
            }
            Err(reason) => {
                gw.metrics.refused.fetch_add(1, Ordering::Relaxed);
                warn!(client = %peer, reason, "denied: session refused");
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut stream = stream;
                    let msg = format!("421 {}; try again later.\r\n", capitalise(reason));
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        stream.write_all(msg.as_bytes()),
                    )
                    .await;
                });
            }
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Raises the soft limit on open files to the hard limit: each session
/// holds two sockets, and each transfer up to four more.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a pointer to a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

/// Runs until SIGTERM or SIGINT; SIGHUP reloads `path`.
pub async fn run(path: PathBuf, rules: Rules) -> Result<(), ProxyError> {
    use tokio::signal::unix::{signal, SignalKind};
    let files = raise_fd_limit();
    let wanted = u64::from(rules.limits.sessions) * 2 + 64;
    if files < wanted {
        warn!(
            open_files = files,
            sessions = rules.limits.sessions,
            "the open-file limit is below what the session limit needs; raise LimitNOFILE"
        );
    }
    let grace = rules.data.pinhole_timeout.max(Duration::from_secs(30));
    let handle = start(rules).await?;
    let mut hup = signal(SignalKind::hangup()).map_err(ProxyError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(ProxyError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ProxyError::Signal)?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let _ = reload_file(&handle, &path);
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!(
        sessions = handle.gateway().active_sessions(),
        "stopping: no new sessions; running transfers may finish"
    );
    handle.shutdown(grace).await;
    Ok(())
}

/// Re-reads the rules file (what SIGHUP does). A valid file applies to new
/// sessions and new transfers at once; an invalid one is refused and the
/// old rules stay in force.
pub fn reload_file(handle: &Handle, path: &Path) -> Result<(), rules::RulesError> {
    match rules::load(path) {
        Ok((r, warnings)) => {
            for w in warnings {
                warn!(file = %path.display(), "{w}");
            }
            handle.reload(r);
            info!(file = %path.display(), "rules reloaded; they apply to new sessions and new transfers");
            Ok(())
        }
        Err(e) => {
            error!("reload refused, the old rules stay in force: {e}");
            Err(e)
        }
    }
}

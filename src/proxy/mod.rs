//! The gateway over tokio: listeners, sessions, data relays, reload and
//! shutdown. All protocol decisions are the sans-IO engine's; this layer
//! only moves bytes and reports what happened.

mod admission;
mod control;
mod current_rules;
mod datapath;
mod error;
pub mod events;
mod host;
mod http;
mod keepalive;
mod listeners;
pub mod plain;
mod privileged;
mod reload;
mod shutdown;
mod sockets;
pub mod status;
mod tproxy;
mod transparent;

use crate::dataplane::kernel::KernelError;
use crate::rules::{self, Rules};
use admission::Admission;
use control::{PassiveMemo, SessionGateway};
use current_rules::CurrentRules;
use datapath::kernel::KernelThread;
pub use error::ProxyError;
use events::Telemetry;
use host::{extend_stop_timeout, notify, raise_fd_limit};
use listeners::{ListenerSet, Listening};
pub use plain::{plain_io_error, UpstreamFailure};
pub use privileged::Privileged;
use reload::Reload;
use shutdown::Shutdown;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// A running gateway, as its rooms make it up: the rules in force,
/// admission, the listeners, the reload, the stop signals, the kernel
/// thread and the telemetry. Each room holds only its own handles;
/// this is where they meet.
pub struct Gateway {
    rules: Arc<CurrentRules>,
    admission: Arc<Admission>,
    listening: Arc<Listening>,
    reload: Reload,
    shutdown: Shutdown,
    /// ftpalg's nftables table and the thread that manages it, when the
    /// rules chose the kernel data path and it could start.
    kernel: Option<Arc<KernelThread>>,
    /// The Prometheus metrics, fed by the same reports that write the logs:
    /// the one store of the gateway's counts, so that no two can drift.
    telemetry: Arc<Telemetry>,
}

impl Gateway {
    /// The rules in force now.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules.get()
    }

    /// The gateway's metrics and its live sessions, as `/metrics` and
    /// `/status` show them.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Sessions alive now.
    pub fn active_sessions(&self) -> u32 {
        self.admission.active()
    }

    /// Where the metrics endpoint is bound now (a reload may have moved or
    /// started it), if the rules asked for one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.reload.metrics_addr()
    }

    /// Where the listener named `name` is bound now.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listening.listeners().addr(name)
    }

    /// Replaces the rules for new sessions and new transfers, and brings
    /// the listeners in line with them by name (see `reconcile_listeners`).
    /// Running sessions of a removed listener finish on the rules they
    /// started with. Counted as a reload from `-` (no file).
    pub fn replace_rules(&self, new: Rules) {
        self.reload.apply(new, "-");
    }
}

/// A running gateway: its listeners' addresses and the means to reload and
/// stop it.
pub struct Handle {
    gw: Arc<Gateway>,
    /// Listener addresses as bound at start, in rules order (after a
    /// reload, ask [`Gateway::listener_addr`] by name).
    pub addrs: Vec<SocketAddr>,
    /// Where the metrics endpoint was bound at start, if the rules asked
    /// for one (after a reload, ask [`Gateway::metrics_addr`]).
    pub metrics_addr: Option<SocketAddr>,
}

impl Handle {
    /// The shared state.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }

    /// Applies new rules to new sessions and transfers, and binds, moves or
    /// closes listeners to match them.
    pub fn reload(&self, rules: Rules) {
        self.gw.replace_rules(rules);
    }

    /// Stops as `ftpalg run` does on SIGTERM: [`Handle::shutdown`] with
    /// the grace of the rules in force (`limits.shutdown_grace`).
    pub async fn stop(self) {
        let grace = self.gw.rules().limits.shutdown_grace;
        self.shutdown(grace).await
    }

    /// Stops accepting, lets sessions finish their transfers for up to
    /// `grace`, then returns: at once when no session is left.
    pub async fn shutdown(self, grace: Duration) {
        self.gw.shutdown.stop();
        self.gw.listening.listeners().stop_all();
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
        self.gw.shutdown.hard_stop();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while self.gw.active_sessions() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Nothing of ftpalg stays in the kernel: the table goes, with any
        // pinhole a session did not withdraw.
        if let Some(k) = self.gw.kernel.clone() {
            let _ = tokio::task::spawn_blocking(move || k.close()).await;
        }
    }
}

/// Binds every listener and starts serving; the kernel thread, if the
/// rules ask for it, starts from a blocking thread of the runtime, and
/// transparent sockets are made by the threads that ask for them, with
/// their capabilities (see [`start_with`] for what `ftpalg run` does).
pub async fn start(rules: Rules) -> Result<Handle, ProxyError> {
    let (path, config) = (rules.data.path, rules.data.kernel.config());
    let kernel = tokio::task::spawn_blocking(move || privileged::start_kernel(path, config))
        .await
        .unwrap_or_else(|e| {
            privileged::kernel_or_relay(
                path,
                Err(KernelError::Io(io::Error::other(format!(
                    "kernel data plane thread: {e}"
                )))),
            )
        })?;
    start_gateway(rules, kernel).await
}

/// Binds every listener and starts serving, with the threads that keep
/// CAP_NET_ADMIN started before the runtime (see [`Privileged`]).
pub async fn start_with(rules: Rules, privileged: Privileged) -> Result<Handle, ProxyError> {
    start_gateway(rules, privileged.kernel).await
}

async fn start_gateway(
    rules: Rules,
    kernel: Option<Arc<KernelThread>>,
) -> Result<Handle, ProxyError> {
    let rules = Arc::new(CurrentRules::new(rules));
    let telemetry = Arc::new(Telemetry::new());
    let shutdown = Shutdown::new();
    let listeners = Arc::new(ListenerSet::default());
    let sessions = Arc::new(SessionGateway {
        rules: rules.clone(),
        telemetry: telemetry.clone(),
        shutdown: shutdown.watch(),
        passive: PassiveMemo::default(),
        kernel: kernel.clone(),
        listeners: listeners.clone(),
    });
    let admission = Arc::new(Admission::new(telemetry.clone()));
    let listening = Arc::new(Listening::new(
        listeners,
        tokio::runtime::Handle::current(),
        rules.clone(),
        admission.clone(),
        sessions,
        telemetry.clone(),
    ));
    let addrs = listening.bind_all()?;
    // A reload moves it, or starts it if the rules gain a metrics section.
    let endpoint =
        match &rules.get().metrics {
            Some(m) => Some(http::serve(telemetry.clone(), shutdown.watch(), m).map_err(
                |source| ProxyError::Bind {
                    name: "metrics".into(),
                    addr: m.listen,
                    source,
                },
            )?),
            None => None,
        };
    let metrics_addr = endpoint.as_ref().map(|e| e.addr());
    let reload = Reload::new(
        rules.clone(),
        listening.clone(),
        endpoint,
        shutdown.watch(),
        telemetry.clone(),
        kernel.as_ref().map(|_| rules.get().data.kernel.clone()),
    );
    let gw = Arc::new(Gateway {
        rules,
        admission,
        listening,
        reload,
        shutdown,
        kernel,
        telemetry,
    });
    Ok(Handle {
        gw,
        addrs,
        metrics_addr,
    })
}

/// Runs until SIGTERM or SIGINT; SIGHUP reloads `path`. `privileged` are
/// the threads started before the runtime.
pub async fn run(path: PathBuf, rules: Rules, privileged: Privileged) -> Result<(), ProxyError> {
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
    let handle = start_with(rules, privileged).await?;
    let mut hup = signal(SignalKind::hangup()).map_err(ProxyError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(ProxyError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ProxyError::Signal)?;
    // systemd's Type=notify: ready once every listener is bound. Without
    // NOTIFY_SOCKET (not under systemd) these do nothing.
    notify(&[sd_notify::NotifyState::Ready]);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                notify(&[
                    sd_notify::NotifyState::Reloading,
                    sd_notify::NotifyState::monotonic_usec_now().unwrap_or(sd_notify::NotifyState::Status("reloading")),
                ]);
                let _ = reload_file(&handle, &path);
                notify(&[sd_notify::NotifyState::Ready]);
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    // The grace of the rules in force: a reload may have changed it.
    let grace = handle.gateway().rules().limits.shutdown_grace;
    info!(
        sessions = handle.gateway().active_sessions(),
        grace_secs = grace.as_secs(),
        "stopping: no new sessions; running transfers may finish within the grace"
    );
    // The first extension goes out before the drain starts.
    tokio::select! {
        biased;
        () = extend_stop_timeout() => {}
        () = handle.shutdown(grace) => {}
    }
    Ok(())
}

/// Re-reads the rules file (what SIGHUP does). A valid file applies to new
/// sessions and new transfers at once; an invalid one is refused and the
/// old rules stay in force.
pub fn reload_file(handle: &Handle, path: &Path) -> Result<(), rules::RulesError> {
    handle.gw.reload.reread(path)
}

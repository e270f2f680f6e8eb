//! The one place where what the gateway does becomes a log line and a
//! metric at once: the driver reports sessions, transfers, denials and
//! reloads here, and each report both logs and counts, so that nothing can
//! reach one and miss the other.

mod known;
mod process;
mod transfer;

pub use transfer::{TransferEnd, TransferReport};

use super::admission::slot::Dismissal;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tracing::{info, warn};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransferLabels {
    result: String,
    client_mode: String,
    server_mode: String,
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SideLabels {
    side: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// The gateway's metrics, in a Prometheus registry.
pub struct Telemetry {
    registry: Registry,
    sessions: Counter,
    sessions_active: Gauge,
    evicted: Counter,
    login_timeouts: Counter,
    transfers: Family<TransferLabels, Counter>,
    bytes: Family<DirectionLabels, Counter>,
    denials: Family<ReasonLabels, Counter>,
    pinholes_open: Gauge,
    pinholes_expired: Counter,
    strangers: Family<SideLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    upstream_failures: Family<ReasonLabels, Counter>,
    metrics_moves_failed: Counter,
    setup: Histogram,
    /// Sessions and transfers alive now, for `/status`.
    pub live: super::status::Live,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Telemetry")
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// A registry with every metric at zero, and every series of a label
    /// known in advance too.
    pub fn new() -> Telemetry {
        let mut registry = Registry::default();
        let t = Telemetry {
            registry: Registry::default(),
            sessions: Counter::default(),
            sessions_active: Gauge::default(),
            evicted: Counter::default(),
            login_timeouts: Counter::default(),
            transfers: Family::default(),
            bytes: Family::default(),
            denials: Family::default(),
            pinholes_open: Gauge::default(),
            pinholes_expired: Counter::default(),
            strangers: Family::default(),
            reloads: Family::default(),
            upstream_failures: Family::default(),
            metrics_moves_failed: Counter::default(),
            // 1 ms to about 16 s.
            setup: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            live: Default::default(),
        };
        registry.register("ftpalg_sessions", "Sessions accepted", t.sessions.clone());
        registry.register(
            "ftpalg_sessions_active",
            "Sessions alive now",
            t.sessions_active.clone(),
        );
        registry.register(
            "ftpalg_sessions_evicted",
            "Sessions that had not logged in, closed to make room for a newcomer at a session limit",
            t.evicted.clone(),
        );
        registry.register(
            "ftpalg_login_timeouts",
            "Sessions closed for not logging in within limits.login_timeout",
            t.login_timeouts.clone(),
        );
        registry.register(
            "ftpalg_transfers",
            "Transfers ended, by result (ok: completed; refused: by the server's reply; denied: by the rules; aborted: by the client; failed: the gateway could not carry it), the client's data command (PASV, EPSV, LPSV, PORT, EPRT, LPRT), the mode towards the server (passive, active) and the data path (relay: the bytes crossed ftpalg; kernel: forwarded by its nftables pinholes)",
            t.transfers.clone(),
        );
        registry.register(
            "ftpalg_transfer_bytes",
            "Bytes carried on data connections, relayed or forwarded by the kernel, by direction (up: client to server; down: server to client)",
            t.bytes.clone(),
        );
        registry.register(
            "ftpalg_denials",
            format!(
                "Requests and connections refused, by reason ({}; rule:NAME for a denial by the rule NAME)",
                known::denial_reasons().join(", ")
            ),
            t.denials.clone(),
        );
        registry.register(
            "ftpalg_pinholes_open",
            "Data channels holding sockets now (pinholes waiting, connections, relays)",
            t.pinholes_open.clone(),
        );
        registry.register(
            "ftpalg_pinholes_expired",
            "Pinholes closed because their connection did not come in time",
            t.pinholes_expired.clone(),
        );
        registry.register(
            "ftpalg_pinhole_strangers",
            "Connections to relay pinholes from a peer other than the expected one, reset; by side (client, server)",
            t.strangers.clone(),
        );
        registry.register(
            "ftpalg_reloads",
            "Rules reloads, by result (ok: the new rules are in force; refused: they were invalid and the old ones stay)",
            t.reloads.clone(),
        );
        registry.register(
            "ftpalg_upstream_failures",
            "Servers a session could not reach, answered 421, by reason (resolve: the name did not resolve; refused: the connection was refused; timeout: no answer within limits.connect_timeout; unreachable: no route, or another error)",
            t.upstream_failures.clone(),
        );
        registry.register(
            "ftpalg_metrics_listen_failures",
            "Reloads that moved metrics.listen to an address that could not be bound; the endpoint stayed where it was",
            t.metrics_moves_failed.clone(),
        );
        registry.register(
            "ftpalg_transfer_setup_seconds",
            "From a data channel's preparation to the start of its relay",
            t.setup.clone(),
        );
        registry.register(
            "ftpalg_build",
            "The running build",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            }),
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        known::preset(&t);
        Telemetry { registry, ..t }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A session was accepted.
    pub fn session_start(&self, session: u64, client: SocketAddr, listener: &str) {
        self.sessions.inc();
        self.sessions_active.inc();
        self.live.start(session, client, listener);
        info!(session, client = %client, listener, "session start");
    }

    /// A session ended, for `reason` (`client quit`, `idle timeout`, ...;
    /// see `docs/logs.md`); `server` is the server it was for when the
    /// driver knows it better than the login did.
    pub fn session_end(
        &self,
        session: u64,
        client: SocketAddr,
        user: Option<&str>,
        server: Option<&str>,
        secs: f64,
        reason: &str,
    ) {
        self.sessions_active.dec();
        let ended = self.live.end(session);
        let server = server
            .map(String::from)
            .or(ended.server)
            .unwrap_or_else(|| "-".into());
        let t = ended.totals;
        info!(
            session,
            client = %client,
            server,
            user = user.unwrap_or("-"),
            secs,
            reason,
            transfers = t.transfers,
            bytes_up = t.bytes_up,
            bytes_down = t.bytes_down,
            "session end"
        );
    }

    /// The server session `session` is for, once connected (before the
    /// login tells it).
    pub fn server_connected(&self, session: u64, server: SocketAddr) {
        self.live.server(session, server.to_string());
    }

    /// The server a session was to reach could not be reached: the client
    /// was answered `421`.
    pub fn upstream_failed(
        &self,
        session: u64,
        client: SocketAddr,
        server: &str,
        why: super::plain::UpstreamFailure,
        detail: &str,
    ) {
        self.upstream_failures
            .get_or_create(&ReasonLabels {
                reason: why.as_str().to_string(),
            })
            .inc();
        warn!(session, client = %client, server, reason = why.as_str(), detail, "cannot reach the server");
    }

    /// A session that had not logged in was closed to make room for
    /// `newcomer` at `limit`.
    pub fn evicted(
        &self,
        session: u64,
        client: IpAddr,
        silent: Duration,
        newcomer: u64,
        limit: &str,
    ) {
        self.evicted.inc();
        warn!(
            session,
            client = %client,
            silent_ms = silent.as_millis() as u64,
            newcomer,
            limit,
            reason = Dismissal::Evicted.reason(),
            "closing"
        );
    }

    /// A session did not log in within `limits.login_timeout`; `server` is
    /// the server it was still being connected to, if so.
    pub fn login_timeout(&self, session: u64, client: SocketAddr, server: Option<SocketAddr>) {
        self.login_timeouts.inc();
        let reason = Dismissal::LoginTimeout.reason();
        match server {
            Some(server) => {
                warn!(session, client = %client, server = %server, reason, "closing while connecting to the server")
            }
            None => warn!(session, client = %client, reason, "closing"),
        }
    }

    /// The server accepted the session's login.
    pub fn logged_in(&self, session: u64, client: SocketAddr, user: &str, server: Option<String>) {
        self.live.logged_in(session, user, server);
        info!(session, client = %client, user, "logged in");
    }

    /// A transfer's relay started. Its `/status` entry lasts as long as
    /// the returned guard, which the data channel keeps; the bytes it moves
    /// are counted into the guard's [`progress`].
    ///
    /// [`progress`]: super::status::TransferEntry::progress
    pub fn transfer_started(
        &self,
        session: u64,
        channel: u64,
        command: &str,
        file: &str,
        client_mode: &str,
        server_mode: &str,
    ) -> super::status::TransferEntry {
        let entry =
            self.live
                .transfer_start(session, channel, command, file, client_mode, server_mode);
        tracing::debug!(
            session,
            channel,
            command,
            client_mode,
            server_mode,
            "transfer started"
        );
        entry
    }

    /// A transfer command was bound to a data channel.
    pub fn transfer_named(&self, session: u64, channel: u64, command: &str, file: &str) {
        self.live.transfer_named(session, channel, command, file);
        tracing::debug!(session, channel, command, file, "transfer command");
    }

    /// A request or connection was refused; `reason` is the class of the
    /// refusal (the metric's label), `detail` says more in the log, `file`
    /// is the argument of a refused file command. The rules did what they
    /// were written for: INFO, but for a connection refused at a limit,
    /// which the gateway could not serve (WARN).
    pub fn denied(
        &self,
        session: Option<u64>,
        client: SocketAddr,
        user: &str,
        reason: &str,
        detail: &str,
        file: Option<&str>,
    ) {
        self.denials
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
        match (session, file) {
            (Some(session), Some(file)) => {
                info!(session, client = %client, user, reason, detail, file, "denied")
            }
            (Some(session), None) => {
                info!(session, client = %client, user, reason, detail, "denied")
            }
            (None, _) => warn!(client = %client, reason, detail, "denied: session refused"),
        }
    }

    /// A data channel started holding sockets.
    pub fn pinhole_opened(&self) {
        self.pinholes_open.inc();
    }

    /// A data channel let its sockets go.
    pub fn pinhole_closed(&self) {
        self.pinholes_open.dec();
    }

    /// A pinhole's connection did not come in time.
    pub fn pinhole_expired(&self, session: u64, side: &str, timeout: Duration) {
        self.pinholes_expired.inc();
        info!(
            session,
            side,
            timeout_secs = timeout.as_secs_f64(),
            reason = "pinhole expired",
            "data connection did not come"
        );
    }

    /// A relay pinhole's `side` (`client`, `server`) was reached by `peer`,
    /// not the expected peer; it was reset.
    pub fn stranger(&self, session: u64, side: &str, peer: SocketAddr) {
        self.strangers
            .get_or_create(&SideLabels {
                side: side.to_string(),
            })
            .inc();
        warn!(session, side, stranger = %peer, reason = "unexpected peer", "denied: pinhole connection refused");
    }

    /// A reload moved `metrics.listen` from `from` to `wanted`, which could
    /// not be bound: the endpoint stays at `from`.
    pub fn metrics_listen_failed(&self, from: SocketAddr, wanted: SocketAddr, error: &str) {
        self.metrics_moves_failed.inc();
        warn!(addr = %from, wanted = %wanted, error, "metrics.listen changed, but the new address cannot be bound; the endpoint stays where it is");
    }

    /// A reload was applied (`ok`) or refused.
    pub fn reload(&self, ok: bool, file: &str, error: Option<&str>) {
        let result = if ok { "ok" } else { "refused" };
        self.reloads
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
        match error {
            None => info!(
                file,
                "rules reloaded; they apply to new sessions and new transfers"
            ),
            Some(e) => tracing::error!("reload refused, the old rules stay in force: {e}"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

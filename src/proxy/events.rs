//! The one place where what the gateway does becomes a log line and a
//! metric at once: the driver reports sessions, transfers, denials and
//! reloads here, and each report both logs and counts, so that nothing can
//! reach one and miss the other.

mod known;
mod process;

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

/// A finished transfer, as the driver saw it.
pub struct TransferReport<'a> {
    /// Session id.
    pub session: u64,
    /// The data channel's id within the session.
    pub channel: u64,
    /// The client's address.
    pub client: SocketAddr,
    /// The server, as text (empty if unknown).
    pub server: &'a str,
    /// The user.
    pub user: &'a str,
    /// `download`, `upload`, `listing` or `-`.
    pub direction: &'a str,
    /// The command.
    pub command: &'a str,
    /// Its argument.
    pub file: &'a str,
    /// The client's data command (`PASV`, `EPSV`, `PORT`, ...).
    pub client_mode: &'a str,
    /// The mode towards the server (`passive`, `active`).
    pub server_mode: &'a str,
    /// Which data path carried it: `relay` (through ftpalg) or `kernel`
    /// (forwarded by ftpalg's nftables pinholes).
    pub path: &'a str,
    /// From the data channel's preparation to its relay's start.
    pub setup: Option<Duration>,
    /// How long the relay ran.
    pub elapsed: Duration,
    /// Bytes moved (up, down), or why it failed.
    pub result: Result<(u64, u64), &'a str>,
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
            "Transfers ended, by result (ok, failed), the client's data command (PASV, EPSV, LPSV, PORT, EPRT, LPRT), the mode towards the server (passive, active) and the data path (relay: the bytes crossed ftpalg; kernel: forwarded by its nftables pinholes)",
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

    /// A session ended.
    pub fn session_end(
        &self,
        session: u64,
        client: SocketAddr,
        user: Option<&str>,
        secs: f64,
        error: Option<&str>,
    ) {
        self.sessions_active.dec();
        self.live.end(session);
        match error {
            None => {
                info!(session, client = %client, user = user.unwrap_or("-"), secs, "session end")
            }
            Some(e) => info!(session, client = %client, secs, error = e, "session end"),
        }
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
    /// refusal (the metric's label), `detail` says more in the log.
    pub fn denied(
        &self,
        session: Option<u64>,
        client: SocketAddr,
        user: &str,
        reason: &str,
        detail: &str,
    ) {
        self.denials
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
        match session {
            Some(session) => {
                warn!(session, client = %client, user, reason, detail, "denied")
            }
            None => warn!(client = %client, reason, detail, "denied: session refused"),
        }
    }

    /// A transfer ended. Its `/status` entry goes with its channel's
    /// [`TransferEntry`](super::status::TransferEntry), not with this report.
    pub fn transfer(&self, t: TransferReport<'_>) {
        let path = t.path;
        let labels = |result: &str| TransferLabels {
            result: result.to_string(),
            client_mode: t.client_mode.to_string(),
            server_mode: t.server_mode.to_string(),
            path: path.to_string(),
        };
        if let Some(s) = t.setup {
            self.setup.observe(s.as_secs_f64());
        }
        match t.result {
            Ok((up, down)) => {
                self.transfers.get_or_create(&labels("ok")).inc();
                self.add_bytes(up, down);
                info!(session = t.session, client = %t.client, server = t.server, user = t.user, direction = t.direction, command = t.command, file = t.file, client_mode = t.client_mode, server_mode = t.server_mode, bytes_up = up, bytes_down = down, secs = t.elapsed.as_secs_f64(), path, result = "ok", "transfer")
            }
            Err(e) => {
                self.transfers.get_or_create(&labels("failed")).inc();
                warn!(session = t.session, client = %t.client, server = t.server, user = t.user, direction = t.direction, command = t.command, file = t.file, client_mode = t.client_mode, server_mode = t.server_mode, secs = t.elapsed.as_secs_f64(), path, result = "failed", error = e, "transfer")
            }
        }
    }

    fn add_bytes(&self, up: u64, down: u64) {
        for (direction, n) in [("up", up), ("down", down)] {
            self.bytes
                .get_or_create(&DirectionLabels {
                    direction: direction.to_string(),
                })
                .inc_by(n);
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
        warn!(session, side, timeout = ?timeout, reason = "pinhole expired", "data connection did not come");
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
pub(crate) mod tests {
    use super::*;

    /// The value of the first sample whose line starts with `prefix`.
    pub(crate) fn value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn each_report_counts_once() {
        let t = Telemetry::new();
        let client: SocketAddr = "100.64.0.2:5000".parse().unwrap();
        t.session_start(1, client, "l");
        t.transfer(TransferReport {
            session: 1,
            channel: 1,
            client,
            server: "198.51.100.10:21",
            user: "u",
            direction: "download",
            command: "RETR",
            file: "f",
            client_mode: "PORT",
            server_mode: "passive",
            path: "relay",
            setup: Some(Duration::from_millis(3)),
            elapsed: Duration::from_millis(10),
            result: Ok((0, 1234)),
        });
        t.denied(Some(1), client, "u", "bounce", "PORT to another host");
        t.reload(false, "r.yaml", Some("bad"));
        t.evicted(
            2,
            client.ip(),
            Duration::from_secs(3),
            3,
            "too many sessions",
        );
        t.login_timeout(3, client, None);
        t.stranger(1, "client", "100.64.0.9:4000".parse().unwrap());
        let text = t.encode();
        assert_eq!(value(&text, "ftpalg_sessions_total "), Some(1.0), "{text}");
        assert_eq!(value(&text, "ftpalg_sessions_active "), Some(1.0), "{text}");
        assert_eq!(
            value(
                &text,
                "ftpalg_transfers_total{result=\"ok\",client_mode=\"PORT\",server_mode=\"passive\",path=\"relay\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(&text, "ftpalg_transfer_bytes_total{direction=\"down\"}"),
            Some(1234.0)
        );
        assert_eq!(
            value(&text, "ftpalg_denials_total{reason=\"bounce\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "ftpalg_reloads_total{result=\"refused\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "ftpalg_transfer_setup_seconds_count"),
            Some(1.0)
        );
        assert_eq!(value(&text, "ftpalg_sessions_evicted_total "), Some(1.0));
        assert_eq!(value(&text, "ftpalg_login_timeouts_total "), Some(1.0));
        assert_eq!(
            value(&text, "ftpalg_pinhole_strangers_total{side=\"client\"}"),
            Some(1.0)
        );
        assert!(text.contains("ftpalg_build_info{version=\""), "{text}");
        t.session_end(1, client, Some("u"), 0.5, None);
        assert_eq!(value(&t.encode(), "ftpalg_sessions_active "), Some(0.0));
    }
}

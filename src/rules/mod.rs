//! The operator's rules: a YAML file compiled into a validated policy.
//!
//! Loading never stops at the first problem: every error and warning is
//! collected with its line and column and a one-line hint, so `ftpalg check`
//! shows them all at once.

mod compile;
mod duration;
mod explain;
mod keys;
mod manual;
mod network;
mod policy;
mod ports;
mod schema;
mod structure;
mod token;
mod verbs;

pub use duration::{parse_duration, parse_rate};
pub use explain::explain;
pub use keys::paths as key_paths;
pub use manual::manual;
pub use network::{NetSet, BUILTIN};
pub use policy::RulesPolicy;
pub use ports::{parse_range, PortRange};
pub use schema::Kind;
pub use token::{StatusToken, TokenError};

use crate::dataplane::kernel::KernelConfig;
use crate::ftp::command::Verb;
use crate::ftp::session::{ServerDataMode, TlsPolicy};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file cannot be used.
    Error,
    /// The file works but probably not as meant.
    Warning,
}

/// One problem in a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// 1-based line (0 when unknown).
    pub line: u32,
    /// 1-based column (0 when unknown).
    pub column: u32,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}: {sev}: {}", self.line, self.column, self.message)?;
        if !self.hint.is_empty() {
            write!(f, "\n    hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// A rules file that could not be used.
#[derive(Debug, Error)]
pub enum RulesError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file has errors.
    #[error("{path}: {} error(s)\n{}", errors.len(), render(path, errors))]
    Invalid {
        /// The path.
        path: String,
        /// Every diagnostic, errors first.
        errors: Vec<Diagnostic>,
    },
}

/// Renders diagnostics as `file:line:col: severity: message` lines.
pub fn render(path: &str, diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| format!("{path}:{d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// Its name, used in logs and rules.
    pub name: String,
    /// Where it listens.
    pub listen: SocketAddr,
    /// How it picks the server.
    pub kind: Kind,
    /// The fixed server (explicit, reverse).
    pub upstream: Option<SocketAddr>,
    /// Which servers clients may reach (user-at-host, transparent); `None`
    /// means any.
    pub servers: Option<Vec<NetSet>>,
    /// Address advertised to clients, per client network, first match wins.
    pub advertise: Vec<(NetSet, IpAddr)>,
    /// Data mode towards the server.
    pub server_mode: ServerDataMode,
    /// Transparent listener uses TPROXY (IP_TRANSPARENT) instead of redirect.
    pub tproxy: bool,
}

impl Listener {
    /// The address to advertise to a client, if one is configured for it.
    pub fn advertise_for(&self, client: IpAddr) -> Option<IpAddr> {
        self.advertise
            .iter()
            .find(|(net, _)| net.contains(client))
            .map(|(_, a)| *a)
    }

    /// Whether a client of this listener may reach `server`.
    pub fn may_reach(&self, server: IpAddr) -> bool {
        self.servers
            .as_ref()
            .is_none_or(|sets| sets.iter().any(|s| s.contains(server)))
    }
}

/// Which data plane carries the transfers whose two sides use the same
/// direction (client and server both passive, or both active).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataPath {
    /// ftpalg relays every data byte in userspace.
    #[default]
    Relay,
    /// Pinholes in ftpalg's own nftables table; the kernel forwards the
    /// bytes. Mode conversions stay on the relay.
    Kernel,
    /// `kernel` when ftpalg may manage nftables (it can open its table at
    /// start), else `relay`.
    Auto,
}

impl DataPath {
    /// The name as written in the rules.
    pub fn as_str(self) -> &'static str {
        match self {
            DataPath::Relay => "relay",
            DataPath::Kernel => "kernel",
            DataPath::Auto => "auto",
        }
    }
}

/// The longest `data.pinhole_timeout` the rules accept: a pinhole is an
/// open door, and a data connection that has not come within minutes of
/// the reply that announced it is not coming.
pub const MAX_PINHOLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The longest `limits.shutdown_grace` the rules accept: a stop must end.
pub const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(24 * 3600);

/// The shutdown grace when the rules give none: the pinhole timeout, and
/// at least 30 s.
pub fn default_shutdown_grace(pinhole_timeout: Duration) -> Duration {
    pinhole_timeout.max(Duration::from_secs(30))
}

/// Data channel settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSettings {
    /// Default data mode towards servers.
    pub server_mode: ServerDataMode,
    /// Ports the gateway listens on for clients (passive towards clients).
    pub client_ports: PortRange,
    /// Ports the gateway listens on for servers (active towards servers).
    pub server_ports: PortRange,
    /// How long a pinhole waits for its one connection.
    pub pinhole_timeout: Duration,
    /// How long to wait for a server's passive port before falling back to
    /// active (server mode `auto`).
    pub passive_probe_timeout: Duration,
    /// Relay or kernel forwarding for same-direction transfers.
    pub path: DataPath,
    /// The kernel path's table, mark and log group.
    pub kernel: KernelSettings,
}

/// What the operator chooses of the kernel data path (`data.kernel`): the
/// rest of its [`KernelConfig`] is ftpalg's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSettings {
    /// ftpalg's table in the `inet` family, replaced at start.
    pub table: String,
    /// The conntrack mark, under `mark_mask`, of the connections the
    /// kernel path admits.
    pub mark: u32,
    /// The mark bits ftpalg owns.
    pub mark_mask: u32,
    /// The nflog group of the strangers turned away at a pinhole, if any.
    pub log_group: Option<u16>,
}

impl Default for KernelSettings {
    fn default() -> Self {
        let d = KernelConfig::default();
        KernelSettings {
            table: d.table,
            mark: d.mark,
            mark_mask: d.mark_mask,
            log_group: d.log_group,
        }
    }
}

impl KernelSettings {
    /// The kernel path's configuration with these settings.
    pub fn config(&self) -> KernelConfig {
        KernelConfig {
            table: self.table.clone(),
            mark: self.mark,
            mark_mask: self.mark_mask,
            log_group: self.log_group,
            ..KernelConfig::default()
        }
    }
}

/// Resource limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Concurrent sessions in total.
    pub sessions: u32,
    /// Concurrent sessions per client address.
    pub sessions_per_client: u32,
    /// Control idle time before the session is closed (not while a
    /// transfer runs).
    pub control_idle_timeout: Duration,
    /// A connection that has not logged in this long after it was
    /// accepted is closed, so silent connections do not hold session
    /// slots that other users behind the same address need.
    pub login_timeout: Duration,
    /// A data connection with no bytes either way for this long is closed.
    pub transfer_idle_timeout: Duration,
    /// Timeout for connecting to servers and active-mode clients.
    pub connect_timeout: Duration,
    /// Longest control line accepted.
    pub max_line: usize,
    /// Bytes per second per session, if capped.
    pub bandwidth_per_session: Option<u64>,
    /// TCP keepalive idle time on both control connections (`None`: off),
    /// so that a NAT or firewall on the way does not forget a control
    /// connection left idle by a long transfer.
    pub control_keepalive: Option<Duration>,
    /// How long a stop (SIGTERM, `systemctl stop` or `restart`, a package
    /// upgrade) waits for running transfers before it resets them. New
    /// sessions are refused from the start of the stop.
    pub shutdown_grace: Duration,
}

/// The unprivileged account the gateway runs as once its listeners are
/// bound (see [`crate::privilege`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunAs {
    /// User name or numeric uid.
    pub user: Option<String>,
    /// Group name or numeric gid; the user's primary group if not given.
    pub group: Option<String>,
}

/// Security switches, all on by default.
#[derive(Debug, Clone, PartialEq)]
pub struct Security {
    /// PORT/EPRT must name the client's own address.
    pub bounce_protection: bool,
    /// PORT/EPRT may not name a port below 1024.
    pub refuse_low_ports: bool,
    /// A pinhole accepts only the expected peer.
    pub check_data_peer: bool,
    /// Connect to the address in a 227 rather than the control address.
    pub trust_passive_address: bool,
    /// What to do with AUTH TLS.
    pub tls: TlsPolicy,
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Let it through.
    Allow,
    /// Refuse with the rule's reply.
    Deny,
}

/// Which commands a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSet {
    /// Verbs named directly.
    pub verbs: Vec<Verb>,
    /// Classes: `write`, `transfer`.
    pub classes: Vec<String>,
}

impl CommandSet {
    /// Whether the set holds `verb`.
    pub fn contains(&self, verb: Verb) -> bool {
        self.verbs.contains(&verb)
            || self.classes.iter().any(|c| match c.as_str() {
                "write" => verb.is_write(),
                "transfer" => verb.is_transfer(),
                _ => false,
            })
    }
}

/// Data mode a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataModeMatch {
    /// PORT, EPRT, LPRT.
    Active,
    /// PASV, EPSV, LPSV.
    Passive,
}

/// One access rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Name for logs (given, or `rule N`).
    pub name: String,
    /// Line in the file.
    pub line: u32,
    /// Client networks, any if `None`.
    pub client: Option<Vec<NetSet>>,
    /// Server networks, any if `None`.
    pub server: Option<Vec<NetSet>>,
    /// User name patterns (`*` wildcard), any if `None`.
    pub user: Option<Vec<String>>,
    /// Commands, any if `None`.
    pub command: Option<CommandSet>,
    /// Data mode, any if `None`.
    pub data_mode: Option<DataModeMatch>,
    /// Listener names, any if `None`.
    pub listener: Option<Vec<String>>,
    /// Allow or deny.
    pub action: RuleAction,
    /// Reply code for deny.
    pub reply_code: u16,
    /// Reply text for deny.
    pub reply_text: String,
}

/// A validated rules file.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Listeners.
    pub listeners: Vec<Listener>,
    /// Data settings.
    pub data: DataSettings,
    /// Limits.
    pub limits: Limits,
    /// Security switches.
    pub security: Security,
    /// Access rules, first match wins; no match allows.
    pub rules: Vec<Rule>,
    /// Who the gateway runs as when started as root.
    pub run_as: RunAs,
    /// The HTTP endpoint for `/metrics`, `/healthz` and `/status`, if any.
    pub metrics: Option<MetricsSettings>,
}

/// The metrics endpoint (`metrics:`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The file the `/status` token was read from, if one guards it.
    pub status_token_file: Option<PathBuf>,
    /// The token `/status` and `/status.json` ask for; `None` leaves them
    /// open to anyone who reaches the endpoint.
    pub status_token: Option<StatusToken>,
}

impl MetricsSettings {
    /// Whether hosts other than this one may reach the endpoint.
    pub fn beyond_loopback(&self) -> bool {
        !self.listen.ip().to_canonical().is_loopback()
    }
}

impl Rules {
    /// The listener named `name`: listeners are known by name, never by
    /// their place in the file, which a reload may change.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// The place of the listener named `name` in this file.
    pub fn listener_index(&self, name: &str) -> Option<usize> {
        self.listeners.iter().position(|l| l.name == name)
    }
}

/// The outcome of loading: rules when there were no errors, and every
/// diagnostic (warnings too).
#[derive(Debug)]
pub struct Loaded {
    /// The rules, if valid.
    pub rules: Option<Rules>,
    /// Errors first, then warnings, each in file order.
    pub diagnostics: Vec<Diagnostic>,
}

/// Compiles rules from YAML text.
pub fn from_str(text: &str) -> Loaded {
    compile::compile(text)
}

/// Reads and compiles a rules file; errors (not warnings) make it fail.
pub fn load(path: &Path) -> Result<(Rules, Vec<Diagnostic>), RulesError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
        path: p.clone(),
        source,
    })?;
    let loaded = from_str(&text);
    match loaded.rules {
        Some(r) => Ok((r, loaded.diagnostics)),
        None => Err(RulesError::Invalid {
            path: p,
            errors: loaded.diagnostics,
        }),
    }
}

#[cfg(test)]
mod tests;

//! What a session asks of the operator's policy, and the fixed settings it
//! starts with. The engine decides nothing about sockets; the driver fills
//! these in from the rules.

use super::action::ClientMode;
use super::timers::Timeouts;
use crate::addrs::ClientAddr;
use crate::ftp::command::Verb;
use std::net::{IpAddr, SocketAddr};

/// How the server is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// The driver connected to this server before the session started.
    Fixed(SocketAddr),
    /// The client names it with `USER name@host[:port]`.
    UserAtHost,
}

/// The data mode the gateway uses towards the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerDataMode {
    /// Whatever the client asked for.
    #[default]
    SameAsClient,
    /// Always PASV/EPSV.
    Passive,
    /// Always PORT/EPRT.
    Active,
    /// Passive; if the server's passive port does not answer, active for the
    /// rest of the session.
    Auto,
}

/// What to do with `AUTH TLS`/`AUTH SSL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsPolicy {
    /// Answer 534 so clients fall back to plain FTP (the gateway must read
    /// the control channel to work).
    #[default]
    Refuse,
    /// Forward it; after the server's 234 the control channel is copied
    /// blindly and data channels are not opened by the gateway.
    Passthrough,
}

/// A policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Refuse with this reply.
    Deny {
        /// FTP reply code sent to the client.
        code: u16,
        /// Reply text.
        text: String,
        /// Name of the rule that decided.
        rule: String,
    },
}

/// Everything a rule may look at for one command.
#[derive(Debug, Clone, Copy)]
pub struct CommandContext<'a> {
    /// The verb.
    pub verb: Verb,
    /// The user named so far.
    pub user: Option<&'a str>,
    /// The client's address.
    pub client: IpAddr,
    /// The server, once connected.
    pub server: Option<SocketAddr>,
    /// The data mode this command asks for, for PORT/PASV and relatives.
    pub data_mode: Option<ClientMode>,
}

/// The operator's policy as the engine consults it, command by command, so
/// that a reload applies to the next command.
pub trait Policy {
    /// May this command go ahead?
    fn check_command(&self, ctx: &CommandContext<'_>) -> Verdict;
    /// The data mode towards the server for a transfer.
    fn server_mode(&self, client: IpAddr, server: SocketAddr) -> ServerDataMode;
    /// What to do with AUTH.
    fn tls(&self) -> TlsPolicy;
}

/// A policy that allows everything with the safe defaults; for tests and
/// for the engine's own defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll {
    /// Data mode towards servers.
    pub server_mode: ServerDataMode,
    /// TLS handling.
    pub tls: TlsPolicy,
}

impl Policy for AllowAll {
    fn check_command(&self, _: &CommandContext<'_>) -> Verdict {
        Verdict::Allow
    }
    fn server_mode(&self, _: IpAddr, _: SocketAddr) -> ServerDataMode {
        self.server_mode
    }
    fn tls(&self) -> TlsPolicy {
        self.tls
    }
}

/// Which data plane carries transfers whose two sides use the same
/// direction; the driver resolves the rules' `data.path` into this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataPlane {
    /// ftpalg relays every data connection.
    #[default]
    Relay,
    /// Same-direction transfers are forwarded by the kernel
    /// ([`Endpoint::Forward`](super::Endpoint::Forward)); mode conversions
    /// are relayed.
    Kernel {
        /// Transparent mode: the client dials the server's own address,
        /// so its passive connection is admitted exactly as it is.
        exact: bool,
    },
}

/// Fixed settings of one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The client's address on the control connection.
    pub client: ClientAddr,
    /// How the server is chosen.
    pub upstream: Upstream,
    /// Address to advertise to the client in 227/228 instead of the local
    /// address of the data listener (reverse mode behind another NAT).
    pub client_advertise: Option<IpAddr>,
    /// Address to advertise to the server in PORT/EPRT instead of the local
    /// address of the data listener.
    pub server_advertise: Option<IpAddr>,
    /// Refuse PORT/EPRT/LPRT naming an address other than the client's.
    pub bounce_protection: bool,
    /// Refuse PORT/EPRT/LPRT naming a port below 1024.
    pub refuse_low_ports: bool,
    /// Connect to the address in the server's 227 rather than the control
    /// connection's address. Off by default: a hostile server could
    /// otherwise make the gateway connect anywhere.
    pub trust_passive_address: bool,
    /// How many client lines may wait while the gateway is busy.
    pub max_held_lines: usize,
    /// How many replies may be owed to the client at once (commands the
    /// server has not answered yet, and the gateway's own replies queued
    /// behind them); past it the session is closed with 421.
    pub max_pending: usize,
    /// Attempts at `USER name@host` before the session is closed.
    pub max_route_attempts: u32,
    /// The server's passive ports are already known not to answer (server
    /// mode `auto` goes straight to active).
    pub passive_known_dead: bool,
    /// How long the server may stay silent about a transfer whose data
    /// connection was cut (ABOR, or a client that closed it early) before
    /// the gateway answers `426` itself.
    pub cut_reply_timeout: std::time::Duration,
    /// The server's passive ports were seen answering recently: in server
    /// mode `auto` the kernel may forward passive transfers at once.
    pub passive_known_alive: bool,
    /// Relay or kernel forwarding for same-direction transfers.
    pub data_plane: DataPlane,
    /// The login and control idle timeouts, until the driver passes newer
    /// ones ([`Session::set_timeouts`](super::Session::set_timeouts)).
    pub timeouts: Timeouts,
}

impl SessionConfig {
    /// Safe defaults for a client at `client`.
    pub fn new(client: SocketAddr, upstream: Upstream) -> SessionConfig {
        SessionConfig::for_client(ClientAddr::new(client), upstream)
    }

    /// Safe defaults for a client whose address the driver has already
    /// wrapped (where it accepted the connection).
    pub fn for_client(client: ClientAddr, upstream: Upstream) -> SessionConfig {
        SessionConfig {
            client,
            upstream,
            client_advertise: None,
            server_advertise: None,
            bounce_protection: true,
            refuse_low_ports: true,
            trust_passive_address: false,
            max_held_lines: 64,
            max_pending: 128,
            max_route_attempts: 3,
            passive_known_dead: false,
            cut_reply_timeout: std::time::Duration::from_secs(2),
            passive_known_alive: false,
            data_plane: DataPlane::Relay,
            timeouts: Timeouts::default(),
        }
    }
}

//! What the session engine asks its driver to do, and what it reports.

use crate::addrs::PeerIp;
use crate::ftp::command::Verb;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Identifies one data channel within a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataId(pub u64);

/// One side of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Towards the FTP client.
    Client,
    /// Towards the FTP server.
    Server,
}

/// Which of the driver's deadlines a data connection it makes has. The
/// values are the rules' (read when the driver connects, so a reload
/// applies); which one applies is the engine's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectDeadline {
    /// The connect timeout (`limits.connect_timeout`).
    Connect,
    /// A probe of the server's passive port in server mode `auto`, whose
    /// failure only switches the session to active
    /// (`data.passive_probe_timeout`).
    PassiveProbe,
}

/// Which way a transfer's data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the server to the client (`RETR`).
    Download,
    /// From the client to the server (`STOR`, `STOU`, `APPE`).
    Upload,
    /// A directory listing from the server (`LIST`, `NLST`, `MLSD`).
    Listing,
}

impl Direction {
    /// The direction of a transfer command; `None` for a verb that moves no
    /// data.
    pub fn of(verb: Verb) -> Option<Direction> {
        use crate::ftp::command as cmd;
        match verb {
            cmd::RETR => Some(Direction::Download),
            cmd::STOR | cmd::STOU | cmd::APPE => Some(Direction::Upload),
            cmd::LIST | cmd::NLST | cmd::MLSD => Some(Direction::Listing),
            _ => None,
        }
    }

    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Download => "download",
            Direction::Upload => "upload",
            Direction::Listing => "listing",
        }
    }
}

/// How one side of a data channel is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The gateway listens; only `expect_peer` may connect, once.
    Listen {
        /// The only address allowed to connect.
        expect_peer: PeerIp,
    },
    /// The gateway connects to this address.
    Connect {
        /// Where to connect.
        to: SocketAddr,
        /// Which deadline the connection has.
        within: ConnectDeadline,
    },
    /// The kernel forwards the channel's one connection (both sides at
    /// once): only `expect_peer` may dial, once, before the pinhole
    /// deadline, and its connection goes on to `to`. The driver reports
    /// the address the peer is to dial with `data_prepared`.
    Forward {
        /// The only address allowed to dial.
        expect_peer: PeerIp,
        /// Where the connection goes.
        to: SocketAddr,
        /// The peer dials `to` itself (transparent mode): admit exactly
        /// that flow, with no translation; otherwise the driver picks a
        /// gateway address and port.
        exact: bool,
    },
}

/// How a started channel's bytes are carried, as the driver reports it
/// ([`Session::data_started`](super::Session::data_started)): what the
/// session can know of its transfer's end depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carriage {
    /// Through the gateway's own sockets: it sees the last byte handed on
    /// (the reply held behind the channel waits for that), and its end is
    /// the end of the bytes.
    Through,
    /// Peer to peer beside the gateway (the kernel forwards the
    /// connection): nothing to wait for before the server's reply, and a
    /// failure before the server's success reply turns that reply into
    /// `426`.
    Beside,
}

/// The data-connection command the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMode {
    /// PASV, answered with 227.
    Pasv,
    /// EPSV, answered with 229.
    Epsv,
    /// LPSV, answered with 228.
    Lpsv,
    /// PORT.
    Port,
    /// EPRT.
    Eprt,
    /// LPRT.
    Lprt,
}

impl ClientMode {
    /// Whether the client connects to the gateway (passive family).
    pub fn is_passive(self) -> bool {
        matches!(self, ClientMode::Pasv | ClientMode::Epsv | ClientMode::Lpsv)
    }
    /// The command's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientMode::Pasv => "PASV",
            ClientMode::Epsv => "EPSV",
            ClientMode::Lpsv => "LPSV",
            ClientMode::Port => "PORT",
            ClientMode::Eprt => "EPRT",
            ClientMode::Lprt => "LPRT",
        }
    }
}

/// The mode the gateway speaks to the server for one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMode {
    /// The gateway sends PASV/EPSV and connects to the server.
    Passive,
    /// The gateway sends PORT/EPRT and the server connects to it.
    Active,
}

impl ServerMode {
    /// Lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerMode::Passive => "passive",
            ServerMode::Active => "active",
        }
    }
}

/// An instruction for the driver, in the order they must be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the client.
    ToClient(Vec<u8>),
    /// Write these bytes to the server.
    ToServer(Vec<u8>),
    /// Connect to the server the client named in `USER name@host[:port]`,
    /// then call [`Session::upstream_connected`](super::Session::upstream_connected)
    /// or [`Session::upstream_failed`](super::Session::upstream_failed).
    Connect {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// Prepare one side of a data channel: bind a listener or connect, then
    /// report with [`Session::data_prepared`](super::Session::data_prepared)
    /// or [`Session::data_failed`](super::Session::data_failed).
    Prepare {
        /// The channel.
        id: DataId,
        /// Which side.
        side: Side,
        /// How to reach it.
        endpoint: Endpoint,
    },
    /// Both sides are prepared: relay between them once both are
    /// connected, one connection per side, within the pinhole deadline
    /// (or let the kernel forward the one connection), and say how the
    /// bytes go with
    /// [`Session::data_started`](super::Session::data_started) before
    /// anything else.
    Start {
        /// The channel.
        id: DataId,
        /// What the client asked for.
        client_mode: ClientMode,
        /// What the gateway speaks to the server.
        server_mode: ServerMode,
    },
    /// A transfer command now uses channel `id` (for the transfer log).
    Transfer {
        /// The channel.
        id: DataId,
        /// RETR, STOR, LIST, ...
        verb: Verb,
        /// Which way the data goes.
        direction: Direction,
        /// The argument (file name), lossily decoded for logs.
        arg: String,
    },
    /// End data channel `id` now, whatever its state: reset both of its
    /// connections (what is still queued towards the client is discarded),
    /// or withdraw its kernel pinhole and cut the connection it forwards.
    /// The engine has settled whatever waited for the channel.
    Reset {
        /// The channel.
        id: DataId,
        /// Why, for the log and the transfer's result.
        why: Cancel,
    },
    /// Close data channel `id`, whose transfer has delivered (the server
    /// said it succeeded, and its data is through): a relay is aborted and
    /// its transfer logged complete with its counts; a kernel-forwarded
    /// connection is left to finish in the kernel, which follows it to its
    /// end.
    Retire {
        /// The channel.
        id: DataId,
        /// Why now.
        why: Retire,
    },
    /// End data channel `id` now, as [`Action::Reset`] with
    /// [`Cancel::Cut`], for `ABOR`: the client stops waiting for the data.
    /// A kernel-forwarded connection is cut before the driver carries out
    /// the next action (the `ABOR` to the server, which may close its end
    /// at once). Sent even when the channel has already ended; the driver
    /// ignores a channel it no longer holds.
    Cut {
        /// The channel.
        id: DataId,
    },
    /// From now on copy raw bytes both ways (TLS passed through).
    Opaque,
    /// Close both control connections once everything before is written.
    Close,
    /// Something worth a log line or a metric.
    Event(Event),
}

/// Why the engine has the driver reset a data channel before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// The engine no longer needs it.
    Released,
    /// The client aborted the transfer.
    Cut,
    /// Another channel is being prepared (one at a time per session).
    AnotherPrepared,
    /// A newer channel started running (one at a time per session).
    Superseded,
    /// The control connection was idle too long.
    IdleTimeout,
    /// The gateway is stopping and its grace is over.
    Shutdown,
}

impl Cancel {
    /// The reason, for logs and the transfer's result.
    pub fn as_str(self) -> &'static str {
        match self {
            Cancel::Released => "released",
            Cancel::Cut => "cut: the client aborted the transfer",
            Cancel::AnotherPrepared => "another data channel is being prepared",
            Cancel::Superseded => "superseded by a newer data channel",
            Cancel::IdleTimeout => "control idle timeout",
            Cancel::Shutdown => "the gateway is shutting down",
        }
    }
}

/// Why the engine has the driver close a data channel that has delivered
/// its transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retire {
    /// A newer channel started running.
    Superseded,
    /// Its peers kept the delivered data connection open past the linger.
    Lingered,
}

impl Retire {
    /// The reason, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Retire::Superseded => "a newer data channel started",
            Retire::Lingered => "the peers kept the delivered data connection open",
        }
    }
}

/// Why the gateway refused something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// PORT/EPRT/LPRT named an address other than the client's own.
    Bounce,
    /// PORT/EPRT/LPRT named a privileged port.
    LowPort,
    /// An operator rule denied it.
    Rule(String),
    /// A line over the length cap.
    LineTooLong,
    /// A line that is not a command, or an argument that does not parse.
    Syntax,
    /// TLS is refused by policy.
    Tls,
    /// Too many commands sent ahead while the gateway was busy.
    Pipeline,
    /// A request the protocol does not allow here (e.g. PASV over IPv6).
    Protocol,
    /// A telnet sequence no FTP client sends, which could make the server
    /// see a different line than the gateway checked.
    Telnet,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::Bounce => f.write_str("bounce"),
            Denial::LowPort => f.write_str("low-port"),
            Denial::Rule(r) => write!(f, "rule:{r}"),
            Denial::LineTooLong => f.write_str("line-too-long"),
            Denial::Syntax => f.write_str("syntax"),
            Denial::Tls => f.write_str("tls"),
            Denial::Pipeline => f.write_str("pipeline"),
            Denial::Protocol => f.write_str("protocol"),
            Denial::Telnet => f.write_str("telnet"),
        }
    }
}

/// Things the driver logs or counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A client request was refused; the client got a reply saying why.
    Denied {
        /// The class of denial.
        reason: Denial,
        /// Human-readable detail; a client line in it is shown through
        /// [`crate::ftp::redact`], so never with a password.
        detail: String,
        /// The file the refused command named, if it names one.
        file: Option<String>,
    },
    /// A line that could not be understood was passed through unchanged.
    Unparsed {
        /// Who sent it.
        from: Side,
        /// The line, lossily decoded and truncated.
        line: String,
    },
    /// A 227/228/229 arrived that answers no PASV/EPSV/LPSV the gateway
    /// sent: forwarded as text, honoured by nothing.
    UnsolicitedPassive {
        /// The reply code.
        code: u16,
    },
    /// A passive reply named an address other than the server's; the
    /// control connection's address was used instead.
    PassiveAddressIgnored {
        /// What the server wrote.
        advertised: IpAddr,
        /// What the gateway connects to.
        used: IpAddr,
    },
    /// The kernel could not forward a channel; it is relayed instead.
    KernelFallback {
        /// Why.
        reason: String,
    },
    /// In server mode `auto`, the server's passive port answered (worth
    /// remembering for the server's next sessions).
    PassiveAnswered,
    /// Server-side passive failed; the session switches to active.
    PassiveFallback {
        /// Why.
        reason: String,
    },
    /// The client named a user.
    User {
        /// The user name.
        name: String,
    },
    /// The server accepted the login.
    LoggedIn,
    /// TLS passes through from now on; data channels are not inspected.
    TlsPassthrough,
    /// The client cancelled the transfer on channel `id` (ABOR): its data
    /// connections are cut.
    Aborted {
        /// The channel.
        id: DataId,
    },
    /// The server did not answer a transfer whose data was cut within the
    /// deadline; the client was told `426` by the gateway itself.
    ReplyOverdue {
        /// The channel.
        id: DataId,
    },
    /// The data path of channel `id` failed after the server reported its
    /// transfer complete: the client is told it aborted (`426`) instead.
    DataPathFailed {
        /// The channel.
        id: DataId,
        /// How the data path failed.
        reason: String,
        /// The reply line the server sent.
        held: String,
    },
    /// Neither peer spoke for the control idle timeout while no transfer
    /// ran: the session ends (its channels are reset, the client gets
    /// `421`).
    IdleTimeout,
    /// The session did not log in within the login timeout: the client
    /// gets `421` after what it was owed, and the session ends.
    LoginTimeout,
}

//! What the analysis records: control sessions, their data negotiations,
//! and data connections, each event stamped with its packet and time.

use std::net::SocketAddr;

use serde::Serialize;

/// Where in which capture something was seen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stamp {
    /// Frame number in its capture (1-based, as in Wireshark).
    pub packet: u64,
    /// Seconds since the capture's first packet.
    pub time: f64,
}

/// Which end of a connection sent something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The end that opened the connection (the FTP client on control).
    Client,
    /// The end that accepted it.
    Server,
}

/// One control line, for the transcript.
#[derive(Debug, Clone, Serialize)]
pub struct ControlLine {
    /// When the line was complete.
    pub at: Stamp,
    /// Who sent it.
    pub from: Side,
    /// The line as text, passwords masked, cut at 200 characters.
    pub text: String,
}

/// A reply: its code and text.
#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The reply's last line.
    pub text: String,
    /// When it was complete.
    pub at: Stamp,
}

/// How data is set up: who connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The server connects to the client (PORT, EPRT, LPRT).
    Active,
    /// The client connects to the server (PASV, EPSV, LPSV).
    Passive,
}

/// One data negotiation and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Negotiation {
    /// The command (PORT, EPRT, LPRT, PASV, EPSV, LPSV).
    pub command: String,
    /// Its argument, as text.
    pub argument: String,
    /// When it was sent.
    pub at: Stamp,
    /// Active or passive.
    pub mode: Mode,
    /// The address the command or its reply named.
    pub address: Option<SocketAddr>,
    /// Why the address could not be read, if it could not.
    pub address_error: Option<String>,
    /// The server's reply to the command.
    pub reply: Option<Reply>,
    /// The transfer command that used it (RETR, STOR, LIST, ...).
    pub transfer: Option<String>,
    /// When the transfer command was sent.
    pub transfer_at: Option<Stamp>,
    /// The 1xx reply: the server started the transfer.
    pub started: Option<Reply>,
    /// The transfer's final reply.
    pub result: Option<Reply>,
    /// Index of the data connection in the report's list.
    pub data: Option<usize>,
}

/// How a TCP connection ended, as far as the capture shows.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Close {
    /// Who sent it.
    pub by: Side,
    /// When.
    pub at: Stamp,
}

/// A data connection.
#[derive(Debug, Clone, Serialize)]
pub struct DataConn {
    /// Index of the capture it was seen in.
    pub capture: usize,
    /// Who connected.
    pub from: SocketAddr,
    /// To whom.
    pub to: SocketAddr,
    /// The first SYN (or first packet, if the capture began later).
    pub first: Stamp,
    /// How many SYNs were sent (retransmissions included).
    pub syns: u32,
    /// The SYN-ACK.
    pub answered: Option<Stamp>,
    /// A reset.
    pub reset: Option<Close>,
    /// The first FIN.
    pub fin: Option<Close>,
    /// Payload bytes from the connecting end.
    pub bytes_up: u64,
    /// Payload bytes from the accepting end.
    pub bytes_down: u64,
    /// The last packet.
    pub last: Stamp,
    /// The session and negotiation it belongs to.
    #[serde(skip)]
    pub owner: Option<(usize, usize)>,
}

impl DataConn {
    /// Bytes both ways.
    pub fn bytes(&self) -> u64 {
        self.bytes_up + self.bytes_down
    }

    /// Whether the accepting end answered the SYN (or the capture shows
    /// the connection already open).
    pub fn established(&self) -> bool {
        self.answered.is_some() || (self.syns == 0 && self.bytes() > 0)
    }
}

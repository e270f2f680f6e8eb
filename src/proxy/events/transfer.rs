//! A transfer's end, classified once: what the peers decided (completed,
//! refused by the server, refused by the rules, aborted by the client) is
//! INFO; what the gateway could not do (a reset, a deadline, an expired
//! pinhole, the kernel's failure) is WARN. The class is the `result` of
//! `ftpalg_transfers_total` and of the `transfer` log line.

use super::{DirectionLabels, Telemetry, TransferLabels};
use std::net::SocketAddr;
use std::time::Duration;
use tracing::{info, warn};

/// How a transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEnd<'a> {
    /// The server said it completed, and every byte was carried.
    Completed,
    /// The server refused it or said it failed: its reply, code and text
    /// (`550 No such file`).
    RefusedByServer {
        /// The server's reply line.
        reply: &'a str,
    },
    /// The rules refused the command: the denial's reason (`rule:NAME`).
    RefusedByPolicy {
        /// The denial's class.
        reason: &'a str,
    },
    /// The client cut it (ABOR, or it closed its data connection early).
    AbortedByClient,
    /// The gateway could not carry it: why, in the words of its data path.
    Failed {
        /// Why.
        error: &'a str,
    },
}

impl TransferEnd<'_> {
    /// Every `result` label, in order: the metric's series at zero.
    pub const RESULTS: [&'static str; 5] = ["ok", "refused", "denied", "aborted", "failed"];

    /// The `result` label and log field.
    pub fn result(&self) -> &'static str {
        match self {
            TransferEnd::Completed => "ok",
            TransferEnd::RefusedByServer { .. } => "refused",
            TransferEnd::RefusedByPolicy { .. } => "denied",
            TransferEnd::AbortedByClient => "aborted",
            TransferEnd::Failed { .. } => "failed",
        }
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
    /// Bytes moved (up, down), so far when it did not complete.
    pub moved: (u64, u64),
    /// How it ended.
    pub end: TransferEnd<'a>,
}

impl Telemetry {
    /// A transfer ended. Its `/status` entry goes with its channel's
    /// [`TransferEntry`](crate::proxy::status::TransferEntry), not with
    /// this report.
    pub fn transfer(&self, t: TransferReport<'_>) {
        let result = t.end.result();
        self.transfers
            .get_or_create(&TransferLabels {
                result: result.to_string(),
                client_mode: t.client_mode.to_string(),
                server_mode: t.server_mode.to_string(),
                path: t.path.to_string(),
            })
            .inc();
        if let Some(s) = t.setup {
            self.setup.observe(s.as_secs_f64());
        }
        let (up, down) = t.moved;
        self.add_bytes(up, down);
        self.live.transfer_done(t.session, up, down);
        let secs = t.elapsed.as_secs_f64();
        macro_rules! line {
            ($level:ident, $($extra:tt)*) => {
                $level!(session = t.session, channel = t.channel, client = %t.client, server = t.server, user = t.user, direction = t.direction, command = t.command, file = t.file, client_mode = t.client_mode, server_mode = t.server_mode, bytes_up = up, bytes_down = down, secs, path = t.path, result, $($extra)* "transfer")
            };
        }
        match t.end {
            TransferEnd::Completed | TransferEnd::AbortedByClient => line!(info,),
            TransferEnd::RefusedByServer { reply } => line!(info, reply,),
            TransferEnd::RefusedByPolicy { reason } => line!(info, reason,),
            TransferEnd::Failed { error } => line!(warn, error,),
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
}

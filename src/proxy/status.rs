//! Live sessions and transfers at a glance (`GET /status` on the metrics
//! endpoint): client, server, user, the mode on each side, bytes so far and
//! age. Kept by [`super::events::Telemetry`] from the same reports that
//! write the logs.
//!
//! Bound: a transfer's entry lives exactly as long as its data channel.
//! Registering it returns a [`TransferEntry`] that the channel keeps and
//! that removes the entry when dropped, on whatever path the channel ends
//! (superseded before use, released, reset, finished, its session gone).

use super::relay::Progress;
use dashmap::DashMap;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

struct Session {
    client: SocketAddr,
    listener: String,
    user: Option<String>,
    server: Option<String>,
    started: Instant,
    transfers: Vec<Transfer>,
}

struct Transfer {
    channel: u64,
    command: String,
    file: String,
    client_mode: String,
    server_mode: String,
    started: Instant,
    progress: Arc<Progress>,
}

/// The sessions alive now.
#[derive(Default)]
pub struct Live {
    /// Shared with every [`TransferEntry`], which removes its own entry.
    sessions: Arc<DashMap<u64, Session>>,
}

/// A transfer's entry in `/status`, removed when this is dropped: kept by
/// its data channel, so the entry cannot outlive the channel.
#[must_use = "the /status entry is removed when this is dropped"]
pub struct TransferEntry {
    sessions: Arc<DashMap<u64, Session>>,
    session: u64,
    channel: u64,
    progress: Arc<Progress>,
}

impl TransferEntry {
    /// Where the transfer's bytes are counted as they move.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }
}

impl std::fmt::Debug for TransferEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferEntry")
            .field("session", &self.session)
            .field("channel", &self.channel)
            .finish()
    }
}

impl Drop for TransferEntry {
    fn drop(&mut self) {
        if let Some(mut s) = self.sessions.get_mut(&self.session) {
            s.transfers.retain(|t| t.channel != self.channel);
        }
    }
}

/// One session as `/status` shows it.
#[derive(Debug, Serialize, PartialEq)]
pub struct SessionView {
    /// Session id, as in the logs.
    pub session: u64,
    /// The client's address.
    pub client: String,
    /// The listener that accepted it.
    pub listener: String,
    /// The user, once logged in.
    pub user: Option<String>,
    /// The server, once connected.
    pub server: Option<String>,
    /// Seconds since it was accepted.
    pub age_secs: f64,
    /// Transfers running now.
    pub transfers: Vec<TransferView>,
}

/// One running transfer as `/status` shows it.
#[derive(Debug, Serialize, PartialEq)]
pub struct TransferView {
    /// The command (`RETR`, `STOR`, `LIST`, ...).
    pub command: String,
    /// Its argument.
    pub file: String,
    /// The client's data command (`PASV`, `EPSV`, `PORT`, ...).
    pub client_mode: String,
    /// The mode towards the server.
    pub server_mode: String,
    /// Bytes client to server so far.
    pub bytes_up: u64,
    /// Bytes server to client so far.
    pub bytes_down: u64,
    /// Seconds since the relay started.
    pub age_secs: f64,
}

impl Live {
    pub(super) fn start(&self, id: u64, client: SocketAddr, listener: &str) {
        self.sessions.insert(
            id,
            Session {
                client,
                listener: listener.to_string(),
                user: None,
                server: None,
                started: Instant::now(),
                transfers: Vec::new(),
            },
        );
    }

    pub(super) fn end(&self, id: u64) {
        self.sessions.remove(&id);
    }

    pub(super) fn logged_in(&self, id: u64, user: &str, server: Option<String>) {
        if let Some(mut s) = self.sessions.get_mut(&id) {
            s.user = Some(user.to_string());
            s.server = server;
        }
    }

    /// Registers channel `channel` of session `id`; the entry lasts as
    /// long as the returned guard.
    pub(super) fn transfer_start(
        &self,
        id: u64,
        channel: u64,
        command: &str,
        file: &str,
        client_mode: &str,
        server_mode: &str,
    ) -> TransferEntry {
        let progress = Arc::new(Progress::default());
        if let Some(mut s) = self.sessions.get_mut(&id) {
            s.transfers.push(Transfer {
                channel,
                command: command.to_string(),
                file: file.to_string(),
                client_mode: client_mode.to_string(),
                server_mode: server_mode.to_string(),
                started: Instant::now(),
                progress: progress.clone(),
            });
        }
        TransferEntry {
            sessions: self.sessions.clone(),
            session: id,
            channel,
            progress,
        }
    }

    /// Names the command a transfer serves (it may be bound after the
    /// relay started).
    pub(super) fn transfer_named(&self, id: u64, channel: u64, command: &str, file: &str) {
        if let Some(mut s) = self.sessions.get_mut(&id) {
            if let Some(t) = s.transfers.iter_mut().find(|t| t.channel == channel) {
                t.command = command.to_string();
                t.file = file.to_string();
            }
        }
    }

    /// Every live session, oldest first.
    pub fn view(&self) -> Vec<SessionView> {
        let mut out: Vec<SessionView> = self
            .sessions
            .iter()
            .map(|e| {
                let s = e.value();
                SessionView {
                    session: *e.key(),
                    client: s.client.to_string(),
                    listener: s.listener.clone(),
                    user: s.user.clone(),
                    server: s.server.clone(),
                    age_secs: s.started.elapsed().as_secs_f64(),
                    transfers: s
                        .transfers
                        .iter()
                        .map(|t| TransferView {
                            command: t.command.clone(),
                            file: t.file.clone(),
                            client_mode: t.client_mode.clone(),
                            server_mode: t.server_mode.clone(),
                            bytes_up: t.progress.up.load(Ordering::Relaxed),
                            bytes_down: t.progress.down.load(Ordering::Relaxed),
                            age_secs: t.started.elapsed().as_secs_f64(),
                        })
                        .collect(),
                }
            })
            .collect();
        out.sort_by_key(|s| s.session);
        out
    }

    /// The same as a table for a terminal.
    pub fn text(&self) -> String {
        let view = self.view();
        let mut o = format!("{} session(s)\n", view.len());
        o.push_str("SESSION  CLIENT                 SERVER                 USER             AGE\n");
        for s in &view {
            o.push_str(&format!(
                "{:<8} {:<22} {:<22} {:<16} {:.0}s\n",
                s.session,
                s.client,
                s.server.as_deref().unwrap_or("-"),
                s.user.as_deref().unwrap_or("-"),
                s.age_secs
            ));
            for t in &s.transfers {
                o.push_str(&format!(
                    "         {} {}  client {} / server {}  up {} B  down {} B  {:.0}s\n",
                    t.command,
                    t.file,
                    t.client_mode,
                    t.server_mode,
                    t.bytes_up,
                    t.bytes_down,
                    t.age_secs
                ));
            }
        }
        o
    }
}

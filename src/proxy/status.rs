//! Live sessions and transfers at a glance (`GET /status` on the metrics
//! endpoint): client, server, user, the mode on each side, bytes so far and
//! age. Kept by [`super::events::Telemetry`] from the same reports that
//! write the logs.
//!
//! Bound: a transfer's entry lives exactly as long as its data channel.
//! Registering it returns a [`TransferEntry`] that the channel keeps and
//! that removes the entry when dropped, on whatever path the channel ends
//! (superseded before use, released, reset, finished, its session gone).

use super::datapath::Progress;
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
    done: Totals,
}

/// What a session's transfers carried, for its `session end` line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    /// Transfers ended, whatever their result.
    pub transfers: u64,
    /// Bytes client to server.
    pub bytes_up: u64,
    /// Bytes server to client.
    pub bytes_down: u64,
}

/// What `/status` knew of a session when it ended.
#[derive(Debug, Default)]
pub(super) struct Ended {
    pub server: Option<String>,
    pub totals: Totals,
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
                done: Totals::default(),
            },
        );
    }

    /// Removes session `id`, and says what it knew of it.
    pub(super) fn end(&self, id: u64) -> Ended {
        self.sessions
            .remove(&id)
            .map(|(_, s)| Ended {
                server: s.server,
                totals: s.done,
            })
            .unwrap_or_default()
    }

    /// The session's server, once connected.
    pub(super) fn server(&self, id: u64, server: String) {
        if let Some(mut s) = self.sessions.get_mut(&id) {
            s.server = Some(server);
        }
    }

    /// A transfer of session `id` ended, having moved `up` and `down`.
    pub(super) fn transfer_done(&self, id: u64, up: u64, down: u64) {
        if let Some(mut s) = self.sessions.get_mut(&id) {
            s.done.transfers += 1;
            s.done.bytes_up += up;
            s.done.bytes_down += down;
        }
    }

    pub(super) fn logged_in(&self, id: u64, user: &str, server: Option<String>) {
        if let Some(mut s) = self.sessions.get_mut(&id) {
            s.user = Some(user.to_string());
            if server.is_some() {
                s.server = server;
            }
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

    /// The same as JSON. Every character a terminal could act on is
    /// `\u`-escaped: serde escapes only those below U+0020, and a user
    /// name can carry DEL, a C1 control such as CSI (U+009B) or a bidi
    /// override to whoever runs `curl` on it.
    pub fn json(&self) -> String {
        let raw = serde_json::to_string(&self.view()).unwrap_or_default();
        if !raw.chars().any(unsafe_char) {
            return raw;
        }
        // Outside strings JSON is ASCII punctuation, digits and names, so
        // each such character is inside a string, where `\uXXXX` stands
        // for it exactly.
        let mut o = String::with_capacity(raw.len() + 16);
        for c in raw.chars() {
            if unsafe_char(c) {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    o.push_str(&format!("\\u{u:04x}"));
                }
            } else {
                o.push(c);
            }
        }
        o
    }

    /// The same as a table for a terminal. The text of clients and
    /// servers (user names, files, commands, server names) is escaped, so
    /// no control character or escape sequence reaches the terminal.
    pub fn text(&self) -> String {
        let view = self.view();
        let mut o = format!("{} session(s)\n", view.len());
        o.push_str("SESSION  CLIENT                 SERVER                 USER             AGE\n");
        for s in &view {
            o.push_str(&format!(
                "{:<8} {:<22} {:<22} {:<16} {:.0}s\n",
                s.session,
                s.client,
                printable(s.server.as_deref().unwrap_or("-")),
                printable(s.user.as_deref().unwrap_or("-")),
                s.age_secs
            ));
            for t in &s.transfers {
                o.push_str(&format!(
                    "         {} {}  client {} / server {}  up {} B  down {} B  {:.0}s\n",
                    printable(&t.command),
                    printable(&t.file),
                    printable(&t.client_mode),
                    printable(&t.server_mode),
                    t.bytes_up,
                    t.bytes_down,
                    t.age_secs
                ));
            }
        }
        o
    }
}

/// Whether a terminal may act on `c` rather than show it: the C0 and C1
/// controls and DEL, and the bidirectional overrides and isolates that
/// reorder what follows them on the line.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with each [`unsafe_char`] written as `\x1b` (ASCII) or `\u{9b}`,
/// and `\` doubled so an escape cannot be forged; printable text, UTF-8
/// included, is kept.
fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || unsafe_char(c)) {
        return s.into();
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            c if unsafe_char(c) && c.is_ascii() => o.push_str(&format!("\\x{:02x}", c as u32)),
            c if unsafe_char(c) => o.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => o.push(c),
        }
    }
    o.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls_and_keeps_text() {
        assert_eq!(printable("alice"), "alice");
        assert_eq!(printable("Jürgen/日本"), "Jürgen/日本");
        assert_eq!(printable("a\u{1b}[2Jb"), r"a\x1b[2Jb");
        assert_eq!(
            printable("\u{7f}\u{9b}\u{202e}\t\n"),
            r"\x7f\u{9b}\u{202e}\x09\x0a"
        );
        assert_eq!(printable(r"a\x1b"), r"a\\x1b");
    }

    #[test]
    fn json_escapes_what_serde_leaves_raw_and_reads_back_the_same() {
        let live = Live::default();
        let user = "u\u{1b}[31m\u{7f}\u{9b}\u{202e}\u{1F600}\"\\";
        live.start(1, "100.64.0.2:5000".parse().unwrap(), "l");
        live.logged_in(1, user, Some("s\u{85}".into()));
        let j = live.json();
        assert!(!j.chars().any(unsafe_char), "{j:?}");
        assert!(j.contains(r"\u007f\u009b\u202e"), "{j}");
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v[0]["user"], user);
        assert_eq!(v[0]["server"], "s\u{85}");
    }
}

//! Who holds each pinhole, and what letting go of it does. A pinhole is
//! added for an owner (a session and one of its data channels) under
//! [`Terms`] that say what withdrawing it does to the connection it
//! admitted; the table keeps them, keyed by session as well as by
//! pinhole, so one call lets go of everything a session holds.

use super::{KernelError, KernelTable, PinholeId};
use std::time::Duration;

/// Who holds a pinhole: a session and one of its data channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The session, as the gateway numbers its sessions.
    pub session: u64,
    /// The session's data channel.
    pub channel: u64,
}

/// What withdrawing a pinhole does to the connection it admitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Withdraw {
    /// Nothing: the connection is someone else's (a relay's, which ends
    /// it), and the table forgets it.
    Forget,
    /// It goes on, followed to its end (logged, cut when idle past its
    /// bound and when the table closes): a transfer left to finish.
    Detach,
    /// It is cut: both ends are reset at their next packet.
    #[default]
    Cut,
}

/// What a pinhole is added under.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Terms {
    /// Who holds it; `None` for a pinhole nobody will let go of as a
    /// session (the caller withdraws it by id).
    pub owner: Option<Owner>,
    /// Once its connection is established, it is cut after this long
    /// without a byte in either direction.
    pub idle: Option<Duration>,
    /// What [`KernelTable::release`] does to its connection.
    pub release: Withdraw,
}

impl KernelTable {
    /// Its holder lets go of pinhole `id`: it is withdrawn, and its
    /// connection forgotten, followed or cut as its [`Terms`] say (see
    /// [`leave`](Self::leave)). Unknown ids (already ended) are not an
    /// error.
    pub fn release(&mut self, id: PinholeId) -> Result<(), KernelError> {
        let Some(how) = self.flows.get(id).map(|l| l.release) else {
            return Ok(());
        };
        match how {
            Withdraw::Forget => self.remove(id),
            Withdraw::Detach => self.detach(id),
            Withdraw::Cut => self.abort(id).map(|_| ()),
        }
    }

    /// The connection of pinhole `id` is to be left to finish when it is
    /// released ([`Withdraw::Detach`]), rather than cut: a transfer the
    /// server reported complete. A pinhole whose connection is someone
    /// else's ([`Withdraw::Forget`]) stays so.
    pub fn leave(&mut self, id: PinholeId) {
        self.flows.leave(id);
    }

    /// Releases every pinhole session `session` still holds, each as its
    /// terms say, in one call: ending a session needs nothing else.
    /// Returns them. One that cannot be withdrawn now is logged, and what
    /// is left of it expires with its timeout.
    pub fn release_session(&mut self, session: u64) -> Vec<PinholeId> {
        let ids = self.flows.of_session(session);
        for &id in &ids {
            if let Err(e) = self.release(id) {
                tracing::warn!(error = %e, session, "could not withdraw a kernel pinhole; it expires with its timeout");
            }
        }
        ids
    }

    /// Pinholes session `session` holds now.
    pub fn pinholes_of(&self, session: u64) -> Vec<PinholeId> {
        self.flows.of_session(session)
    }
}

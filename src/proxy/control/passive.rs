//! What sessions learned of servers' passive ports, for the sessions after
//! them: a server whose passive ports did not answer is not probed again
//! by each session, and one whose ports answered may have its passive
//! transfers forwarded by the kernel (server mode `auto`).

use dashmap::DashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a server stays known as passive-dead (or alive): long enough
/// that each session does not pay the probe again, short enough that a
/// fixed firewall is noticed.
const PASSIVE_DEAD_TTL: Duration = Duration::from_secs(600);

/// Servers remembered as passive-alive at most: past it, new servers are
/// probed through the relay every time (a bound, not a cache).
const PASSIVE_ALIVE_MAX: usize = 4096;

/// Servers whose passive ports did or did not answer, and when that was
/// seen; shared by every session.
#[derive(Default)]
pub(crate) struct PassiveMemo {
    dead: DashMap<IpAddr, Instant>,
    alive: DashMap<IpAddr, Instant>,
}

impl PassiveMemo {
    /// Remembers that `server`'s passive ports do not answer.
    pub(crate) fn mark_dead(&self, server: IpAddr) {
        self.alive.remove(&server);
        self.dead.insert(server, Instant::now());
    }

    /// Remembers that `server`'s passive ports answer.
    pub(crate) fn mark_alive(&self, server: IpAddr) {
        if self.alive.len() < PASSIVE_ALIVE_MAX {
            self.alive.insert(server, Instant::now());
        }
    }

    /// Whether `server`'s passive ports were seen answering recently.
    pub(crate) fn known_alive(&self, server: IpAddr) -> bool {
        match self.alive.get(&server).map(|t| t.elapsed()) {
            Some(age) if age < PASSIVE_DEAD_TTL => true,
            Some(_) => {
                self.alive.remove(&server);
                false
            }
            None => false,
        }
    }

    /// Whether `server`'s passive ports were seen dead recently.
    pub(crate) fn known_dead(&self, server: IpAddr) -> bool {
        match self.dead.get(&server).map(|t| t.elapsed()) {
            Some(age) if age < PASSIVE_DEAD_TTL => true,
            Some(_) => {
                self.dead.remove(&server);
                false
            }
            None => false,
        }
    }
}

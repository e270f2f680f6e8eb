//! The kernel data path: pinholes as elements of ftpalg's own nftables
//! table, set up over netlink, and their connections watched through
//! conntrack. No `nft` process runs; every change is one nf_tables
//! transaction on one netlink socket.
//!
//! [`KernelTable`] is that table and the connections its pinholes admitted.
//! It owns the table for as long as it lives: [`open`] creates it
//! (replacing a stale one), [`close`] or drop deletes it, and with
//! [`KernelConfig::owner`] the kernel deletes it as well when the socket
//! closes, so a killed ftpalg leaves nothing behind. It touches no other
//! table. Calls block for at most [`KernelConfig::netlink_timeout`]; the
//! tokio driver gives it a thread of its own.
//!
//! Words used here, each for one thing: a *pinhole* is the admission of
//! one connection from one peer to one gateway address before a deadline,
//! made of set elements; its *connection* is what it admitted, followed
//! through conntrack after the pinhole itself is withdrawn; the *table*
//! holds every pinhole and follows every connection.
//!
//! The files, one idea each: `table.rs` (the table's life: open, check,
//! close), `pinholes.rs` (adding and withdrawing pinholes), `holders.rs`
//! (who holds each pinhole: a session's are released in one call),
//! `watch.rs`
//! (conntrack events in, [`FlowEvent`]s out), `flow_event.rs` (what is
//! reported, in the kernel's terms), `track.rs` (the bookkeeping, no
//! netlink), and below them the messages (`ruleset.rs`, `sets.rs`,
//! `elements.rs`, `expr.rs`, `netlink.rs`, `conntrack.rs`, `events.rs`,
//! `strangers.rs`, `socket.rs`).
//!
//! [`open`]: KernelTable::open
//! [`close`]: KernelTable::close

mod config;
mod conntrack;
mod elements;
mod error;
mod events;
mod expr;
mod flow_event;
mod holders;
mod layout;
mod netlink;
mod pinholes;
mod ruleset;
mod sets;
mod socket;
mod strangers;
mod table;
mod track;
mod watch;

pub use config::KernelConfig;
pub use error::KernelError;
pub use flow_event::{ByteCounts, FailReason, FlowEvent};
pub use holders::{Owner, Terms, Withdraw};
pub use strangers::Stranger;

use events::CtEvents;
use ruleset::Layout;
use socket::NfSocket;
use track::Flows;

/// What [`KernelTable::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    /// A table of that name was there and has been replaced.
    pub replaced_stale: bool,
    /// Conntrack accounting is on (byte counts will be real).
    pub accounting: bool,
}

/// A live pinhole, as handed out by [`KernelTable::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PinholeId(u64);

/// The longest a pinhole may wait for its connection (the rules allow 5
/// minutes; this bounds what reaches the kernel whatever the caller says).
const MAX_PINHOLE_MS: u64 = 10 * 60 * 1000;

/// ftpalg's nftables table, its pinholes and the connections they
/// admitted. See the module documentation.
#[derive(Debug)]
pub struct KernelTable {
    sock: NfSocket,
    /// ftpalg's conntrack entries as they change, filtered by mark.
    events: CtEvents,
    /// Who the `guard` chain turned away, if its log group could be had.
    strangers: Option<strangers::StrangerLog>,
    /// Those not yet taken by [`take_strangers`](Self::take_strangers).
    turned_away: Vec<Stranger>,
    layout: Layout,
    flows: Flows,
    /// Most pinholes and followed connections at once: the sets hold
    /// `max_pinholes` of each family, and a connection outlives its
    /// pinhole's elements by at most as many again.
    max_live: usize,
    next_id: u64,
    /// `Some(false)` once the kernel refused DESTROYSETELEM.
    destroy_supported: Option<bool>,
    /// Events decided outside `poll` (a lost table), delivered by it.
    pending: Vec<(PinholeId, FlowEvent)>,
    open: bool,
}

const EPERM: i32 = libc::EPERM;
const ENOENT: i32 = libc::ENOENT;
const ENFILE: i32 = libc::ENFILE;
const EEXIST: i32 = libc::EEXIST;

impl KernelTable {
    /// Number of live pinholes, and connections still followed.
    pub fn live(&self) -> usize {
        self.flows.len()
    }

    /// The conntrack mark under the mask, as configured.
    pub fn mark(&self) -> (u32, u32) {
        (self.layout.mark, self.layout.mask)
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests;

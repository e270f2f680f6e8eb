//! The kernel data path: pinholes as elements of ftpalg's own nftables
//! table, set up over netlink, and their connections watched through
//! conntrack. No `nft` process runs; every change is one nf_tables
//! transaction on one netlink socket.
//!
//! [`KernelDataPlane`] owns the table for as long as it lives: [`open`]
//! creates it (replacing a stale one), [`close`] or drop deletes it, and
//! with [`KernelConfig::owner`] the kernel deletes it as well when the
//! socket closes, so a killed ftpalg leaves nothing behind. It touches no
//! other table. Calls block for at most [`KernelConfig::netlink_timeout`];
//! a tokio driver runs them on a blocking thread.
//!
//! [`open`]: KernelDataPlane::open
//! [`close`]: KernelDataPlane::close

mod config;
mod conntrack;
mod elements;
mod error;
mod events;
mod expr;
mod layout;
mod netlink;
mod ruleset;
mod sets;
mod socket;
mod strangers;
mod track;
mod watch;

pub use config::KernelConfig;
pub use error::KernelError;
pub use strangers::Stranger;

use crate::dataplane::{FailReason, FlowEvent, GatewayAddr, PinholeFlow};
use elements::Elements;
use events::CtEvents;
use netlink::Batch;
use ruleset::Layout;
use socket::NfSocket;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use track::Flows;

/// What [`KernelDataPlane::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    /// A table of that name was there and has been replaced.
    pub replaced_stale: bool,
    /// Conntrack accounting is on (byte counts will be real).
    pub accounting: bool,
}

/// A live pinhole, as handed out by [`KernelDataPlane::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PinholeId(u64);

/// The longest a pinhole may wait for its connection (the rules allow 5
/// minutes; this bounds what reaches the kernel whatever the caller says).
const MAX_PINHOLE_MS: u64 = 10 * 60 * 1000;

/// ftpalg's pinholes in the kernel. See the module documentation.
#[derive(Debug)]
pub struct KernelDataPlane {
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

impl KernelDataPlane {
    /// Creates ftpalg's table in the calling thread's network namespace, replacing
    /// a stale one of the same name. Needs CAP_NET_ADMIN.
    pub fn open(config: KernelConfig) -> Result<(Self, OpenReport), KernelError> {
        if config.table.is_empty() || config.table.len() > 255 {
            return Err(KernelError::Config("table name must be 1 to 255 bytes"));
        }
        if config.mark == 0 || config.mark & !config.mark_mask != 0 {
            return Err(KernelError::Config(
                "mark must be non-zero and inside mark_mask",
            ));
        }
        if config.cut_mark() == 0 {
            return Err(KernelError::Config(
                "mark_mask must leave room for a second mark (the cut one)",
            ));
        }
        if config.max_pinholes == 0 {
            return Err(KernelError::Config("max_pinholes must be at least 1"));
        }
        let sock = NfSocket::open(config.netlink_timeout)?;
        // Subscribed before the table exists, so no connection it admits
        // can be missed.
        let events = CtEvents::open(config.mark, config.cut_mark(), config.mark_mask)?;
        let strangers = config.log_group.and_then(|g| match strangers::StrangerLog::open(g) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(group = g, error = %e, "strangers at kernel pinholes will be dropped without a log line (nflog group taken?)");
                None
            }
        });
        let layout = Layout {
            cut: config.cut_mark(),
            table: config.table,
            mark: config.mark,
            mask: config.mark_mask,
            size: config.max_pinholes,
            owner: config.owner,
            log_group: strangers.as_ref().and(config.log_group),
        };
        let max_live = (config.max_pinholes as usize).saturating_mul(4);
        let mut dp = KernelDataPlane {
            sock,
            events,
            strangers,
            turned_away: Vec::new(),
            layout,
            flows: Flows::default(),
            max_live,
            next_id: 1,
            destroy_supported: None,
            pending: Vec::new(),
            open: false,
        };
        let replaced_stale = dp.table_exists()?;
        dp.create_table()?;
        dp.open = true;
        let accounting = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_acct")
            .is_ok_and(|s| s.trim() == "1");
        if replaced_stale {
            tracing::warn!(table = %dp.table_label(), "replaced a stale nftables table (left by a killed ftpalg?)");
        }
        if !accounting {
            tracing::warn!(
                "net.netfilter.nf_conntrack_acct is 0: kernel transfers will report zero bytes"
            );
        }
        Ok((
            dp,
            OpenReport {
                replaced_stale,
                accounting,
            },
        ))
    }

    fn table_label(&self) -> String {
        format!("inet {}", self.layout.table)
    }

    fn table_exists(&mut self) -> Result<bool, KernelError> {
        let seq = self.sock.reserve_seq(1);
        let req = netlink::request(
            netlink::NFNL_SUBSYS_NFTABLES,
            ruleset::NFT_MSG_GETTABLE,
            0,
            seq,
            ruleset::NFPROTO_INET,
            |w| w.str(ruleset::NFTA_TABLE_NAME, &self.layout.table),
        );
        match self
            .sock
            .query(req.as_bytes(), seq, false, "get table", |_| {})
        {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn create_table(&mut self) -> Result<(), KernelError> {
        let mut b = Batch::new(self.sock.reserve_seq(64));
        ruleset::create(&mut b, &self.layout);
        match self.sock.transact(b, "create table") {
            Err(e) if e.errno() == Some(EPERM) => Err(KernelError::TableBusy {
                table: self.table_label(),
            }),
            r => r,
        }
    }

    /// Number of live pinholes, and connections still followed.
    pub fn live(&self) -> usize {
        self.flows.len()
    }

    /// The conntrack mark under the mask, as configured.
    pub fn mark(&self) -> (u32, u32) {
        (self.layout.mark, self.layout.mask)
    }

    /// Puts a pinhole into the kernel. On success it admits the flow's
    /// first connection until its timeout; on error nothing was added.
    /// If the table was deleted by someone else, it is recreated, the
    /// pinhole added, and the loss is logged (pinholes it held fail at the
    /// next [`poll`](Self::poll)).
    pub fn add(&mut self, flow: &PinholeFlow) -> Result<PinholeId, KernelError> {
        self.add_limited(flow, None)
    }

    /// [`add`](Self::add), and once its connection is established, cut it
    /// after `idle` without a byte in either direction
    /// ([`FailReason::Idle`]).
    pub fn add_limited(
        &mut self,
        flow: &PinholeFlow,
        idle: Option<Duration>,
    ) -> Result<PinholeId, KernelError> {
        if !flow.same_family() {
            return Err(KernelError::MixedFamilies);
        }
        if self.flows.len() >= self.max_live {
            return Err(KernelError::Full {
                max: self.layout.size,
            });
        }
        self.settle_for(flow.gateway)?;
        let elements = Elements::of(flow);
        // Milliseconds, at least one: a zero timeout would mean "the set's
        // default" (none), a pinhole for ever.
        let ms = u64::try_from(flow.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_PINHOLE_MS);
        match self.add_elements(&elements, ms) {
            Err(e) if e.errno() == Some(ENOENT) => {
                let lost = self.flows.len();
                tracing::warn!(table = %self.table_label(), lost, "nftables table removed by someone else; recreating");
                self.create_table()?;
                self.mark_all_lost();
                self.add_elements(&elements, ms)?;
            }
            Err(e @ KernelError::Timeout { .. }) => {
                // The kernel may have applied it after all: take back what
                // may be there, so no pinhole lives that nobody follows.
                if let Err(e) = self.remove_elements(&elements) {
                    tracing::warn!(error = %e, gateway = %flow.gateway, "could not take back a pinhole whose add timed out");
                }
                return Err(e);
            }
            r => r?,
        }
        let id = PinholeId(self.next_id);
        self.next_id += 1;
        self.flows.insert(
            id,
            *flow,
            elements,
            Instant::now(),
            idle.filter(|d| !d.is_zero()),
        );
        Ok(id)
    }

    fn add_elements(&mut self, e: &Elements, ms: u64) -> Result<(), KernelError> {
        let mut b = Batch::new(self.sock.reserve_seq(8));
        elements::add_elements(&mut b, &self.layout, e, ms);
        match self.sock.transact(b, "add pinhole") {
            Err(err) if err.errno() == Some(ENFILE) => Err(KernelError::Full {
                max: self.layout.size,
            }),
            Err(err) if err.errno() == Some(EEXIST) => Err(KernelError::Refused {
                what: "add pinhole (already present)",
                errno: EEXIST,
                index: 0,
            }),
            r => r,
        }
    }

    /// Every live pinhole went with the table: they fail at the next poll.
    fn mark_all_lost(&mut self) {
        let ids = self.flows.clear();
        self.pending.extend(
            ids.into_iter()
                .map(|id| (id, FlowEvent::Failed(FailReason::TableLost))),
        );
    }

    /// Withdraws a pinhole and forgets it: an unused one admits nothing
    /// from now on; a connection it already admitted goes on, unfollowed
    /// (a relay's own connection, which the relay ends). Unknown ids
    /// (already finished) are not an error.
    pub fn remove(&mut self, id: PinholeId) -> Result<(), KernelError> {
        self.read_events();
        self.withdraw(id)?;
        self.flows.remove(id);
        Ok(())
    }

    /// Withdraws a pinhole whose session has let go of it: an unused one
    /// admits nothing from now on and is forgotten; a connection it
    /// admitted goes on, followed to its end (reported as `id`'s events),
    /// cut when idle past its bound and at [`close`](Self::close).
    pub fn detach(&mut self, id: PinholeId) -> Result<(), KernelError> {
        self.read_events();
        self.withdraw(id)?;
        match self.flows.get(id) {
            Some(l) if l.dialer.is_some() => self.flows.detach(id),
            _ => {
                self.flows.remove(id);
            }
        }
        Ok(())
    }

    /// Removes pinhole `id`'s elements from the table, if still there.
    fn withdraw(&mut self, id: PinholeId) -> Result<(), KernelError> {
        match self.flows.withdraw(id) {
            Some(e) => self.remove_elements(&e),
            None => Ok(()),
        }
    }

    /// Withdraws a pinhole and cuts the connection it admitted, if any
    /// (ABOR, a channel released while its transfer runs): its conntrack
    /// entry gets the cut mark, so the `cut` chain answers its next packet
    /// from either end with a reset, and the operator's accept line no
    /// longer lets anything of it through. Returns whether there was a
    /// connection to cut. A connection whose first packet is still on its
    /// way is cut as a stray when its entry appears.
    pub fn abort(&mut self, id: PinholeId) -> Result<bool, KernelError> {
        if self.flows.get(id).is_none() {
            return Ok(false);
        }
        // Learn the connection if the pinhole was used a moment ago.
        self.read_events();
        self.withdraw(id)?;
        let Some(l) = self.flows.remove(id) else {
            return Ok(false);
        };
        match l.dialer {
            Some(src) => self.cut_conn(src, *l.flow.gateway),
            None => Ok(false),
        }
    }

    fn cut_conn(&mut self, src: SocketAddr, dst: SocketAddr) -> Result<bool, KernelError> {
        conntrack::cut(&mut self.sock, src, dst, self.layout.cut, self.layout.mask)
    }

    fn remove_elements(&mut self, e: &Elements) -> Result<(), KernelError> {
        if self.destroy_supported != Some(false) {
            let mut b = Batch::new(self.sock.reserve_seq(8));
            elements::remove_elements(&mut b, &self.layout, e, elements::NFT_MSG_DESTROYSETELEM);
            match self.sock.transact(b, "remove pinhole") {
                Ok(()) => {
                    self.destroy_supported = Some(true);
                    return Ok(());
                }
                // Kernels before 6.3 do not know the message.
                Err(err)
                    if self.destroy_supported.is_none()
                        && matches!(err.errno(), Some(libc::EOPNOTSUPP | libc::EINVAL)) =>
                {
                    self.destroy_supported = Some(false);
                }
                Err(err) if err.errno() == Some(ENOENT) => return Ok(()), // table gone: nothing left
                Err(err) => return Err(err),
            }
        }
        let batches =
            elements::remove_elements_one_by_one(&self.layout, e, || self.sock.reserve_seq(4));
        for b in batches {
            match self.sock.transact(b, "remove pinhole element") {
                Err(err) if err.errno() == Some(ENOENT) => {}
                r => r?,
            }
        }
        Ok(())
    }

    /// Checks that the table still holds its rules; if someone deleted or
    /// flushed it, recreates it. Returns true if it had to.
    pub fn check_table(&mut self) -> Result<bool, KernelError> {
        let seq = self.sock.reserve_seq(1);
        let req = netlink::request(
            netlink::NFNL_SUBSYS_NFTABLES,
            ruleset::NFT_MSG_GETRULE,
            netlink::NLM_F_DUMP,
            seq,
            ruleset::NFPROTO_INET,
            |w| w.str(ruleset::NFTA_RULE_TABLE, &self.layout.table),
        );
        let table = self.layout.table.clone();
        let mut rules = 0usize;
        let r = self
            .sock
            .query(req.as_bytes(), seq, true, "list rules", |m| {
                // Older kernels ignore the table filter of a dump.
                if netlink::attr(m.attrs(), ruleset::NFTA_RULE_TABLE)
                    .is_some_and(|t| t.strip_suffix(&[0]).unwrap_or(t) == table.as_bytes())
                {
                    rules += 1;
                }
            });
        match r {
            Ok(()) if rules == ruleset::RULE_COUNT => return Ok(false),
            Ok(()) => {}
            Err(e) if e.errno() == Some(ENOENT) => {}
            Err(e) => return Err(e),
        }
        tracing::warn!(table = %self.table_label(), rules, "nftables table removed or flushed by someone else; recreating");
        self.create_table()?;
        self.mark_all_lost();
        Ok(true)
    }

    /// Checks the table (see [`check_table`](Self::check_table)), then
    /// reports what changed (see [`service`](Self::service)).
    pub fn poll(&mut self) -> Result<Vec<(PinholeId, FlowEvent)>, KernelError> {
        self.check_table()?;
        Ok(self.service(Instant::now()))
    }

    /// A pinhole already on `gateway` whose connection has ended is
    /// settled now (its events wait for the next poll), so a new one can
    /// take the address: a server may hand out the same passive port again
    /// as soon as its last transfer there ended, and in transparent mode
    /// that port is the pinhole's address. One still in use is kept, and
    /// the address refused.
    fn settle_for(&mut self, gateway: GatewayAddr) -> Result<(), KernelError> {
        if self.flows.holder_of(*gateway).is_none() {
            return Ok(());
        }
        self.read_events();
        let Some(old) = self.flows.holder_of(*gateway) else {
            return Ok(());
        };
        // Its close may be an event not yet sent: read the entry itself.
        if let Some(src) = self.flows.get(old).and_then(|l| l.dialer) {
            let entry = conntrack::get(&mut self.sock, src, *gateway)?;
            let now = Instant::now();
            let closed = match entry {
                Some(e) => self.flows.update(old, &e, now).closed,
                None => true,
            };
            if closed {
                self.end(old, now);
                return Ok(());
            }
        }
        Err(KernelError::PortInUse(*gateway))
    }

    /// Deletes the table and everything in it, and ends every connection
    /// still followed: its conntrack entry goes, so its next packets meet
    /// the gateway itself and no longer pass. Dropping does the same,
    /// ignoring errors.
    pub fn close(mut self) -> Result<(), KernelError> {
        self.delete_table()
    }

    fn delete_table(&mut self) -> Result<(), KernelError> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        let mut b = Batch::new(self.sock.reserve_seq(4));
        ruleset::delete(&mut b, &self.layout);
        let r = match self.sock.transact(b, "delete table") {
            Err(e) if e.errno() == Some(ENOENT) => Ok(()),
            r => r,
        };
        for id in self.flows.ids() {
            let Some(l) = self.flows.remove(id) else {
                continue;
            };
            if let Some(src) = l.dialer {
                if let Err(e) = conntrack::delete(&mut self.sock, src, *l.flow.gateway) {
                    tracing::warn!(error = %e, dialer = %src, "could not end a kernel transfer at close");
                }
            }
        }
        r
    }
}

impl Drop for KernelDataPlane {
    fn drop(&mut self) {
        if let Err(e) = self.delete_table() {
            tracing::warn!(error = %e, table = %self.table_label(), "could not delete nftables table at exit");
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests;

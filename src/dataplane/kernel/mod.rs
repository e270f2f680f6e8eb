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
mod expr;
mod netlink;
mod ruleset;
mod sets;
mod socket;
mod track;

pub use config::KernelConfig;
pub use error::KernelError;

use crate::dataplane::{FailReason, FlowEvent, GatewayAddr, PinholeFlow};
use elements::Elements;
use netlink::Batch;
use ruleset::Layout;
use socket::NfSocket;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;
use track::{step, Live};

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

/// ftpalg's pinholes in the kernel. See the module documentation.
#[derive(Debug)]
pub struct KernelDataPlane {
    sock: NfSocket,
    layout: Layout,
    live: HashMap<PinholeId, Live>,
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
        let layout = Layout {
            cut: config.cut_mark(),
            table: config.table,
            mark: config.mark,
            mask: config.mark_mask,
            size: config.max_pinholes,
            owner: config.owner,
        };
        let mut dp = KernelDataPlane {
            sock,
            layout,
            live: HashMap::new(),
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

    /// Number of live pinholes.
    pub fn live(&self) -> usize {
        self.live.len()
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
        if !flow.same_family() {
            return Err(KernelError::MixedFamilies);
        }
        self.settle_for(flow.gateway)?;
        let elements = Elements::of(flow);
        // Milliseconds, at least one: a zero timeout would mean "the set's
        // default" (none), a pinhole for ever.
        let ms = u64::try_from(flow.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, ruleset::USED_TIMEOUT_MS);
        match self.add_elements(&elements, ms) {
            Err(e) if e.errno() == Some(ENOENT) => {
                let lost = self.live.len();
                tracing::warn!(table = %self.table_label(), lost, "nftables table removed by someone else; recreating");
                self.create_table()?;
                self.mark_all_lost();
                self.add_elements(&elements, ms)?;
            }
            r => r?,
        }
        let id = PinholeId(self.next_id);
        self.next_id += 1;
        self.live.insert(
            id,
            Live::new(*flow, elements, Instant::now() + flow.timeout),
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
        let mut ids: Vec<PinholeId> = self.live.keys().copied().collect();
        ids.sort();
        self.live.clear();
        self.pending.extend(
            ids.into_iter()
                .map(|id| (id, FlowEvent::Failed(FailReason::TableLost))),
        );
    }

    /// Withdraws a pinhole: an unused one admits nothing from now on; a
    /// connection it already admitted goes on (see [`abort`](Self::abort)).
    /// Unknown ids (already finished) are not an error.
    pub fn remove(&mut self, id: PinholeId) -> Result<(), KernelError> {
        // A connection made since the last poll left a `used` element that
        // only its source port names: learn it, so it goes too.
        if self.live.get(&id).is_some_and(|l| l.dialer.is_none()) {
            if let Err(e) = self.read_used() {
                tracing::warn!(error = %e, "could not read the used pinholes before a removal");
            }
        }
        match self.live.remove(&id) {
            Some(l) => self.remove_elements(&l.elements),
            None => Ok(()),
        }
    }

    /// Withdraws a pinhole and cuts the connection it admitted, if any
    /// (ABOR, a channel released while its transfer runs): its conntrack
    /// entry gets the cut mark, so the `cut` chain answers its next packet
    /// from either end with a reset, and the operator's accept line no
    /// longer lets anything of it through. Returns whether there was a
    /// connection to cut.
    pub fn abort(&mut self, id: PinholeId) -> Result<bool, KernelError> {
        if !self.live.contains_key(&id) {
            return Ok(false);
        }
        // Learn the source port if the pinhole was used since the last poll.
        self.read_used()?;
        let Some(l) = self.live.remove(&id) else {
            return Ok(false);
        };
        self.remove_elements(&l.elements)?;
        match l.dialer {
            Some(src) => conntrack::cut(
                &mut self.sock,
                src,
                l.flow.gateway.0,
                self.layout.cut,
                self.layout.mask,
            ),
            None => Ok(false),
        }
    }

    /// Reads the `used` sets and notes each used pinhole's source port.
    fn read_used(&mut self) -> Result<(), KernelError> {
        for fam in [ruleset::Fam::V4, ruleset::Fam::V6] {
            if !self
                .live
                .values()
                .any(|l| l.dialer.is_none() && l.elements.fam == fam)
            {
                continue;
            }
            let seq = self.sock.reserve_seq(1);
            let req = elements::list_set(seq, &self.layout, ruleset::SetKind::Used, fam);
            let mut used = Vec::new();
            self.sock
                .query(req.as_bytes(), seq, true, "list used pinholes", |m| {
                    used.extend(
                        elements::element_keys(m.attrs())
                            .into_iter()
                            .filter_map(|k| elements::parse_used(fam, k)),
                    );
                })?;
            for (peer, gw, sport) in used {
                if let Some(l) = self
                    .live
                    .values_mut()
                    .find(|l| l.dialer.is_none() && l.flow.peer.0 == peer && l.flow.gateway.0 == gw)
                {
                    l.dialer = Some(SocketAddr::new(peer, sport));
                    l.elements.set_used(sport);
                }
            }
        }
        Ok(())
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

    /// Reads conntrack for every live pinhole and reports what changed:
    /// `Established` once, then one terminal event, after which the
    /// pinhole is gone (its remaining elements removed). Also checks the
    /// table (see [`check_table`](Self::check_table)). Call it every so
    /// often (the granularity of the reported durations).
    pub fn poll(&mut self) -> Result<Vec<(PinholeId, FlowEvent)>, KernelError> {
        self.check_table()?;
        let mut events = std::mem::take(&mut self.pending);
        if self.live.is_empty() {
            return Ok(events);
        }
        self.read_used()?;
        let now = Instant::now();
        let mut ids: Vec<PinholeId> = self.live.keys().copied().collect();
        ids.sort();
        for id in ids {
            self.poll_one(id, now, &mut events)?;
        }
        Ok(events)
    }

    /// Reads pinhole `id`'s connection now and adds its events to
    /// `events`; a pinhole that has ended leaves the table.
    fn poll_one(
        &mut self,
        id: PinholeId,
        now: Instant,
        events: &mut Vec<(PinholeId, FlowEvent)>,
    ) -> Result<(), KernelError> {
        let Some(dialer) = self.live.get(&id).map(|l| l.dialer) else {
            return Ok(());
        };
        let entry = match dialer {
            Some(src) => conntrack::get(&mut self.sock, src, self.live[&id].flow.gateway.0)?,
            None => None,
        };
        let Some(l) = self.live.get_mut(&id) else {
            return Ok(());
        };
        let mut ended = false;
        for ev in step(l, entry.as_ref(), now) {
            ended |= ev.is_terminal();
            events.push((id, ev));
        }
        if ended {
            if let Some(l) = self.live.remove(&id) {
                // The events stand even if this fails: what is left of the
                // pinhole expires with its timeout.
                if let Err(e) = self.remove_elements(&l.elements) {
                    tracing::warn!(error = %e, gateway = %l.flow.gateway, "could not remove a finished pinhole's elements");
                }
            }
        }
        Ok(())
    }

    /// A pinhole already on `gateway` whose connection has ended since the
    /// last poll is settled now (its events wait for the next poll), so a
    /// new one can take the address: a server may hand out the same
    /// passive port again as soon as its last transfer there ended, and in
    /// transparent mode that port is the pinhole's address. One still in
    /// use is kept, and the address refused.
    fn settle_for(&mut self, gateway: GatewayAddr) -> Result<(), KernelError> {
        let Some(old) = self
            .live
            .iter()
            .find(|(_, l)| l.flow.gateway == gateway)
            .map(|(id, _)| *id)
        else {
            return Ok(());
        };
        if self.live[&old].dialer.is_none() {
            self.read_used()?;
        }
        let mut events = Vec::new();
        self.poll_one(old, Instant::now(), &mut events)?;
        self.pending.extend(events);
        if self.live.contains_key(&old) {
            return Err(KernelError::PortInUse(gateway.0));
        }
        Ok(())
    }

    /// Deletes the table and everything in it. Dropping does the same,
    /// ignoring errors.
    pub fn close(mut self) -> Result<(), KernelError> {
        self.delete_table()
    }

    fn delete_table(&mut self) -> Result<(), KernelError> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        self.live.clear();
        let mut b = Batch::new(self.sock.reserve_seq(4));
        ruleset::delete(&mut b, &self.layout);
        match self.sock.transact(b, "delete table") {
            Err(e) if e.errno() == Some(ENOENT) => Ok(()),
            r => r,
        }
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

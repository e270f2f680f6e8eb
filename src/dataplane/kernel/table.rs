//! The table's life: opened (replacing a stale one), checked against
//! someone deleting or flushing it, and deleted at close with every
//! connection still followed.

use super::conntrack;
use super::events::CtEvents;
use super::netlink::{self, Batch};
use super::ruleset::{self, Layout};
use super::socket::NfSocket;
use super::track::Flows;
use super::{strangers, FlowEvent, KernelConfig, KernelError, KernelTable, OpenReport, PinholeId};
use super::{ENOENT, EPERM};
use std::time::Instant;

impl KernelTable {
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
        let mut dp = KernelTable {
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

    pub(super) fn table_label(&self) -> String {
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

    pub(super) fn create_table(&mut self) -> Result<(), KernelError> {
        let mut b = Batch::new(self.sock.reserve_seq(64));
        ruleset::create(&mut b, &self.layout);
        match self.sock.transact(b, "create table") {
            Err(e) if e.errno() == Some(EPERM) => Err(KernelError::TableBusy {
                table: self.table_label(),
            }),
            r => r,
        }
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

impl Drop for KernelTable {
    fn drop(&mut self) {
        if let Err(e) = self.delete_table() {
            tracing::warn!(error = %e, table = %self.table_label(), "could not delete nftables table at exit");
        }
    }
}

//! Adding and withdrawing pinholes: one nf_tables transaction each, the
//! table recreated if someone deleted it, and an address a pinhole whose
//! connection has ended still holds handed to the next one at once.

use super::conntrack;
use super::elements::{self, Elements};
use super::netlink::Batch;
use super::{FailReason, FlowEvent, KernelError, KernelTable, PinholeId, Terms};
use super::{EEXIST, ENFILE, ENOENT, MAX_PINHOLE_MS};
use crate::dataplane::{GatewayAddr, PinholeFlow};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

impl KernelTable {
    /// Puts a pinhole into the kernel. On success it admits the flow's
    /// first connection until its timeout; on error nothing was added.
    /// If the table was deleted by someone else, it is recreated, the
    /// pinhole added, and the loss is logged (pinholes it held fail at the
    /// next [`poll`](Self::poll)).
    pub fn add(&mut self, flow: &PinholeFlow) -> Result<PinholeId, KernelError> {
        self.add_with(flow, Terms::default())
    }

    /// [`add`](Self::add), and once its connection is established, cut it
    /// after `idle` without a byte in either direction
    /// ([`FailReason::Idle`]).
    pub fn add_limited(
        &mut self,
        flow: &PinholeFlow,
        idle: Option<Duration>,
    ) -> Result<PinholeId, KernelError> {
        self.add_with(
            flow,
            Terms {
                idle,
                ..Terms::default()
            },
        )
    }

    /// [`add`](Self::add) under `terms`: for its owner, with its idle
    /// bound, and what releasing it is to do.
    pub fn add_with(&mut self, flow: &PinholeFlow, terms: Terms) -> Result<PinholeId, KernelError> {
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
        let terms = Terms {
            idle: terms.idle.filter(|d| !d.is_zero()),
            ..terms
        };
        self.flows
            .insert(id, *flow, elements, Instant::now(), terms);
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
    pub(super) fn mark_all_lost(&mut self) {
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
    pub(super) fn withdraw(&mut self, id: PinholeId) -> Result<(), KernelError> {
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

    pub(super) fn cut_conn(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Result<bool, KernelError> {
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
}

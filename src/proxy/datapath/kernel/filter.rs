//! A mode conversion on the kernel data plane stays on the relay, behind a
//! kernel filter pinhole: only the expected peer's connection to the
//! relay's listener is marked (the operator's accept line lets it in),
//! every other new connection to that port is dropped in the kernel. A
//! wrapper around any path whose sides are listeners on the gateway: the
//! listener is reported once its filter is in (or refused; the path still
//! checks its peer itself, and only a default-drop input chain would keep
//! the peer out, which the warning says).

use super::allow::{allow_data_connection, DataConnection};
use super::requests::KernelPinhole;
use super::session::KernelSession;
use crate::dataplane::kernel::Withdraw;
use crate::ftp::session::{Endpoint, Side};
use crate::proxy::datapath::{
    Carriage, Context, Cutting, Leave, PathEvent, Preparing, Reports, Start, TransferPath,
};
use tokio::sync::oneshot;
use tracing::warn;

/// A path behind the kernel's filter pinholes. Its filters are withdrawn
/// with it; the connections they let in are the path's to end.
pub(crate) struct Filtered {
    inner: Box<dyn TransferPath>,
    kernel: KernelSession,
    reports: Reports,
    /// The filters, as the kernel thread hands them over.
    filters: Vec<oneshot::Receiver<KernelPinhole>>,
}

impl Filtered {
    /// `inner`, behind filters of `kernel`'s session where a listener gets
    /// one.
    pub(crate) fn new(
        inner: Box<dyn TransferPath>,
        kernel: KernelSession,
        reports: Reports,
    ) -> Filtered {
        Filtered {
            inner,
            kernel,
            reports,
            filters: Vec::new(),
        }
    }
}

impl TransferPath for Filtered {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn carriage(&self) -> Carriage {
        self.inner.carriage()
    }

    fn takes(&self, endpoint: &Endpoint) -> bool {
        self.inner.takes(endpoint)
    }

    /// Prepares the side on the inner path; a listener that is to get a
    /// filter is reported once the kernel thread answered.
    fn prepare(&mut self, side: Side, endpoint: Endpoint, at: &Context<'_>) -> Preparing {
        let expect_peer = match endpoint {
            Endpoint::Listen { expect_peer } => Some(expect_peer),
            _ => None,
        };
        let prepared = self.inner.prepare(side, endpoint, at);
        let (Some(expect_peer), Preparing::Ready(local)) = (expect_peer, &prepared) else {
            return prepared;
        };
        let local = *local;
        let conn = DataConnection::RelayListener {
            side,
            expect_peer,
            local,
        };
        let flow = match allow_data_connection(conn, at, |_, _| {
            Err(std::io::Error::other("a relay listener has its port"))
        }) {
            Ok(Some(flow)) => flow,
            _ => return prepared,
        };
        let (hand, filter) = oneshot::channel();
        self.filters.push(filter);
        let kernel = self.kernel.clone();
        let reports = self.reports.clone();
        let channel = reports.channel();
        tokio::spawn(async move {
            // The relay reports on its own connection; the filter's events
            // only end it.
            let result = kernel
                .add(channel, flow, None, Withdraw::Forget, Box::new(|_| {}))
                .await;
            match result {
                // A channel closed meanwhile drops the filter, which
                // withdraws it, and hears nothing.
                Ok(p) => {
                    if hand.send(p).is_err() {
                        return;
                    }
                }
                Err(_) if hand.is_closed() => return,
                Err(reason) => {
                    warn!(session = kernel.id(), channel = channel.0, side = crate::proxy::plain::side(side), %local, reason = %reason, "no kernel filter for this relay pinhole; a default-drop input chain will not let its peer in");
                }
            }
            reports.send(PathEvent::Prepared { side, at: local });
        });
        Preparing::Pending
    }

    fn ready(&mut self) -> bool {
        self.inner.ready()
    }

    fn start(&mut self, start: Start<'_>) {
        self.inner.start(start)
    }

    fn running(&self) -> bool {
        self.inner.running()
    }

    fn cut(&mut self) -> Cutting<'_> {
        self.inner.cut()
    }

    fn leave_to_finish(&mut self, why: Leave) {
        self.inner.leave_to_finish(why)
    }

    fn ended(&mut self) {
        self.inner.ended()
    }
}

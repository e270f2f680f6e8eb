//! A transfer the kernel forwards ([`Endpoint::Forward`]): the data
//! connection's kernel rule is decided (`allow.rs`), a gateway port
//! reserved for it, the pinhole asked of the kernel thread, and its
//! events turned into what any path reports: the transfer's end with its
//! counts (as the peers see them: up is client to server), or why it
//! failed.
//!
//! [`Endpoint::Forward`]: crate::ftp::session::Endpoint::Forward

use super::allow::{allow_data_connection, DataConnection};
use super::requests::{KernelPinhole, OnEvent};
use super::reservation::PortReservation;
use super::session::KernelSession;
use crate::dataplane::kernel::{FailReason, FlowEvent, Withdraw};
use crate::ftp::session::{Endpoint, Side};
use crate::proxy::datapath::{
    Carriage, Context, Cutting, Leave, Moved, PathEvent, Preparing, Reason, Reports, Start,
    TransferPath,
};
use std::fmt;
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

/// Longest a cut holds up the control connection: a netlink round trip
/// takes well under a millisecond, but the kernel thread may be reading
/// conntrack when asked.
const CUT_WITHIN: Duration = Duration::from_millis(500);

/// What the kernel granted a channel: its pinhole, and the gateway port
/// reserved for it (none when the peer dials the server's own address).
struct Granted {
    pinhole: KernelPinhole,
    _port: Option<PortReservation>,
}

/// A channel the kernel forwards. Dropping it releases its pinhole: its
/// connection is cut, unless it was left to finish.
pub(crate) struct KernelPath {
    kernel: KernelSession,
    reports: Reports,
    /// The kernel thread's answer, until taken.
    answer: Option<oneshot::Receiver<Granted>>,
    granted: Option<Granted>,
    started: bool,
    left: bool,
    /// Kept until the channel goes (the gauge of open channels).
    keep: Option<Box<dyn Send>>,
}

/// Why a forwarded transfer failed, in the kernel's words.
#[derive(Debug)]
enum KernelFailure {
    /// Nobody allowed dialed before the pinhole's deadline.
    Expired,
    /// The pinhole's connection did not carry the transfer.
    Failed(FailReason),
}

impl fmt::Display for KernelFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelFailure::Expired => {
                f.write_str("no connection through the kernel pinhole in time")
            }
            KernelFailure::Failed(r) => write!(f, "kernel pinhole failed: {r}"),
        }
    }
}

/// Turns one pinhole's events into the session's reports; runs on the
/// kernel thread. Conntrack counts from the dialer's side; the session
/// counts from the client's: up is client to server.
fn on_event(session: u64, reports: Reports, client_dials: bool) -> OnEvent {
    let channel = reports.channel().0;
    Box::new(move |event| {
        let ended = |result| {
            reports.send(PathEvent::Ended {
                result,
                elapsed: None,
            })
        };
        match event {
            FlowEvent::Established { dialer } => {
                debug!(session, channel, %dialer, "kernel transfer established");
            }
            FlowEvent::Finished { counts, duration } => {
                let (up, down) = if client_dials {
                    (counts.from_dialer, counts.to_dialer)
                } else {
                    (counts.to_dialer, counts.from_dialer)
                };
                reports.send(PathEvent::Ended {
                    result: Ok(Moved { up, down }),
                    elapsed: Some(duration),
                });
            }
            FlowEvent::Expired => ended(Err(Reason::new(KernelFailure::Expired))),
            FlowEvent::Failed(r) => ended(Err(Reason::new(KernelFailure::Failed(r)))),
        }
    })
}

impl KernelPath {
    /// A forwarded channel of `kernel`'s session, reporting through
    /// `reports`.
    pub(crate) fn new(kernel: KernelSession, reports: Reports) -> KernelPath {
        KernelPath {
            kernel,
            reports,
            answer: None,
            granted: None,
            started: false,
            left: false,
            keep: None,
        }
    }

    /// Takes the kernel thread's answer if it has come.
    fn settle(&mut self) {
        if let Some(rx) = self.answer.as_mut() {
            match rx.try_recv() {
                Ok(g) => {
                    self.granted = Some(g);
                    self.answer = None;
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
                Err(oneshot::error::TryRecvError::Closed) => self.answer = None,
            }
        }
    }
}

impl TransferPath for KernelPath {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn carriage(&self) -> Carriage {
        Carriage::Beside
    }

    fn takes(&self, endpoint: &Endpoint) -> bool {
        matches!(endpoint, Endpoint::Forward { .. })
    }

    /// Asks the kernel to forward the channel's one connection; the answer
    /// comes as a report (the address the peer is to dial), or a failure
    /// (the engine then relays).
    fn prepare(&mut self, side: Side, endpoint: Endpoint, at: &Context<'_>) -> Preparing {
        let Endpoint::Forward {
            expect_peer,
            to,
            exact,
        } = endpoint
        else {
            return Preparing::Failed(Reason::new("the kernel forwards only"));
        };
        let mut port = None;
        let conn = DataConnection::Forward {
            side,
            expect_peer,
            to,
            exact,
        };
        let flow = match allow_data_connection(conn, at, |bind, range| {
            let r = PortReservation::take(bind, range)?;
            let addr = r.addr();
            port = Some(r);
            Ok(addr)
        }) {
            Ok(Some(flow)) => flow,
            Ok(None) => {
                return Preparing::Failed(Reason::new("no kernel rule for this connection"))
            }
            Err(reason) => return Preparing::Failed(Reason::new(reason)),
        };
        let (grant, answer) = oneshot::channel();
        self.answer = Some(answer);
        let kernel = self.kernel.clone();
        let reports = self.reports.clone();
        let session = kernel.id();
        let channel = reports.channel();
        let events = on_event(session, reports.clone(), side == Side::Client);
        let idle = Some(at.rules.limits.transfer_idle_timeout);
        tokio::spawn(async move {
            let result = kernel.add(channel, flow, idle, Withdraw::Cut, events).await;
            debug!(
                session,
                channel = channel.0,
                ?flow,
                ok = result.is_ok(),
                "kernel pinhole"
            );
            match result {
                Ok(pinhole) => {
                    let granted = Granted {
                        pinhole,
                        _port: port,
                    };
                    // A channel closed meanwhile drops the grant, which
                    // releases the pinhole.
                    if grant.send(granted).is_ok() {
                        reports.send(PathEvent::Prepared {
                            side,
                            at: *flow.gateway(),
                        });
                    }
                }
                Err(reason) => {
                    warn!(session, channel = channel.0, reason = %reason, "kernel pinhole refused");
                    reports.send(PathEvent::NotPrepared {
                        side,
                        reason: Reason::new(reason),
                    });
                }
            }
        });
        Preparing::Pending
    }

    fn ready(&mut self) -> bool {
        self.settle();
        self.granted.is_some()
    }

    /// Nothing to copy, only to watch: the bytes go from peer to peer in
    /// the kernel.
    fn start(&mut self, start: Start<'_>) {
        self.keep = Some(start.keep);
        self.started = true;
    }

    fn running(&self) -> bool {
        self.started && !self.left
    }

    /// Withdraws the pinhole and cuts its connection, waiting (at most
    /// [`CUT_WITHIN`]) until the kernel has it.
    fn cut(&mut self) -> Cutting<'_> {
        self.settle();
        Box::pin(async move {
            if let Some(g) = self.granted.as_mut() {
                g.pinhole.cut(CUT_WITHIN).await;
            }
        })
    }

    /// Its connection goes on in the kernel once released: the kernel
    /// thread follows it to its end, logs it, and cuts it if it idles past
    /// its bound or the gateway stops. Only its pinhole is withdrawn.
    fn leave_to_finish(&mut self, why: Leave) {
        self.settle();
        self.left = true;
        if let Some(g) = &self.granted {
            g.pinhole.leave();
        }
        let (session, channel) = (self.kernel.id(), self.reports.channel().0);
        match why {
            Leave::Closed(reason) => info!(
                session,
                channel, reason, "kernel transfer left to finish in the kernel"
            ),
            Leave::SessionEnded => debug!(
                session,
                channel, "kernel transfer left to finish after its session"
            ),
        }
    }

    fn ended(&mut self) {
        self.settle();
        if let Some(g) = self.granted.as_mut() {
            g.pinhole.ended();
        }
    }
}

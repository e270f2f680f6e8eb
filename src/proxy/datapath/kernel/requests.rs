//! What the kernel thread is asked, and the handle a pinhole's holder
//! keeps, whose drop is a request too.

use crate::dataplane::kernel::{FlowEvent, KernelError, PinholeId, Terms};
use crate::dataplane::PinholeFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Receives one pinhole's events on the kernel thread; it must not block.
pub(crate) type OnEvent = Box<dyn Fn(FlowEvent) + Send>;

/// A request to the kernel thread.
pub(super) enum Cmd {
    /// Add a pinhole under `terms`, unless its session has ended or nobody
    /// waits for the answer any more.
    Add {
        flow: PinholeFlow,
        terms: Terms,
        on_event: OnEvent,
        /// Whether its session still runs (see [`KernelSession`]).
        ///
        /// [`KernelSession`]: super::KernelSession
        open: Arc<AtomicBool>,
        reply: oneshot::Sender<Result<KernelPinhole, KernelError>>,
        /// Past this, nobody waits for the answer: the request is dropped.
        answer_by: Instant,
    },
    /// Its holder let go of a pinhole: release it as its terms say.
    Release {
        id: PinholeId,
    },
    /// A pinhole's connection is to go on when it is released.
    Leave {
        id: PinholeId,
    },
    /// Withdraw a pinhole and cut its connection; `done` hears when the
    /// kernel has it.
    Cut {
        id: PinholeId,
        done: oneshot::Sender<()>,
    },
    /// A session ended: release everything it holds.
    EndSession {
        session: u64,
    },
    Close {
        done: std_mpsc::Sender<()>,
    },
}

/// A live pinhole, as its holder keeps it. Dropping it releases the
/// pinhole as the terms it was added under say (by default its connection
/// is cut): however a holder lets go, nothing of it stays in the kernel
/// unfollowed. Once its session has ended, the session's end released it
/// already and dropping it asks nothing more.
pub(crate) struct KernelPinhole {
    pub(super) id: PinholeId,
    pub(super) tx: std_mpsc::Sender<Cmd>,
    /// Still the holder's to release (not ended, not cut).
    pub(super) armed: bool,
    /// Whether its session still runs.
    pub(super) open: Arc<AtomicBool>,
}

impl KernelPinhole {
    /// The kernel has forgotten it (it reported its end): dropping it
    /// does nothing.
    pub(crate) fn ended(&mut self) {
        self.armed = false;
    }

    /// Its connection is to go on when it is released: the kernel thread
    /// follows it to its end, logs it, and cuts it if it idles past its
    /// bound or the gateway stops.
    pub(crate) fn leave(&self) {
        if self.armed {
            let _ = self.tx.send(Cmd::Leave { id: self.id });
        }
    }

    /// Withdraws it and cuts its connection, returning once the kernel has
    /// the change, or after `within`: what the caller does next (forward
    /// `ABOR` to the server, which may close its end at once) must meet
    /// the cut, not race it. Dropping it later does nothing more.
    pub(crate) async fn cut(&mut self, within: Duration) {
        if !std::mem::take(&mut self.armed) {
            return;
        }
        let (done, cut) = oneshot::channel();
        if self.tx.send(Cmd::Cut { id: self.id, done }).is_ok() {
            let _ = tokio::time::timeout(within, cut).await;
        }
    }
}

impl std::fmt::Debug for KernelPinhole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelPinhole")
            .field("id", &self.id)
            .field("armed", &self.armed)
            .finish()
    }
}

impl Drop for KernelPinhole {
    fn drop(&mut self) {
        if self.armed && self.open.load(Ordering::SeqCst) {
            let _ = self.tx.send(Cmd::Release { id: self.id });
        }
    }
}

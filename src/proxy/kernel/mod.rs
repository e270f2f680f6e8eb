//! The kernel data plane as the tokio driver uses it: one dedicated thread
//! owns ftpalg's nftables table ([`KernelTable`], a blocking API) and
//! serves the sessions' requests from a queue, so no runtime worker ever
//! waits for netlink. The thread also follows the pinholes' connections
//! (conntrack events) and hands each pinhole's [`FlowEvent`]s to the
//! session that asked for it.
//!
//! Each turn of the thread takes every request queued, then every event,
//! so no request waits behind more than one turn's work, whatever the
//! number of transfers live. A request carries the moment its answer is
//! no longer wanted, and one taken later is refused unheard. An added
//! pinhole reaches its session as a [`KernelPinhole`], whose drop
//! withdraws it: an answer nobody takes (the session stopped waiting, or
//! ended) leaves nothing in the kernel.
//!
//! The table lives as long as the thread: created when the gateway starts,
//! deleted by [`KernelThread::close`] at shutdown (and by the kernel if the
//! process dies, the table being owned by the thread's netlink socket),
//! and every connection still followed then is ended with it.

use crate::dataplane::kernel::FlowEvent;
use crate::dataplane::kernel::{KernelConfig, KernelError, KernelTable, PinholeId};
use crate::dataplane::PinholeFlow;
use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::warn;

/// Longest wait for the thread's answer: every call it makes is bounded by
/// the netlink timeout; this leaves room for a few in a row.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Receives one pinhole's events on the kernel thread; it must not block.
pub(crate) type OnEvent = Box<dyn Fn(FlowEvent) + Send>;

/// What becomes of a pinhole withdrawn by its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Withdraw {
    /// Forget it; a connection it admitted is someone else's (a relay's).
    Forget,
    /// Its connection goes on, followed to its end by the thread (logged,
    /// cut when idle past its bound and at shutdown).
    Detach,
    /// Its connection is cut.
    Cut,
}

mod serve;
#[cfg(test)]
mod tests;

use serve::serve;

enum Cmd {
    Add {
        flow: PinholeFlow,
        idle: Option<Duration>,
        on_event: OnEvent,
        reply: oneshot::Sender<Result<KernelPinhole, KernelError>>,
        /// Past this, nobody waits for the answer: the request is dropped.
        answer_by: Instant,
    },
    /// Withdraw a pinhole. `done` hears when the kernel has it.
    Remove {
        id: PinholeId,
        how: Withdraw,
        done: Option<oneshot::Sender<()>>,
    },
    Close {
        done: std_mpsc::Sender<()>,
    },
}

/// A live pinhole, as its session holds it. Dropping it withdraws the
/// pinhole as [`set_on_drop`](Self::set_on_drop) says (by default its
/// connection is cut): however a session lets go, nothing of it stays in
/// the kernel unfollowed.
pub(crate) struct KernelPinhole {
    id: PinholeId,
    tx: std_mpsc::Sender<Cmd>,
    on_drop: Option<Withdraw>,
}

impl KernelPinhole {
    /// What dropping it does.
    pub(crate) fn set_on_drop(&mut self, how: Withdraw) {
        if self.on_drop.is_some() {
            self.on_drop = Some(how);
        }
    }

    /// The kernel has forgotten it (it reported its end): dropping it
    /// does nothing.
    pub(crate) fn ended(&mut self) {
        self.on_drop = None;
    }

    /// Withdraws it and cuts its connection, returning once the kernel has
    /// the change, or after `within`: what the caller does next (forward
    /// `ABOR` to the server, which may close its end at once) must meet
    /// the cut, not race it. Dropping it later does nothing more.
    pub(crate) async fn cut(&mut self, within: Duration) {
        if self.on_drop.take().is_none() {
            return;
        }
        let (done, cut) = oneshot::channel();
        if self
            .tx
            .send(Cmd::Remove {
                id: self.id,
                how: Withdraw::Cut,
                done: Some(done),
            })
            .is_ok()
        {
            let _ = tokio::time::timeout(within, cut).await;
        }
    }
}

impl std::fmt::Debug for KernelPinhole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelPinhole")
            .field("id", &self.id)
            .field("on_drop", &self.on_drop)
            .finish()
    }
}

impl Drop for KernelPinhole {
    fn drop(&mut self) {
        if let Some(how) = self.on_drop.take() {
            let _ = self.tx.send(Cmd::Remove {
                id: self.id,
                how,
                done: None,
            });
        }
    }
}

/// The gateway's handle on the kernel thread, which owns the
/// [`KernelTable`].
pub(crate) struct KernelThread {
    tx: Mutex<Option<std_mpsc::Sender<Cmd>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The line the operator's default-drop chains need.
    pub accept_rule: String,
    /// The table's name in the `inet` family.
    pub table: String,
}

impl std::fmt::Debug for KernelThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelThread")
            .field("table", &self.table)
            .finish()
    }
}

impl KernelThread {
    /// Starts the thread and opens the table in this process's network
    /// namespace (replacing a stale one); fails if ftpalg may not manage
    /// nftables here.
    pub(crate) fn start(config: KernelConfig) -> Result<KernelThread, KernelError> {
        let accept_rule = config.accept_rule();
        let table = config.table.clone();
        let (tx, rx) = std_mpsc::channel::<Cmd>();
        let (opened_tx, opened_rx) = std_mpsc::channel();
        let own = tx.clone();
        let thread = std::thread::Builder::new()
            .name("ftpalg-kernel".into())
            .spawn(move || match KernelTable::open(config) {
                Ok((dp, report)) => {
                    let _ = opened_tx.send(Ok(report));
                    serve(dp, rx, own);
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })
            .map_err(KernelError::Io)?;
        match opened_rx.recv_timeout(ANSWER_WITHIN) {
            Ok(Ok(_report)) => Ok(KernelThread {
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                accept_rule,
                table,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(KernelError::Timeout {
                what: "open table",
                after: ANSWER_WITHIN,
            }),
        }
    }

    fn send(&self, cmd: Cmd) -> bool {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.as_ref().is_some_and(|t| t.send(cmd).is_ok())
    }

    /// Puts `flow` into the kernel; `on_event` hears of it from then on,
    /// until its terminal event. Once established, its connection is cut
    /// after `idle` without a byte moving. Waits at most `within` for the
    /// answer; an answer that comes later is withdrawn by the thread.
    pub(crate) async fn add(
        &self,
        flow: PinholeFlow,
        idle: Option<Duration>,
        on_event: OnEvent,
        within: Duration,
    ) -> Result<KernelPinhole, String> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Cmd::Add {
            flow,
            idle,
            on_event,
            reply,
            answer_by: Instant::now() + within,
        }) {
            return Err("the kernel data plane has stopped".into());
        }
        match tokio::time::timeout(within, answer).await {
            Ok(Ok(r)) => r.map_err(|e| e.to_string()),
            Ok(Err(_)) => Err("the kernel data plane has stopped".into()),
            Err(_) => Err(format!(
                "no answer from the kernel data plane within {within:?}"
            )),
        }
    }

    /// Deletes the table, ends every connection it still follows, and
    /// stops the thread; waits at most [`ANSWER_WITHIN`]. Later calls do
    /// nothing.
    pub(crate) fn close(&self) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(tx) = tx else { return };
        let (done, closed) = std_mpsc::channel();
        if tx.send(Cmd::Close { done }).is_ok() && closed.recv_timeout(ANSWER_WITHIN).is_err() {
            warn!(table = %self.table, "the kernel data plane did not stop in time");
            return;
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Drop for KernelThread {
    fn drop(&mut self) {
        self.close();
    }
}

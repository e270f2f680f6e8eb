//! The kernel thread: one dedicated thread owns ftpalg's nftables table
//! ([`KernelTable`], a blocking API) and serves the sessions' requests from
//! a queue, so no runtime worker ever waits for netlink. It also follows
//! the pinholes' connections (conntrack events) and hands each pinhole's
//! [`FlowEvent`]s to whoever asked for it.
//!
//! Each turn of the thread takes every request queued, then every event,
//! so no request waits behind more than one turn's work, whatever the
//! number of transfers live. A request carries the moment its answer is
//! no longer wanted, and one taken later is refused unheard. An added
//! pinhole reaches its asker as a [`KernelPinhole`], whose drop releases
//! it: an answer nobody takes (the session stopped waiting, or ended)
//! leaves nothing in the kernel.
//!
//! The table lives as long as the thread: created when the gateway starts,
//! deleted by [`KernelThread::close`] at shutdown (and by the kernel if the
//! process dies, the table being owned by the thread's netlink socket),
//! and every connection still followed then is ended with it.

use super::requests::{Cmd, KernelPinhole, OnEvent};
use super::serve::{serve, Server};
use crate::dataplane::kernel::Terms;
use crate::dataplane::kernel::{KernelConfig, KernelError, KernelTable};
use crate::dataplane::PinholeFlow;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::warn;

/// Longest wait for the thread's answer: every call it makes is bounded by
/// the netlink timeout; this leaves room for a few in a row.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The gateway's handle on the kernel thread, which owns the
/// [`KernelTable`].
pub(crate) struct KernelThread {
    tx: Mutex<Option<std_mpsc::Sender<Cmd>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The line the operator's default-drop chains need.
    pub accept_rule: String,
    /// The table's name in the `inet` family.
    pub table: String,
    /// Requests the thread has taken, for the tests.
    #[cfg(test)]
    pub(super) served: Arc<std::sync::atomic::AtomicU64>,
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
        #[cfg(test)]
        let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
        #[cfg(test)]
        let counter = served.clone();
        let thread = std::thread::Builder::new()
            .name("ftpalg-kernel".into())
            .spawn(move || match KernelTable::open(config) {
                Ok((table, report)) => {
                    let _ = opened_tx.send(Ok(report));
                    #[cfg_attr(not(test), allow(unused_mut))]
                    let mut server = Server::new(table, own);
                    #[cfg(test)]
                    {
                        server.served = counter;
                    }
                    serve(server, rx);
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
                #[cfg(test)]
                served,
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

    /// Queues `cmd`; false once the thread has stopped.
    pub(super) fn send(&self, cmd: Cmd) -> bool {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.as_ref().is_some_and(|t| t.send(cmd).is_ok())
    }

    /// Puts `flow` into the kernel under `terms`; `on_event` hears of it
    /// from then on, until its terminal event. Nothing is added once
    /// `open` is false (its session has ended). Waits at most `within` for
    /// the answer; an answer that comes later is released by the thread.
    pub(super) async fn add(
        &self,
        flow: PinholeFlow,
        terms: Terms,
        on_event: OnEvent,
        open: Arc<AtomicBool>,
        within: Duration,
    ) -> Result<KernelPinhole, String> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Cmd::Add {
            flow,
            terms,
            on_event,
            open,
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

//! The kernel data plane as the tokio driver uses it: one dedicated thread
//! owns ftpalg's nftables table ([`KernelDataPlane`], a blocking API) and
//! serves the sessions' requests from a queue, so no runtime worker ever
//! waits for netlink. The thread also polls conntrack while pinholes live
//! and hands each pinhole's [`FlowEvent`]s to the session that asked for it.
//!
//! The table lives as long as the thread: created when the gateway starts,
//! deleted by [`KernelPlane::close`] at shutdown (and by the kernel if the
//! process dies, the table being owned by the thread's netlink socket).

use crate::dataplane::kernel::{KernelConfig, KernelDataPlane, KernelError, PinholeId};
use crate::dataplane::{FlowEvent, PinholeFlow};
use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::warn;

/// How often conntrack is read while pinholes live: the granularity of a
/// kernel transfer's duration, and how late its end is noticed.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// How often the table is checked while no pinhole lives, so a table
/// someone deleted is back before the next transfer needs it.
const CHECK_IDLE_EVERY: Duration = Duration::from_secs(5);

/// Longest wait for the thread's answer: every call it makes is bounded by
/// the netlink timeout; this leaves room for a few in a row.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Receives one pinhole's events on the kernel thread; it must not block.
pub(crate) type OnEvent = Box<dyn Fn(FlowEvent) + Send>;

enum Cmd {
    Add {
        flow: PinholeFlow,
        on_event: OnEvent,
        reply: oneshot::Sender<Result<PinholeId, KernelError>>,
    },
    /// Withdraw a pinhole; with `cut`, also end the connection it admitted.
    /// `done` hears when the kernel has it.
    Remove {
        id: PinholeId,
        cut: bool,
        done: Option<oneshot::Sender<()>>,
    },
    Close {
        done: std_mpsc::Sender<()>,
    },
}

/// The gateway's handle on its kernel data plane.
pub(crate) struct KernelPlane {
    tx: Mutex<Option<std_mpsc::Sender<Cmd>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The line the operator's default-drop chains need.
    pub accept_rule: String,
    /// The table's name in the `inet` family.
    pub table: String,
}

impl std::fmt::Debug for KernelPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelPlane")
            .field("table", &self.table)
            .finish()
    }
}

impl KernelPlane {
    /// Starts the thread and opens the table in this process's network
    /// namespace (replacing a stale one); fails if ftpalg may not manage
    /// nftables here.
    pub(crate) fn start(config: KernelConfig) -> Result<KernelPlane, KernelError> {
        let accept_rule = config.accept_rule();
        let table = config.table.clone();
        let (tx, rx) = std_mpsc::channel::<Cmd>();
        let (opened_tx, opened_rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ftpalg-kernel".into())
            .spawn(move || match KernelDataPlane::open(config) {
                Ok((dp, report)) => {
                    let _ = opened_tx.send(Ok(report));
                    serve(dp, rx);
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })
            .map_err(KernelError::Io)?;
        match opened_rx.recv_timeout(ANSWER_WITHIN) {
            Ok(Ok(_report)) => Ok(KernelPlane {
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
    /// until its terminal event.
    pub(crate) async fn add(
        &self,
        flow: PinholeFlow,
        on_event: OnEvent,
    ) -> Result<PinholeId, String> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Cmd::Add {
            flow,
            on_event,
            reply,
        }) {
            return Err("the kernel data plane has stopped".into());
        }
        match tokio::time::timeout(ANSWER_WITHIN, answer).await {
            Ok(Ok(r)) => r.map_err(|e| e.to_string()),
            Ok(Err(_)) => Err("the kernel data plane has stopped".into()),
            Err(_) => Err(format!(
                "no answer from the kernel data plane within {ANSWER_WITHIN:?}"
            )),
        }
    }

    /// Withdraws pinhole `id`; with `cut`, the connection it admitted is
    /// ended too. Does not wait.
    pub(crate) fn remove(&self, id: PinholeId, cut: bool) {
        self.send(Cmd::Remove {
            id,
            cut,
            done: None,
        });
    }

    /// Withdraws pinhole `id` and ends the connection it admitted, and
    /// returns once the kernel has the change, or after `within`: what the
    /// caller does next (forward `ABOR` to the server, which may close its
    /// end at once) must meet the cut, not race it.
    pub(crate) async fn cut(&self, id: PinholeId, within: Duration) {
        let (done, cut) = oneshot::channel();
        if self.send(Cmd::Remove {
            id,
            cut: true,
            done: Some(done),
        }) {
            let _ = tokio::time::timeout(within, cut).await;
        }
    }

    /// Deletes the table and stops the thread; waits at most
    /// [`ANSWER_WITHIN`]. Later calls do nothing.
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

impl Drop for KernelPlane {
    fn drop(&mut self) {
        self.close();
    }
}

/// The kernel thread: requests in, events out, until closed or every
/// sender is gone; the table goes with `dp`.
fn serve(mut dp: KernelDataPlane, rx: std_mpsc::Receiver<Cmd>) {
    let mut watchers: HashMap<PinholeId, OnEvent> = HashMap::new();
    let mut last_poll = Instant::now();
    loop {
        let every = if watchers.is_empty() {
            CHECK_IDLE_EVERY
        } else {
            POLL_EVERY
        };
        let wait = every.saturating_sub(last_poll.elapsed());
        match rx.recv_timeout(wait) {
            Ok(Cmd::Add {
                flow,
                on_event,
                reply,
            }) => {
                let r = dp.add(&flow);
                if let Ok(id) = &r {
                    watchers.insert(*id, on_event);
                }
                let _ = reply.send(r);
            }
            Ok(Cmd::Remove { id, cut, done }) => {
                watchers.remove(&id);
                let r = if cut {
                    dp.abort(id).map(|_| ())
                } else {
                    dp.remove(id)
                };
                if let Err(e) = r {
                    warn!(error = %e, "could not withdraw a kernel pinhole; it expires with its timeout");
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Ok(Cmd::Close { done }) => {
                drop(watchers);
                if let Err(e) = dp.close() {
                    warn!(error = %e, "could not delete the kernel data plane's table");
                }
                let _ = done.send(());
                return;
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if last_poll.elapsed() < every {
            continue;
        }
        last_poll = Instant::now();
        match dp.poll() {
            Ok(events) => {
                for (id, ev) in events {
                    let terminal = ev.is_terminal();
                    if let Some(w) = watchers.get(&id) {
                        w(ev);
                    }
                    if terminal {
                        watchers.remove(&id);
                    }
                }
            }
            Err(e) => warn!(error = %e, "reading the kernel pinholes failed; trying again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::kernel::testing::in_fresh_netns;
    use crate::dataplane::{ClientAddr, GatewayAddr, ServerAddr, SourceNat};

    #[test]
    fn the_thread_reports_a_pinhole_and_deletes_the_table_when_closed() {
        in_fresh_netns(|| {
            // Without the owner flag only close() can delete the table.
            let config = KernelConfig {
                owner: false,
                ..KernelConfig::default()
            };
            let plane = KernelPlane::start(config.clone()).expect("start");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let flow = PinholeFlow::passive(
                ClientAddr("100.64.0.2:0".parse().unwrap()),
                GatewayAddr("100.64.0.1:40000".parse().unwrap()),
                ServerAddr("198.51.100.2:5000".parse().unwrap()),
                SourceNat("198.51.100.1".parse().unwrap()),
                Duration::from_millis(200),
            );
            let (tx, rx) = std_mpsc::channel();
            rt.block_on(plane.add(
                flow,
                Box::new(move |ev| {
                    let _ = tx.send(ev);
                }),
            ))
            .expect("add");
            // Nobody dials: the watcher hears that it expired, once.
            let ev = rx.recv_timeout(Duration::from_secs(3)).expect("an event");
            assert_eq!(ev, FlowEvent::Expired);
            assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
            plane.close();
            let after = rt.block_on(plane.add(flow, Box::new(|_| {})));
            assert!(after.is_err(), "a closed plane took a pinhole");
            // The table is gone: opening it again finds nothing stale.
            let (dp, report) = KernelDataPlane::open(config).expect("open again");
            assert!(!report.replaced_stale, "close() left the table behind");
            dp.close().expect("close");
        });
    }
}

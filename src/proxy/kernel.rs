//! The kernel data plane as the tokio driver uses it: one dedicated thread
//! owns ftpalg's nftables table ([`KernelDataPlane`], a blocking API) and
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
//! deleted by [`KernelPlane::close`] at shutdown (and by the kernel if the
//! process dies, the table being owned by the thread's netlink socket),
//! and every connection still followed then is ended with it.

use crate::dataplane::kernel::{KernelConfig, KernelDataPlane, KernelError, PinholeId};
use crate::dataplane::{FlowEvent, PinholeFlow};
use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{info, warn};

/// How often conntrack events are read while pinholes live: how late a
/// transfer's end is noticed at the most. Requests do not wait for it.
const EVENTS_EVERY: Duration = Duration::from_millis(10);

/// How often the table is checked (someone may delete or flush it), so it
/// is back before the next transfer needs it.
const CHECK_TABLE_EVERY: Duration = Duration::from_secs(1);

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
        let own = tx.clone();
        let thread = std::thread::Builder::new()
            .name("ftpalg-kernel".into())
            .spawn(move || match KernelDataPlane::open(config) {
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

impl Drop for KernelPlane {
    fn drop(&mut self) {
        self.close();
    }
}

/// The kernel thread's state: the table and who hears of each pinhole.
struct Server {
    dp: KernelDataPlane,
    watchers: HashMap<PinholeId, OnEvent>,
    /// Handed out in each [`KernelPinhole`], so its drop reaches the thread.
    own: std_mpsc::Sender<Cmd>,
    /// Strangers told in the log this second, and when it began.
    told: (Instant, u32),
}

/// Strangers logged one by one per second at the most; past that, a count.
const STRANGER_LINES_PER_SEC: u32 = 20;

impl Server {
    /// Carries out one request; a close request is handed back.
    fn handle(&mut self, cmd: Cmd) -> Option<std_mpsc::Sender<()>> {
        match cmd {
            Cmd::Add {
                flow,
                idle,
                on_event,
                reply,
                answer_by,
            } => {
                if Instant::now() >= answer_by || reply.is_closed() {
                    // Nobody waits for it any more: the session has gone on
                    // without a pinhole, so none is made.
                    return None;
                }
                match self.dp.add_limited(&flow, idle) {
                    Ok(id) => {
                        self.watchers.insert(id, on_event);
                        let handle = KernelPinhole {
                            id,
                            tx: self.own.clone(),
                            on_drop: Some(Withdraw::Cut),
                        };
                        // If nobody takes it, the handle comes back and its
                        // drop withdraws the pinhole.
                        if let Err(Ok(handle)) = reply.send(Ok(handle)) {
                            drop(handle);
                        }
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Cmd::Remove { id, how, done } => {
                self.watchers.remove(&id);
                let r = match how {
                    Withdraw::Forget => self.dp.remove(id),
                    Withdraw::Detach => self.dp.detach(id),
                    Withdraw::Cut => self.dp.abort(id).map(|_| ()),
                };
                if let Err(e) = r {
                    warn!(error = %e, "could not withdraw a kernel pinhole; it expires with its timeout");
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Cmd::Close { done } => return Some(done),
        }
        None
    }

    /// Hands each event to its pinhole's session, or logs it when its
    /// session has let go (a transfer left to finish after its session).
    fn deliver(&mut self, events: Vec<(PinholeId, FlowEvent)>) {
        for (id, ev) in events {
            let terminal = ev.is_terminal();
            match self.watchers.get(&id) {
                Some(w) => w(ev),
                None => log_detached(&ev),
            }
            if terminal {
                self.watchers.remove(&id);
            }
        }
    }
}

impl Server {
    /// Logs the connection attempts the kernel dropped at pinhole ports,
    /// as the relay logs a stranger at its listener, within a budget.
    fn tell_strangers(&mut self) {
        let strangers = self.dp.take_strangers();
        if strangers.is_empty() {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.told.0) >= Duration::from_secs(1) {
            self.told = (now, 0);
        }
        let mut untold = 0usize;
        for s in strangers {
            if self.told.1 < STRANGER_LINES_PER_SEC {
                self.told.1 += 1;
                warn!(stranger = %s.from, gateway = %s.to, path = "kernel", reason = "unexpected peer", "denied: pinhole connection refused");
            } else {
                untold += 1;
            }
        }
        if untold > 0 {
            warn!(
                count = untold,
                path = "kernel",
                reason = "unexpected peer",
                "denied: more pinhole connections refused this second"
            );
        }
    }
}

fn log_detached(ev: &FlowEvent) {
    match ev {
        FlowEvent::Finished { counts, duration } => info!(
            bytes_from_dialer = counts.from_dialer,
            bytes_to_dialer = counts.to_dialer,
            duration_ms = duration.as_millis() as u64,
            "kernel transfer ended after its session"
        ),
        FlowEvent::Failed(reason) => {
            warn!(reason = %reason, "kernel transfer after its session failed")
        }
        FlowEvent::Established { .. } | FlowEvent::Expired => {}
    }
}

/// The kernel thread: requests in, events out, until closed or every
/// sender is gone; the table goes with `dp`.
fn serve(dp: KernelDataPlane, rx: std_mpsc::Receiver<Cmd>, own: std_mpsc::Sender<Cmd>) {
    let mut s = Server {
        dp,
        watchers: HashMap::new(),
        own,
        told: (Instant::now(), 0),
    };
    let mut last_check = Instant::now();
    loop {
        let now = Instant::now();
        let mut wait = CHECK_TABLE_EVERY.saturating_sub(now - last_check);
        if s.dp.live() > 0 {
            wait = wait.min(EVENTS_EVERY);
        }
        if let Some(due) = s.dp.next_due() {
            wait = wait.min(due.saturating_duration_since(now));
        }
        let mut closing = None;
        match rx.recv_timeout(wait) {
            Ok(cmd) => {
                closing = s.handle(cmd);
                // Every request queued now, before anything else.
                while closing.is_none() {
                    match rx.try_recv() {
                        Ok(cmd) => closing = s.handle(cmd),
                        Err(_) => break,
                    }
                }
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            // Never: the thread holds a sender itself; `Close` ends it.
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if let Some(done) = closing {
            drop(s.watchers);
            if let Err(e) = s.dp.close() {
                warn!(error = %e, "could not delete the kernel data plane's table");
            }
            let _ = done.send(());
            return;
        }
        if last_check.elapsed() >= CHECK_TABLE_EVERY {
            last_check = Instant::now();
            if let Err(e) = s.dp.check_table() {
                warn!(error = %e, "checking the kernel table failed; trying again");
            }
        }
        let events = s.dp.service(Instant::now());
        s.deliver(events);
        s.tell_strangers();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::kernel::testing::in_fresh_netns;
    use crate::dataplane::{ClientAddr, GatewayAddr, ServerAddr, SourceNat};
    use std::net::SocketAddr;

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
            let _pinhole = rt
                .block_on(plane.add(
                    flow,
                    None,
                    Box::new(move |ev| {
                        let _ = tx.send(ev);
                    }),
                    ANSWER_WITHIN,
                ))
                .expect("add");
            // Nobody dials: the watcher hears that it expired, once.
            let ev = rx.recv_timeout(Duration::from_secs(3)).expect("an event");
            assert_eq!(ev, FlowEvent::Expired);
            assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
            plane.close();
            let after = rt.block_on(plane.add(flow, None, Box::new(|_| {}), ANSWER_WITHIN));
            assert!(after.is_err(), "a closed plane took a pinhole");
            // The table is gone: opening it again finds nothing stale.
            let (dp, report) = KernelDataPlane::open(config).expect("open again");
            assert!(!report.replaced_stale, "close() left the table behind");
            dp.close().expect("close");
        });
    }

    /// Elements in ftpalg's table, as `nft` in this thread's namespace
    /// sees them.
    fn elements() -> usize {
        let out = std::process::Command::new("nft")
            .args(["list", "table", "inet", "ftpalg_data"])
            .output()
            .expect("nft");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.trim_start().starts_with("elements"))
            .count()
    }

    /// Regression: an answer that came after its session had stopped
    /// waiting (and fell back to the relay) left its pinhole in the kernel,
    /// admitting a connection nobody followed.
    #[test]
    fn a_pinhole_nobody_takes_is_not_left_in_the_kernel() {
        in_fresh_netns(|| {
            let plane = KernelPlane::start(KernelConfig::default()).expect("start");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let flow = |port| {
                PinholeFlow::passive(
                    ClientAddr("100.64.0.2:0".parse().unwrap()),
                    GatewayAddr(SocketAddr::new("100.64.0.1".parse().unwrap(), port)),
                    ServerAddr("198.51.100.2:5000".parse().unwrap()),
                    SourceNat("198.51.100.1".parse().unwrap()),
                    Duration::from_secs(30),
                )
            };
            // A request already stale when the thread takes it is not made.
            let stale = rt.block_on(plane.add(flow(40000), None, Box::new(|_| {}), Duration::ZERO));
            assert!(stale.is_err());
            // Requests whose askers stop waiting before the answer: each
            // answer is dropped unread, and must take its pinhole with it.
            for port in 40001..40021 {
                let gave_up = rt.block_on(async {
                    tokio::time::timeout(
                        Duration::from_micros(50),
                        plane.add(flow(port), None, Box::new(|_| {}), ANSWER_WITHIN),
                    )
                    .await
                });
                drop(gave_up);
            }
            // One taken and kept is there; once dropped it goes too.
            let kept = rt
                .block_on(plane.add(flow(40100), None, Box::new(|_| {}), ANSWER_WITHIN))
                .expect("add");
            let end = Instant::now() + Duration::from_secs(2);
            while elements() != 5 && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(elements(), 5, "only the kept pinhole's elements");
            drop(kept);
            let end = Instant::now() + Duration::from_secs(2);
            while elements() != 0 && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(elements(), 0);
            plane.close();
        });
    }
}

//! The kernel thread itself: requests in, events out. Each turn takes every
//! request queued, then every conntrack event, so no request waits behind
//! more than one turn's work however many transfers are live.

use super::{Cmd, KernelPinhole, OnEvent, Withdraw};
use crate::dataplane::kernel::FlowEvent;
use crate::dataplane::kernel::{KernelTable, PinholeId};
use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How often conntrack events are read while pinholes live: how late a
/// transfer's end is noticed at the most. Requests do not wait for it.
const EVENTS_EVERY: Duration = Duration::from_millis(10);

/// How often the table is checked (someone may delete or flush it), so it
/// is back before the next transfer needs it.
const CHECK_TABLE_EVERY: Duration = Duration::from_secs(1);

/// The kernel thread's state: the table and who hears of each pinhole.
struct Server {
    dp: KernelTable,
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
pub(super) fn serve(dp: KernelTable, rx: std_mpsc::Receiver<Cmd>, own: std_mpsc::Sender<Cmd>) {
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

//! The kernel thread itself: requests in, events out. Each turn takes every
//! request queued, then every conntrack event, so no request waits behind
//! more than one turn's work however many transfers are live.

use super::requests::{Cmd, KernelPinhole, OnEvent};
use crate::dataplane::kernel::{FlowEvent, KernelTable, PinholeId};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How often conntrack events are read while pinholes live: how late a
/// transfer's end is noticed at the most. Requests do not wait for it.
const EVENTS_EVERY: Duration = Duration::from_millis(10);

/// How often the table is checked (someone may delete or flush it), so it
/// is back before the next transfer needs it.
const CHECK_TABLE_EVERY: Duration = Duration::from_secs(1);

/// Strangers logged one by one per second at the most; past that, a count.
const STRANGER_LINES_PER_SEC: u32 = 20;

/// The kernel thread's state: the table and who hears of each pinhole.
pub(super) struct Server {
    table: KernelTable,
    watchers: HashMap<PinholeId, OnEvent>,
    /// Handed out in each [`KernelPinhole`], so its drop reaches the thread.
    own: std_mpsc::Sender<Cmd>,
    /// Strangers told in the log this second, and when it began.
    told: (Instant, u32),
    /// Requests taken, for the tests.
    #[cfg(test)]
    pub(super) served: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Server {
    pub(super) fn new(table: KernelTable, own: std_mpsc::Sender<Cmd>) -> Server {
        Server {
            table,
            watchers: HashMap::new(),
            own,
            told: (Instant::now(), 0),
            #[cfg(test)]
            served: Default::default(),
        }
    }

    /// Carries out one request; a close request is handed back.
    fn handle(&mut self, cmd: Cmd) -> Option<std_mpsc::Sender<()>> {
        #[cfg(test)]
        self.served.fetch_add(1, Ordering::Relaxed);
        match cmd {
            Cmd::Add {
                flow,
                terms,
                on_event,
                open,
                reply,
                answer_by,
            } => {
                if Instant::now() >= answer_by || reply.is_closed() || !open.load(Ordering::SeqCst)
                {
                    // Nobody waits for it any more: the session has gone on
                    // without a pinhole, or has ended, so none is made.
                    return None;
                }
                match self.table.add_with(&flow, terms) {
                    Ok(id) => {
                        self.watchers.insert(id, on_event);
                        let handle = KernelPinhole {
                            id,
                            tx: self.own.clone(),
                            armed: true,
                            open,
                        };
                        // If nobody takes it, the handle comes back and its
                        // drop releases the pinhole.
                        if let Err(Ok(handle)) = reply.send(Ok(handle)) {
                            drop(handle);
                        }
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Cmd::Release { id } => {
                self.watchers.remove(&id);
                if let Err(e) = self.table.release(id) {
                    warn!(error = %e, "could not withdraw a kernel pinhole; it expires with its timeout");
                }
            }
            Cmd::Leave { id } => self.table.leave(id),
            Cmd::Cut { id, done } => {
                self.watchers.remove(&id);
                if let Err(e) = self.table.abort(id) {
                    warn!(error = %e, "could not withdraw a kernel pinhole; it expires with its timeout");
                }
                let _ = done.send(());
            }
            Cmd::EndSession { session } => {
                for id in self.table.release_session(session) {
                    self.watchers.remove(&id);
                }
            }
            Cmd::Close { done } => return Some(done),
        }
        None
    }

    /// Hands each event to its pinhole's holder, or logs it when its
    /// holder has let go (a transfer left to finish after its session).
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

    /// Logs the connection attempts the kernel dropped at pinhole ports,
    /// as the relay logs a stranger at its listener, within a budget.
    fn tell_strangers(&mut self) {
        let strangers = self.table.take_strangers();
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
/// sender is gone; the table goes with the server.
pub(super) fn serve(mut s: Server, rx: std_mpsc::Receiver<Cmd>) {
    let mut last_check = Instant::now();
    loop {
        let now = Instant::now();
        let mut wait = CHECK_TABLE_EVERY.saturating_sub(now - last_check);
        if s.table.live() > 0 {
            wait = wait.min(EVENTS_EVERY);
        }
        if let Some(due) = s.table.next_due() {
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
            if let Err(e) = s.table.close() {
                warn!(error = %e, "could not delete the kernel data plane's table");
            }
            let _ = done.send(());
            return;
        }
        if last_check.elapsed() >= CHECK_TABLE_EVERY {
            last_check = Instant::now();
            if let Err(e) = s.table.check_table() {
                warn!(error = %e, "checking the kernel table failed; trying again");
            }
        }
        let events = s.table.service(Instant::now());
        s.deliver(events);
        s.tell_strangers();
    }
}

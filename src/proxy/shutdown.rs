//! The gateway's stop, in two steps: first it stops accepting and idle
//! sessions close, then, once the grace is over, the hard stop resets what
//! still runs. [`Shutdown`] gives both signals and is kept by the gateway;
//! every other room gets a [`ShutdownWatch`], which can only wait for them.

use std::sync::Arc;
use tokio::sync::watch;

struct Signals {
    stop: watch::Sender<bool>,
    /// Set when the shutdown grace has ended: relays still running are reset.
    hard_stop: watch::Sender<bool>,
}

/// Gives the stop signals.
pub(crate) struct Shutdown(Arc<Signals>);

/// Waits for the stop signals; gives none.
#[derive(Clone)]
pub(crate) struct ShutdownWatch(Arc<Signals>);

impl Shutdown {
    pub(crate) fn new() -> Shutdown {
        let (stop, _) = watch::channel(false);
        let (hard_stop, _) = watch::channel(false);
        Shutdown(Arc::new(Signals { stop, hard_stop }))
    }

    /// A handle for a room that must stop with the gateway.
    pub(crate) fn watch(&self) -> ShutdownWatch {
        ShutdownWatch(self.0.clone())
    }

    /// No new sessions; idle ones close.
    pub(crate) fn stop(&self) {
        let _ = self.0.stop.send(true);
    }

    /// The grace is over: whatever still runs is reset.
    pub(crate) fn hard_stop(&self) {
        let _ = self.0.hard_stop.send(true);
    }
}

impl ShutdownWatch {
    /// Turns true when the gateway stops.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.0.stop.subscribe()
    }

    /// Turns true when the shutdown grace is over.
    pub(crate) fn hard_stop_signal(&self) -> watch::Receiver<bool> {
        self.0.hard_stop.subscribe()
    }
}

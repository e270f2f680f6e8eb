//! One session as the kernel thread knows it: the pinholes it adds are
//! keyed by the session and the channel, and its end releases all it still
//! holds in one request.

use super::requests::{Cmd, KernelPinhole, OnEvent};
use super::thread::{KernelThread, ANSWER_WITHIN};
use crate::dataplane::kernel::{Owner, Terms, Withdraw};
use crate::dataplane::PinholeFlow;
use crate::ftp::session::DataId;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A session's handle on the kernel thread. Cheap to clone: every path of
/// the session holds one.
#[derive(Clone)]
pub(crate) struct KernelSession {
    thread: Arc<KernelThread>,
    session: u64,
    /// False once the session has ended: the thread adds nothing more for
    /// it, and its pinholes' handles ask nothing more when dropped.
    open: Arc<AtomicBool>,
}

impl KernelSession {
    /// Session `session` on `thread`.
    pub(crate) fn new(thread: Arc<KernelThread>, session: u64) -> KernelSession {
        KernelSession {
            thread,
            session,
            open: Arc::new(AtomicBool::new(true)),
        }
    }

    /// The session, as the gateway numbers it.
    pub(crate) fn id(&self) -> u64 {
        self.session
    }

    /// Adds `flow` for `channel`: its transfer cut after `idle` without a
    /// byte moving, released as `release` says, its events to `on_event`.
    pub(crate) async fn add(
        &self,
        channel: DataId,
        flow: PinholeFlow,
        idle: Option<Duration>,
        release: Withdraw,
        on_event: OnEvent,
    ) -> Result<KernelPinhole, String> {
        let terms = Terms {
            owner: Some(Owner {
                session: self.session,
                channel: channel.0,
            }),
            idle,
            release,
        };
        self.thread
            .add(flow, terms, on_event, self.open.clone(), ANSWER_WITHIN)
            .await
    }

    /// The session has ended: the thread releases everything it holds, in
    /// one request, each pinhole as its terms say. Pinholes whose answer
    /// comes later are not added; handles dropped later ask nothing. Later
    /// calls do nothing.
    pub(crate) fn end(&self) {
        // The flag first: a request the thread takes after it is refused,
        // and one it took before is released below.
        if self.open.swap(false, Ordering::SeqCst) {
            self.thread.send(Cmd::EndSession {
                session: self.session,
            });
        }
    }
}

//! What the gateway asks of the host it runs on, for `ftpalg run`: more
//! open files, and telling systemd how it is doing.

use std::time::Duration;
use tracing::warn;

/// How often a stop that waits for transfers tells systemd it is alive.
const EXTEND_EVERY: Duration = Duration::from_secs(5);
/// How much longer systemd is asked to wait each time: past the next
/// message, with room to spare.
const EXTEND_BY: Duration = Duration::from_secs(15);

/// Raises the soft limit on open files to the hard limit: each session
/// holds two sockets, and each transfer up to four more.
pub(crate) fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            // Raising the soft limit up to the hard one is always permitted.
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
            hard
        }
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

/// Tells systemd about a change of state; a failure is logged, never fatal.
pub(crate) fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        warn!(error = %e, "cannot notify systemd");
    }
}

/// Keeps asking systemd for more time to stop (`EXTEND_TIMEOUT_USEC`)
/// until it is dropped: a stop that waits for running transfers for a
/// `shutdown_grace` longer than the unit's `TimeoutStopSec` is not killed
/// half way, and one that hangs still is, `EXTEND_BY` after its last
/// message. Without systemd it only sleeps.
pub(crate) async fn extend_stop_timeout() {
    let usec = u32::try_from(EXTEND_BY.as_micros()).unwrap_or(u32::MAX);
    loop {
        notify(&[sd_notify::NotifyState::ExtendTimeoutUsec(usec)]);
        tokio::time::sleep(EXTEND_EVERY).await;
    }
}

//! What the gateway asks of the host it runs on, for `ftpalg run`: more
//! open files, and telling systemd how it is doing.

use tracing::warn;

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

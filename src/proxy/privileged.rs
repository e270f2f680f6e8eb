//! The threads that keep CAP_NET_ADMIN: the kernel thread, which owns
//! ftpalg's nftables table, and the one that makes IP_TRANSPARENT sockets
//! for `tproxy` listeners ([`super::tproxy`]).
//!
//! Capabilities belong to each thread and a new thread starts with those of
//! the thread that made it. `ftpalg run` therefore starts these threads
//! first, then drops CAP_NET_ADMIN from its main thread
//! ([`crate::privilege::drop_from_this_thread`]) and only then builds the
//! runtime: its workers and blocking threads, which parse what clients and
//! servers send, never hold it, and cannot take it back.

use super::datapath::kernel::KernelThread;
use super::error::ProxyError;
use super::tproxy;
use crate::dataplane::kernel::{KernelConfig, KernelError};
use crate::rules::{DataPath, Rules};
use std::sync::Arc;
use tracing::info;

/// The name [`KernelThread::start`] gives its thread.
const KERNEL_THREAD: &str = "ftpalg-kernel";

/// What the gateway starts before its runtime, on threads of their own
/// that keep the calling thread's CAP_NET_ADMIN. See the module's
/// documentation.
#[derive(Debug)]
pub struct Privileged {
    pub(super) kernel: Option<Arc<KernelThread>>,
    tproxy: bool,
}

impl Privileged {
    /// Starts the threads that `rules` need CAP_NET_ADMIN on: the kernel
    /// thread if `data.path` is `kernel` (it must open its table) or
    /// `auto` (if it can), and the transparent socket maker if a listener
    /// has `tproxy`. The calling thread must hold the capability now, and
    /// drop it before it starts any other thread. Waits at most for the
    /// kernel's answer to the opening of the table.
    pub fn start(rules: &Rules) -> Result<Privileged, ProxyError> {
        let kernel = start_kernel(rules.data.path, rules.data.kernel.config())?;
        let tproxy = rules.listeners.iter().any(|l| l.tproxy);
        if tproxy {
            tproxy::start_thread().map_err(ProxyError::Thread)?;
        }
        Ok(Privileged { kernel, tproxy })
    }

    /// The names of the threads started, which hold CAP_NET_ADMIN.
    pub fn threads(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.kernel.is_some() {
            names.push(KERNEL_THREAD);
        }
        if self.tproxy && tproxy::thread_started() {
            names.push(tproxy::THREAD_NAME);
        }
        names
    }
}

/// Starts the kernel thread with `config` (the rules' `data.kernel`) if
/// `path` asks for it. Blocks.
pub(super) fn start_kernel(
    path: DataPath,
    config: KernelConfig,
) -> Result<Option<Arc<KernelThread>>, ProxyError> {
    if path == DataPath::Relay {
        return Ok(None);
    }
    kernel_or_relay(path, KernelThread::start(config))
}

/// What `started` means for `path`: `kernel` must have started; `auto`
/// uses it if it did and says once which it chose.
pub(super) fn kernel_or_relay(
    path: DataPath,
    started: Result<KernelThread, KernelError>,
) -> Result<Option<Arc<KernelThread>>, ProxyError> {
    match (started, path) {
        (Ok(k), _) => {
            info!(path = path.as_str(), table = %format!("inet {}", k.table), accept_rule = %k.accept_rule,
                  "kernel data path on: same-direction transfers are forwarded by the kernel; default-drop forward chains need the accept rule");
            Ok(Some(Arc::new(k)))
        }
        (Err(e), DataPath::Auto) => {
            info!(path = "auto", reason = %e, "kernel data path unavailable; relaying every transfer");
            Ok(None)
        }
        (Err(e), _) => Err(ProxyError::Kernel(e)),
    }
}

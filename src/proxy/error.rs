//! Why the gateway could not start or run.

use std::io;
use std::net::SocketAddr;
use thiserror::Error;

/// Why the gateway could not run.
#[derive(Debug, Error)]
pub enum ProxyError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({name}): {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Signal handling could not be set up.
    #[error("signal setup failed: {0}")]
    Signal(io::Error),
    /// `data.path: kernel`, and ftpalg may not manage nftables here.
    #[error("data.path is kernel, but the kernel data path cannot start: {0} (ftpalg needs CAP_NET_ADMIN; or use path: auto or relay)")]
    Kernel(crate::dataplane::kernel::KernelError),
    /// A thread that keeps CAP_NET_ADMIN could not be started.
    #[error("cannot start the thread that makes IP_TRANSPARENT sockets: {0}")]
    Thread(io::Error),
}

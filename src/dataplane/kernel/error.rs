//! Typed failures of the kernel data path.

use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;

/// Why the kernel backend could not do what was asked.
#[derive(Debug, Error)]
pub enum KernelError {
    /// The netlink socket itself failed (no netfilter support, closed, ...).
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel answered a request with an error.
    #[error("kernel refused {what} (message {index}): {}", std::io::Error::from_raw_os_error(*errno))]
    Refused {
        /// The operation, for the log.
        what: &'static str,
        /// The errno the kernel returned.
        errno: i32,
        /// Which message of a batch failed (0 for a single request).
        index: usize,
    },
    /// The kernel did not answer in time.
    #[error("no answer from the kernel to {what} within {after:?}")]
    Timeout {
        /// The operation, for the log.
        what: &'static str,
        /// The bound that passed.
        after: Duration,
    },
    /// The pinhole set holds as many elements as it may.
    #[error("pinhole set is full ({max} elements)")]
    Full {
        /// The configured bound.
        max: u32,
    },
    /// Another live process owns a table of the same name.
    #[error("table {table} is owned by another process (is a second ftpalg running?)")]
    TableBusy {
        /// `inet <name>`.
        table: String,
    },
    /// The table was deleted or flushed by someone else; it has been
    /// recreated and the pinholes it held are gone.
    #[error(
        "table {table} was removed or flushed by someone else; recreated, {lost} pinholes lost"
    )]
    TableLost {
        /// `inet <name>`.
        table: String,
        /// Pinholes that were live in it.
        lost: usize,
    },
    /// The flow's addresses are not all of one family (NAT cannot mix them).
    #[error("flow mixes IPv4 and IPv6 addresses")]
    MixedFamilies,
    /// A pinhole on that gateway address and port is already live.
    #[error("gateway address {0} already has a live pinhole")]
    PortInUse(SocketAddr),
    /// The configuration cannot work.
    #[error("invalid kernel data path configuration: {0}")]
    Config(&'static str),
    /// An answer from the kernel could not be read.
    #[error("malformed netlink answer to {0}")]
    Malformed(&'static str),
}

impl KernelError {
    /// The errno of a refused request, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Refused { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

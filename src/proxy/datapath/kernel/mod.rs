//! The kernel path: a transfer carried beside the gateway, in ftpalg's
//! nftables table, and the kernel's filter pinholes in front of relay
//! listeners. One stack, each layer one idea:
//!
//! - [`KernelTable`] (`dataplane/kernel`, blocking): the table, its
//!   pinholes and the connections they admitted, keyed by pinhole and by
//!   session.
//! - [`KernelThread`] (`thread.rs`, loop in `serve.rs`): the one thread
//!   that owns the table and takes the sessions' requests from a queue.
//! - [`KernelSession`] (`session.rs`): one session's handle on the thread;
//!   its end releases all the session holds in one request.
//! - `KernelPinhole` (`requests.rs`, with the requests the thread takes):
//!   one pinhole as its holder keeps it; dropping it releases it.
//! - [`KernelPath`] (`path.rs`): a [`TransferPath`] for a forwarded
//!   channel: its pinhole, the gateway port reserved for it
//!   (`reservation.rs`), its events as the session's reports.
//! - [`Filtered`] (`filter.rs`): a wrapper around a relay path whose
//!   listeners get a filter pinhole.
//!
//! Which rules a data connection gets (the port, the NAT, the peer) is
//! decided in one place, `allow.rs`.
//!
//! [`KernelTable`]: crate::dataplane::kernel::KernelTable
//! [`TransferPath`]: super::TransferPath

mod allow;
mod filter;
mod path;
mod requests;
mod reservation;
mod serve;
mod session;
mod thread;

#[cfg(test)]
mod tests;

pub(crate) use filter::Filtered;
pub(crate) use path::KernelPath;
pub(crate) use session::KernelSession;
pub(crate) use thread::KernelThread;

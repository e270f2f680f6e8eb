//! The data paths: how one data channel's transfer is carried, behind one
//! interface, [`TransferPath`], that a session's channel bookkeeping
//! (`proxy/control/channels`) drives without knowing which path it holds.
//!
//! Two implementations, each in its own folder:
//!
//! - [`relay`]: through the gateway's own sockets. Each side is a one-shot,
//!   peer-bound listener or a connection the gateway makes; once both are
//!   there, a task copies the bytes (splice(2) through a pipe for bulk).
//! - [`kernel`]: beside the gateway, in ftpalg's nftables table. One
//!   connection is forwarded from the peer that dials to the peer that
//!   listens, and followed through conntrack; the kernel thread owns the
//!   table. The kernel's other use, a filter pinhole in front of a relay
//!   listener on the kernel data plane, is a wrapper around any path whose
//!   sides are listeners ([`kernel::Filtered`]).
//!
//! A session gets its channels' paths from [`SessionPaths`], which picks
//! the implementation for the [`Endpoint`] the engine chose, and hears from
//! them through [`Reports`] as [`PathEvent`]s. Which path a channel takes
//! is the engine's decision, never a path's.
//!
//! Dependencies point one way: the engine (`ftp`) at the bottom, the flows
//! and the blocking kernel backend (`dataplane`) above it, and this, the
//! tokio side, on top; a path may use the sockets helpers, the telemetry
//! and the rules in force, and nothing of `proxy/control`.

pub(crate) mod kernel;
pub(crate) mod relay;

mod event;
mod session;

pub(crate) use event::{Moved, PathEvent, PathKey, PathReport, Progress, Reason, Reports, Sink};
pub(crate) use session::SessionPaths;

use crate::addrs::GatewayAddr;
use crate::ftp::session::{DataPlane, Endpoint, Side};
use crate::rules::Rules;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

/// How a path carries the bytes, which decides what its session can know
/// of a transfer's end: `Through` the gateway's own sockets (it sees the
/// last byte handed on, counts what passes for `/status`, and its end is
/// the end of the bytes) or `Beside` it, peer to peer (nothing to wait for
/// before the server's reply, no count until the end). The engine's type:
/// the session reports it to the engine as the transfer starts, since the
/// replies held behind a channel are the engine's.
pub(crate) use crate::ftp::session::Carriage;

/// What preparing a side gave.
#[derive(Debug)]
pub(crate) enum Preparing {
    /// Ready now: the peer is to dial this address, or the connection was
    /// made from it.
    Ready(SocketAddr),
    /// Not possible.
    Failed(Reason),
    /// The answer comes later, as [`PathEvent::Prepared`] or
    /// [`PathEvent::NotPrepared`].
    Pending,
}

/// What a path may know of its session when it prepares a side: the rules
/// in force and where the session's connections meet the gateway.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The rules in force for the session's listener.
    pub rules: &'a Rules,
    /// The gateway's end of the client's control connection.
    pub client_local: GatewayAddr,
    /// The gateway's end of the server's control connection, once there
    /// is one.
    pub server_local: Option<GatewayAddr>,
    /// Where listeners for the client bind (the unspecified address when
    /// the listener advertises another).
    pub pinhole_bind: IpAddr,
    /// The client's connections come through TPROXY.
    pub tproxy: bool,
    /// The client believes it talks to the server itself (a transparent
    /// listener).
    pub transparent: bool,
    /// The data plane the session was started on.
    pub data_plane: DataPlane,
}

/// What starting a transfer hands its path.
pub(crate) struct Start<'a> {
    /// The rules in force: deadlines and the bandwidth cap.
    pub rules: &'a Rules,
    /// Where to count the bytes as they move, for a path that carries them
    /// through the gateway.
    pub progress: Option<Arc<Progress>>,
    /// Dropped once the path has let go of its last socket (the gauge of
    /// open channels).
    pub keep: Box<dyn Send>,
}

/// Why a path's transfer is left to finish on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leave {
    /// The channel is closed while its transfer, which the server reported
    /// complete, may still have bytes in flight; the reason, for the log.
    Closed(&'static str),
    /// Its session ended.
    SessionEnded,
}

/// A future the session awaits before it goes on (a cut the backend must
/// have made first).
pub(crate) type Cutting<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One data channel's way of carrying its transfer. Made for the
/// [`Endpoint`] the engine chose ([`SessionPaths::path_for`]); reports to
/// its session through the [`Reports`] it was made with. Dropping it
/// releases it: what it still holds is closed (sockets reset, pinholes
/// withdrawn, a running transfer cut) unless it was left to finish.
pub(crate) trait TransferPath: Send {
    /// Its name in the transfer log (`path=`).
    fn name(&self) -> &'static str;
    /// How it carries the bytes.
    fn carriage(&self) -> Carriage;
    /// Whether it can prepare a side as `endpoint` says; a channel whose
    /// path cannot (the engine fell back to another way) gets a new one.
    fn takes(&self, endpoint: &Endpoint) -> bool;
    /// Prepares `side` as `endpoint` says.
    fn prepare(&mut self, side: Side, endpoint: Endpoint, at: &Context<'_>) -> Preparing;
    /// Whether every side it needs is prepared, so it can start.
    fn ready(&mut self) -> bool;
    /// Starts carrying the transfer; only once [`ready`](Self::ready).
    fn start(&mut self, start: Start<'_>);
    /// A transfer is under way: started, and not left to finish.
    fn running(&self) -> bool;
    /// Cuts what it carries where the backend must have the cut before the
    /// session goes on (the client's `ABOR` is forwarded next); resolves
    /// at once when dropping the path is cut enough.
    fn cut(&mut self) -> Cutting<'_>;
    /// Leaves its transfer to finish on its own once released.
    fn leave_to_finish(&mut self, why: Leave);
    /// It reported its end: releasing it needs nothing more.
    fn ended(&mut self);
}

/// A channel's path, as the channel holds it: the path and the key its
/// reports carry.
pub(crate) struct Path {
    key: PathKey,
    path: Box<dyn TransferPath>,
}

impl Path {
    /// Whether a report with `key` is this path's (not one it replaced).
    pub(crate) fn is(&self, key: PathKey) -> bool {
        self.key == key
    }
}

impl std::ops::Deref for Path {
    type Target = dyn TransferPath;
    fn deref(&self) -> &Self::Target {
        &*self.path
    }
}

impl std::ops::DerefMut for Path {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.path
    }
}

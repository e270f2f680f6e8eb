//! What every session shares, which is all a session may reach of the
//! gateway: the rules in force, the telemetry, the stop signals, the memo
//! of servers' passive ports, the kernel thread, and whether an address is
//! one of the gateway's own listeners.

use super::passive::PassiveMemo;
use crate::proxy::current_rules::CurrentRules;
use crate::proxy::datapath::kernel::KernelThread;
use crate::proxy::events::Telemetry;
use crate::proxy::shutdown::ShutdownWatch;
use std::net::SocketAddr;
use std::sync::Arc;

/// Tells the gateway's own listeners from other destinations (the
/// listeners' room answers; the session only asks).
pub(crate) trait OwnListeners: Send + Sync {
    /// Whether `to` is one of the gateway's own listeners: a connection
    /// there would come straight back into the gateway.
    fn is_own_listener(&self, to: SocketAddr) -> bool;
}

/// The gateway as a session sees it.
pub(crate) struct SessionGateway {
    /// The rules in force, read for each command and transfer.
    pub(in crate::proxy) rules: Arc<CurrentRules>,
    pub(in crate::proxy) telemetry: Arc<Telemetry>,
    pub(in crate::proxy) shutdown: ShutdownWatch,
    /// What sessions learned of servers' passive ports.
    pub(in crate::proxy) passive: PassiveMemo,
    /// ftpalg's nftables table and the thread that manages it, when the
    /// rules chose the kernel data path and it could start.
    pub(in crate::proxy) kernel: Option<Arc<KernelThread>>,
    pub(in crate::proxy) listeners: Arc<dyn OwnListeners>,
}

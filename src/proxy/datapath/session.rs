//! The data paths as one session sees them: the path for each channel, by
//! the endpoint the engine chose, and the session's state in the kernel,
//! ended in one request when the session ends.

use super::kernel::{Filtered, KernelPath, KernelSession, KernelThread};
use super::relay::RelayPath;
use super::{
    Carriage, Context, Cutting, Leave, Path, PathKey, Preparing, Reason, Reports, Sink, Start,
    TransferPath,
};
use crate::ftp::session::{DataId, Endpoint, Side};
use crate::proxy::events::Telemetry;
use std::sync::Arc;

/// The paths of one session's data channels.
pub(crate) struct SessionPaths {
    session: u64,
    telemetry: Arc<Telemetry>,
    sink: Sink,
    /// The session's pinholes in the kernel, when the kernel thread runs.
    kernel: Option<KernelSession>,
    next_key: u32,
}

impl SessionPaths {
    /// The paths of session `session`, which hears from them through
    /// `sink`; `kernel` is the kernel thread, when it runs.
    pub(crate) fn new(
        session: u64,
        telemetry: Arc<Telemetry>,
        kernel: Option<&Arc<KernelThread>>,
        sink: Sink,
    ) -> SessionPaths {
        SessionPaths {
            session,
            telemetry,
            sink,
            kernel: kernel.map(|k| KernelSession::new(k.clone(), session)),
            next_key: 0,
        }
    }

    /// A path for channel `id` that takes `endpoint`: the kernel's for
    /// [`Endpoint::Forward`], the relay's otherwise, behind the kernel's
    /// filter pinholes when the kernel thread runs (the filter itself
    /// decides, per side, whether a listener gets one).
    pub(crate) fn path_for(&mut self, id: DataId, endpoint: &Endpoint) -> Path {
        let key = PathKey(self.next_key);
        self.next_key = self.next_key.wrapping_add(1);
        let reports = Reports {
            id,
            key,
            sink: self.sink.clone(),
        };
        let relay = || RelayPath::new(self.session, reports.clone(), self.telemetry.clone());
        let path: Box<dyn TransferPath> = match (endpoint, &self.kernel) {
            (Endpoint::Forward { .. }, Some(k)) => {
                Box::new(KernelPath::new(k.clone(), reports.clone()))
            }
            (Endpoint::Forward { .. }, None) => Box::new(Unavailable),
            (_, Some(k)) => Box::new(Filtered::new(Box::new(relay()), k.clone(), reports.clone())),
            (_, None) => Box::new(relay()),
        };
        Path { key, path }
    }

    /// The session has ended: whatever it still holds in the kernel is
    /// released in one request, each pinhole as agreed when it was added
    /// (a transfer left to finish goes on). Channels dropped after this
    /// ask nothing more of the kernel. Later calls do nothing.
    pub(crate) fn end(&mut self) {
        if let Some(k) = self.kernel.take() {
            k.end();
        }
    }
}

impl Drop for SessionPaths {
    fn drop(&mut self) {
        self.end();
    }
}

/// The way the engine asked for, where this gateway does not have it (the
/// kernel's, without the kernel thread): every side fails.
struct Unavailable;

impl TransferPath for Unavailable {
    fn name(&self) -> &'static str {
        "kernel"
    }

    /// It carries nothing: its channel is bookkept as one that holds
    /// nothing beside the gateway.
    fn carriage(&self) -> Carriage {
        Carriage::Through
    }

    fn takes(&self, endpoint: &Endpoint) -> bool {
        matches!(endpoint, Endpoint::Forward { .. })
    }

    fn prepare(&mut self, _: Side, _: Endpoint, _: &Context<'_>) -> Preparing {
        Preparing::Failed(Reason::new("the kernel data path is off"))
    }

    fn ready(&mut self) -> bool {
        false
    }

    fn start(&mut self, _: Start<'_>) {}

    fn running(&self) -> bool {
        false
    }

    fn cut(&mut self) -> Cutting<'_> {
        Box::pin(std::future::ready(()))
    }

    fn leave_to_finish(&mut self, _: Leave) {}

    fn ended(&mut self) {}
}

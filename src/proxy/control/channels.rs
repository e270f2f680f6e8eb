//! The data channels of one session, whichever way each is carried: a
//! channel holds its path (`proxy/datapath`: the relay, or the kernel) and
//! what the transfer log needs, and the session handles what the paths
//! report in one place, `path_event`.
//!
//! Which channels there are is the engine's to say: it asks for each one,
//! bounds them (one in preparation, one running), and has the driver
//! reset one (`Action::Reset`) or close one that has delivered
//! (`Action::Retire`); the driver reports how each one's data went. A relay
//! that stalls ends by its own deadlines; when the session ends, every
//! relay is aborted, which resets its sockets (`relay` keeps SO_LINGER 0
//! until a direction has ended cleanly).

mod event;
mod log;

pub(super) use event::DataEvent;

use super::super::events::Telemetry;
use super::Driver;
use crate::ftp::command::Verb;
use crate::ftp::session::{
    Action, Cancel, ClientMode, DataId, Direction, Endpoint, PathEnd, RouteFailure, ServerMode,
    Side, TransferEnd,
};
use crate::proxy::datapath::{
    Carriage, Context, Leave, Moved, Path, PathEvent, PathReport, Preparing, Reason, Start,
};
use crate::proxy::events::{self, TransferReport};
use crate::proxy::plain::plain_io_error;
use crate::proxy::status::TransferEntry;
use crate::rules::Kind;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Counts a data channel in the gateway's metrics for as long as it holds
/// sockets: it lives in the channel while it is prepared, then moves into
/// its path when the transfer starts (a relay keeps it in its task), so it
/// is dropped with the last socket.
pub(super) struct ChannelGauge(Arc<Telemetry>);

impl ChannelGauge {
    fn new(t: &Arc<Telemetry>) -> ChannelGauge {
        t.pinhole_opened();
        ChannelGauge(t.clone())
    }
}

impl Drop for ChannelGauge {
    fn drop(&mut self) {
        self.0.pinhole_closed();
    }
}

pub(super) struct Channel {
    gauge: Option<ChannelGauge>,
    /// How its transfer is carried: relayed, forwarded by the kernel.
    path: Path,
    /// When the channel was first prepared: its setup time ends when its
    /// transfer starts.
    created: Instant,
    pub(super) started: Option<Instant>,
    pub(super) modes: Option<(ClientMode, ServerMode)>,
    transfer: Option<(Verb, String)>,
    /// Which way the transfer's data goes, as the engine said.
    direction: Option<Direction>,
    /// Its `/status` entry, once a transfer through the gateway started:
    /// dropped with the channel, which removes the entry, however the
    /// channel ends.
    status: Option<TransferEntry>,
}

impl Channel {
    fn new(t: &Arc<Telemetry>, path: Path) -> Channel {
        Channel {
            gauge: Some(ChannelGauge::new(t)),
            path,
            created: Instant::now(),
            started: None,
            modes: None,
            transfer: None,
            direction: None,
            status: None,
        }
    }

    /// A transfer is under way on it.
    pub(super) fn running(&self) -> bool {
        self.path.running()
    }
}

/// How long a session that has ended waits for its transfers that the
/// server reported complete to close, so they are logged: the last bytes
/// may still be in flight after the server's `226`, and a path beside the
/// gateway notices a close only within its poll interval.
const SETTLE_AFTER_SESSION: Duration = Duration::from_secs(2);

impl Driver {
    /// What a path may know of this session to prepare a side.
    fn context<'a>(&self, rules: &'a crate::rules::Rules) -> Context<'a> {
        Context {
            rules,
            client_local: self.client_local,
            server_local: self.server_local,
            pinhole_bind: self.pinhole_bind,
            tproxy: self.listener.tproxy,
            transparent: self.listener.kind == Kind::Transparent,
            data_plane: self.session.data_plane(),
        }
    }

    pub(super) fn prepare(&mut self, id: DataId, side: Side, endpoint: Endpoint) {
        let policy = self.policy();
        let at = self.context(policy.rules());
        match self.channels.get_mut(&id) {
            Some(c) if c.path.takes(&endpoint) => {}
            // The engine fell back to another way for this channel.
            Some(c) => c.path = self.paths.path_for(id, &endpoint),
            None => {
                let path = self.paths.path_for(id, &endpoint);
                self.channels
                    .insert(id, Channel::new(&self.gw.telemetry, path));
            }
        }
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        match c.path.prepare(side, endpoint, &at) {
            Preparing::Ready(local) => self.session.data_prepared(id, side, local, &policy),
            Preparing::Failed(reason) => {
                self.session
                    .data_failed(id, side, &reason.to_string(), &policy)
            }
            Preparing::Pending => {}
        }
    }

    pub(super) fn start_transfer(
        &mut self,
        id: DataId,
        client_mode: ClientMode,
        server_mode: ServerMode,
    ) {
        if !self.channels.get_mut(&id).is_some_and(|c| c.path.ready()) {
            warn!(
                session = self.id,
                channel = id.0,
                reason = "not prepared",
                "data channel cannot start"
            );
            self.channels.remove(&id);
            self.session
                .data_ended(id, Err("the data channel was not prepared"));
            return;
        }
        let policy = self.policy();
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        c.modes = Some((client_mode, server_mode));
        c.started = Some(Instant::now());
        let carriage = c.path.carriage();
        let progress = match carriage {
            Carriage::Through => {
                let (verb, file) = c
                    .transfer
                    .clone()
                    .map(|(v, f)| (v.to_string(), f))
                    .unwrap_or_else(|| ("-".into(), String::new()));
                let status = self.gw.telemetry.transfer_started(
                    self.id,
                    id.0,
                    &verb,
                    &file,
                    client_mode.as_str(),
                    server_mode.as_str(),
                );
                let progress = status.progress().clone();
                c.status = Some(status);
                Some(progress)
            }
            // Nothing to count on the way: the bytes go from peer to peer.
            Carriage::Beside => None,
        };
        c.path.start(Start {
            rules: policy.rules(),
            progress,
            keep: Box::new(c.gauge.take()),
        });
        // The engine holds the server's reply to the transfer for bytes
        // through the gateway only: one beside it need not wait for them
        // (holding it until the backend next looks would only delay every
        // transfer).
        self.session.data_started(id, carriage);
    }

    /// Closes channel `id` at once: its path is released (a relay aborted,
    /// which resets its sockets; a kernel transfer cut).
    pub(super) fn kill(&mut self, id: DataId, why: Cancel) {
        let reason = why.as_str();
        let Some(c) = self.channels.remove(&id) else {
            return;
        };
        // The transfer's line, if it carried one, says how it ended; the
        // channel's own end is routine.
        let what = if c.running() {
            "data channel reset"
        } else {
            "data channel closed before use"
        };
        debug!(session = self.id, channel = id.0, reason, "{what}");
        let elapsed = c.started.map(|s| s.elapsed()).unwrap_or_default();
        let cut = Reason::new(format!("reset: {reason}"));
        self.log_transfer(id, &c, Err(cut), elapsed);
    }

    /// Closes channel `id`, which has delivered its transfer: a relay is
    /// aborted as it drops (the client's end closes after what is queued,
    /// the server's end resets) and the transfer logged as complete with
    /// its counts; a transfer beside the gateway (the kernel's) has its
    /// pinhole withdrawn and its connection left to end on its own, since
    /// the gateway cannot tell whether its last bytes are still in flight.
    pub(super) fn close_delivered(&mut self, id: DataId, why: &'static str) {
        let Some(mut c) = self.channels.remove(&id) else {
            return;
        };
        if c.path.carriage() == Carriage::Beside {
            c.path.leave_to_finish(Leave::Closed(why));
            return;
        }
        debug!(
            session = self.id,
            channel = id.0,
            reason = why,
            "delivered data channel closed"
        );
        let moved = c
            .status
            .as_ref()
            .map(|s| Moved {
                up: s.progress().up.load(Ordering::Relaxed),
                down: s.progress().down.load(Ordering::Relaxed),
            })
            .unwrap_or_default();
        let elapsed = c.started.map(|s| s.elapsed()).unwrap_or_default();
        self.log_transfer(id, &c, Ok(moved), elapsed);
    }

    /// Cuts channel `id`'s transfer for the client's `ABOR`: where its path
    /// must have the cut before the server hears `ABOR` (which it may
    /// answer by closing its end at once), that is awaited; then the
    /// channel is closed.
    pub(super) async fn cut(&mut self, id: DataId) {
        if let Some(c) = self.channels.get_mut(&id) {
            c.path.cut().await;
        }
        self.kill(id, Cancel::Cut)
    }

    pub(super) fn data_event(&mut self, ev: DataEvent) {
        match ev {
            DataEvent::Upstream(Ok(stream)) => {
                let policy = self.policy();
                let addr = stream.peer_addr();
                self.attach_server(stream);
                match addr {
                    Ok(a) => {
                        info!(session = self.id, server = %a, "routed");
                        self.session.upstream_connected(a);
                    }
                    Err(e) => {
                        let text = format!("Cannot reach the server: {}", plain_io_error(&e));
                        self.session
                            .upstream_failed(RouteFailure::Unreachable(&text), &policy)
                    }
                }
            }
            DataEvent::Upstream(Err(e)) => self.route_failed(e),
            DataEvent::Path(report) => self.path_event(report),
        }
    }

    /// What a channel's path reports. A side that cannot be had reaches
    /// the engine whatever became of the channel (it ignores a channel it
    /// no longer has); anything else only for the path the channel holds.
    fn path_event(&mut self, PathReport { id, key, event }: PathReport) {
        let policy = self.policy();
        let current = self.channels.get(&id).is_some_and(|c| c.path.is(key));
        match event {
            PathEvent::NotPrepared { side, reason } => {
                self.session
                    .data_failed(id, side, &reason.to_string(), &policy)
            }
            _ if !current => {}
            PathEvent::Prepared { side, at } => self.session.data_prepared(id, side, at, &policy),
            PathEvent::Delivered(result) => {
                let result = result.map_err(|r| r.to_string());
                self.session
                    .data_delivered(id, result.as_ref().map(|_| ()).map_err(|e| e.as_str()));
            }
            PathEvent::Ended { result, elapsed } => self.path_ended(id, result, elapsed),
        }
    }

    /// Channel `id`'s transfer is over: the engine hears of it (it settles
    /// the replies held behind it, and remembers a failure for a reply yet
    /// to come), and the transfer is logged.
    fn path_ended(&mut self, id: DataId, result: Result<Moved, Reason>, elapsed: Option<Duration>) {
        let Some(mut c) = self.channels.remove(&id) else {
            return;
        };
        c.path.ended();
        let logged = result.clone();
        let result = result.map_err(|r| r.to_string());
        self.session
            .data_ended(id, result.as_ref().map(|_| ()).map_err(|e| e.as_str()));
        match c.path.carriage() {
            // Its end is the end of the bytes through the gateway.
            Carriage::Through => {
                self.log_transfer(id, &c, logged, elapsed.unwrap_or_default());
            }
            // A failure of a transfer that never started is not a
            // transfer to log.
            Carriage::Beside => match result {
                Ok(_) => self.log_transfer(id, &c, logged, elapsed.unwrap_or_default()),
                Err(_) => {
                    if let Some(started) = c.started {
                        self.log_transfer(id, &c, logged, started.elapsed());
                    }
                }
            },
        }
    }

    /// Whether a transfer is under way.
    pub(super) fn transfer_running(&self) -> bool {
        self.channels.values().any(Channel::running)
    }

    /// After the session's end: waits, within [`SETTLE_AFTER_SESSION`],
    /// for the transfers the server reported complete whose data is
    /// through (the engine's `delivered_channels`), so they are logged
    /// with their counts: those beside the gateway, and those through it
    /// that have delivered all their data (a client may close its end of
    /// the data connection only after QUIT); a delivered one's linger
    /// still retires it. One beside the gateway still open then is left
    /// to finish on its own (only its pinhole is withdrawn). Any other
    /// channel is cut when the driver drops.
    pub(super) async fn finish_transfers(&mut self) {
        let deadline = tokio::time::Instant::now() + SETTLE_AFTER_SESSION;
        while self.finishing().next().is_some() {
            let linger = self.session.poll_timeout().map(|t| self.clock.instant(t));
            tokio::select! {
                ev = tokio::time::timeout_at(deadline, self.rx.recv()) => match ev {
                    Ok(Some(ev)) => {
                        self.heard();
                        self.data_event(ev);
                    }
                    _ => break,
                },
                () = super::sleep_until(linger) => self.session.handle_timeout(self.clock.now()),
            }
            self.close_finished();
        }
        let finishing: Vec<DataId> = self.finishing().collect();
        for id in finishing {
            if let Some(c) = self.channels.get_mut(&id) {
                if c.path.carriage() == Carriage::Beside {
                    c.path.leave_to_finish(Leave::SessionEnded);
                }
            }
        }
    }

    /// The channels still held whose transfer is over but for the closing.
    fn finishing(&self) -> impl Iterator<Item = DataId> + '_ {
        self.session
            .delivered_channels()
            .into_iter()
            .filter(|id| self.channels.contains_key(id))
    }

    /// After the session's end, carries out what the engine still has to
    /// say about its channels; what it has for the client goes nowhere.
    fn close_finished(&mut self) {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Reset { id, why } => self.kill(id, why),
                Action::Retire { id, why } => self.close_delivered(id, why.as_str()),
                _ => {}
            }
        }
    }
}

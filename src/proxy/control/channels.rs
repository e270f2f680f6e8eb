//! The data channels of one session: pinholes and connections while they
//! are prepared, then one relay task each, owned by the session.
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
use super::super::pinhole::{connect_as, Pinhole, PinholeRequest};
use super::super::relay::{relay_counted, Moved, RelayLimits};
use super::forward::KernelChannel;
use super::{unspecified_like, Driver};
use crate::ftp::command::Verb;
use crate::ftp::session::{
    Cancel, ClientMode, ConnectDeadline, DataId, Direction, Endpoint, ServerMode, Side,
};
use crate::proxy::events::TransferReport;
use crate::proxy::status::TransferEntry;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

/// One side of a data channel before the relay starts.
pub(super) enum Prepared {
    Pinhole(Pinhole),
    Stream(TcpStream),
}

/// Counts a data channel in the gateway's metrics for as long as it holds
/// sockets: it lives in the channel while it is prepared, then moves into
/// the relay task, so it is dropped with the last socket.
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
    client: Option<Prepared>,
    server: Option<Prepared>,
    /// When the channel was first prepared: its setup time ends when the
    /// relay starts.
    created: Instant,
    /// The relay task, once started.
    relay: Option<AbortHandle>,
    pub(super) started: Option<Instant>,
    pub(super) modes: Option<(ClientMode, ServerMode)>,
    transfer: Option<(Verb, String)>,
    /// Which way the transfer's data goes, as the engine said.
    direction: Option<Direction>,
    /// Its `/status` entry, once the relay started: dropped with the
    /// channel, which removes the entry, however the channel ends.
    status: Option<TransferEntry>,
    /// The channel's pinhole when the kernel forwards it.
    pub(super) kernel: Option<KernelChannel>,
    /// Kernel filter elements in front of the relay's listeners (a mode
    /// conversion on the kernel data plane).
    pub(super) filters: Vec<KernelChannel>,
}

impl Channel {
    fn new(t: &Arc<Telemetry>) -> Channel {
        Channel {
            gauge: Some(ChannelGauge::new(t)),
            created: Instant::now(),
            client: None,
            server: None,
            relay: None,
            started: None,
            modes: None,
            transfer: None,
            direction: None,
            status: None,
            kernel: None,
            filters: Vec::new(),
        }
    }

    /// A relay, or a started kernel transfer, is under way.
    pub(super) fn running(&self) -> bool {
        self.relay.is_some()
            || (self.started.is_some() && self.kernel.as_ref().is_some_and(|k| !k.left_to_finish()))
    }

    fn path(&self) -> &'static str {
        if self.kernel.is_some() {
            "kernel"
        } else {
            "relay"
        }
    }

    /// Stops its relay task, if any; the task's sockets reset as it drops.
    pub(super) fn abort(&self) {
        if let Some(task) = &self.relay {
            task.abort();
        }
    }
}

async fn establish(
    p: Prepared,
    deadline: Duration,
    on_stranger: impl FnMut(SocketAddr),
    on_expired: impl FnOnce(),
) -> Result<TcpStream, String> {
    match p {
        Prepared::Stream(s) => Ok(s),
        Prepared::Pinhole(p) => p.accept(deadline, on_stranger).await.map_err(|e| {
            if matches!(e, crate::proxy::pinhole::PinholeError::Expired { .. }) {
                on_expired();
            }
            e.to_string()
        }),
    }
}

impl Driver {
    pub(super) fn prepare(&mut self, id: DataId, side: Side, endpoint: Endpoint) {
        let policy = self.policy();
        let rules = policy.rules();
        let telemetry = self.gw.telemetry.clone();
        self.channels
            .entry(id)
            .or_insert_with(|| Channel::new(&telemetry));
        match endpoint {
            Endpoint::Listen { expect_peer } => {
                let (bind, range) = match side {
                    Side::Client => (self.pinhole_bind, rules.data.client_ports),
                    Side::Server => (
                        self.server_local
                            .map(|a| a.ip())
                            .unwrap_or(unspecified_like(*expect_peer)),
                        rules.data.server_ports,
                    ),
                };
                let req = PinholeRequest {
                    bind,
                    range,
                    expect_peer: rules.security.check_data_peer.then_some(expect_peer),
                    transparent: side == Side::Client && self.listener.tproxy,
                };
                match self.gw.pinholes.open(req) {
                    Ok(p) => {
                        let local = p.local_addr();
                        debug!(session = self.id, ?side, %local, expect = %expect_peer, "pinhole open");
                        if let Some(c) = self.channels.get_mut(&id) {
                            match side {
                                Side::Client => c.client = Some(Prepared::Pinhole(p)),
                                Side::Server => c.server = Some(Prepared::Pinhole(p)),
                            }
                        }
                        if !self.filter_relay(id, side, expect_peer, local) {
                            self.session.data_prepared(id, side, local, &policy);
                        }
                    }
                    Err(e) => {
                        warn!(session = self.id, ?side, error = %e, "cannot open pinhole");
                        self.session.data_failed(id, side, &e.to_string(), &policy);
                    }
                }
            }
            Endpoint::Forward {
                expect_peer,
                to,
                exact,
            } => self.prepare_forward(id, side, expect_peer, to, exact),
            Endpoint::Connect { to, within } => {
                let timeout = match within {
                    ConnectDeadline::Connect => rules.limits.connect_timeout,
                    ConnectDeadline::PassiveProbe => rules.data.passive_probe_timeout,
                };
                let from = match side {
                    Side::Client => Some(self.client_local.ip()),
                    Side::Server => self.server_local.map(|a| a.ip()),
                };
                // Under TPROXY the client expects the server's address as
                // the source of an active-mode connection.
                let transparent = side == Side::Client && self.listener.tproxy;
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = connect_as(from, to, timeout, transparent).await;
                    let _ = tx.send(DataEvent::Connected { id, side, result });
                });
            }
        }
    }

    pub(super) fn start_relay(
        &mut self,
        id: DataId,
        client_mode: ClientMode,
        server_mode: ServerMode,
    ) {
        if self.start_forward(id, client_mode, server_mode) {
            return;
        }
        let rules = self.policy().rules().clone();
        let prepared = self
            .channels
            .get_mut(&id)
            .map(|c| (c.client.take(), c.server.take()));
        let Some((Some(client), Some(server))) = prepared else {
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
        };
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        c.modes = Some((client_mode, server_mode));
        c.started = Some(Instant::now());
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
        let gauge = c.gauge.take();
        let tx = self.tx.clone();
        let deadline = rules.data.pinhole_timeout;
        let limits = RelayLimits {
            idle: rules.limits.transfer_idle_timeout,
            rate: rules.limits.bandwidth_per_session,
        };
        let session = self.id;
        let telemetry = self.gw.telemetry.clone();
        let task = tokio::spawn(async move {
            // Dropped with the sockets, whether the task ends or is aborted.
            let _gauge = gauge;
            let started = Instant::now();
            let strangers = |who: &'static str| {
                let telemetry = telemetry.clone();
                move |peer: SocketAddr| telemetry.stranger(session, who, peer)
            };
            let expired = |side: &'static str| {
                let telemetry = telemetry.clone();
                move || telemetry.pinhole_expired(session, side, deadline)
            };
            let c = establish(client, deadline, strangers("client"), expired("client"));
            let s = establish(server, deadline, strangers("server"), expired("server"));
            let result = match tokio::try_join!(c, s) {
                Ok((c, s)) => {
                    let tx2 = tx.clone();
                    let delivered = move |result| {
                        let _ = tx2.send(DataEvent::Delivered { id, result });
                    };
                    relay_counted(c, s, limits, &progress, delivered)
                        .await
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e),
            };
            let _ = tx.send(DataEvent::Finished {
                id,
                result,
                elapsed: started.elapsed(),
            });
        });
        c.relay = Some(task.abort_handle());
    }

    /// Closes channel `id` at once: a relay under way is aborted, which
    /// resets its sockets.
    pub(super) fn kill(&mut self, id: DataId, why: Cancel) {
        let reason = why.as_str();
        let Some(c) = self.channels.remove(&id) else {
            return;
        };
        if c.running() {
            if let Some(task) = &c.relay {
                task.abort();
            }
            warn!(
                session = self.id,
                channel = id.0,
                reason,
                "data channel reset"
            );
            if why == Cancel::Released && c.transfer.is_none() {
                debug!(session = self.id, "data channel released unused");
            } else {
                let elapsed = c.started.map(|s| s.elapsed()).unwrap_or_default();
                self.log_transfer(id, &c, Err(format!("reset: {reason}")), elapsed);
            }
        } else {
            debug!(
                session = self.id,
                channel = id.0,
                reason,
                "data channel closed before use"
            );
        }
    }

    /// Closes channel `id`, which has delivered its transfer: a relay is
    /// aborted (the client's end closes after what is queued, the server's
    /// end resets) and the transfer logged as complete with its counts; a
    /// kernel channel's pinhole is withdrawn and its connection left to end
    /// in the kernel, since the gateway cannot tell whether its last bytes
    /// are still in flight.
    pub(super) fn close_delivered(&mut self, id: DataId, why: &'static str) {
        let Some(mut c) = self.channels.remove(&id) else {
            return;
        };
        if let Some(k) = c.kernel.as_mut() {
            k.leave_to_finish();
            info!(
                session = self.id,
                channel = id.0,
                reason = why,
                "kernel transfer left to finish in the kernel"
            );
            return;
        }
        c.abort();
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

    pub(super) fn data_event(&mut self, ev: DataEvent) {
        let policy = self.policy();
        match ev {
            DataEvent::Upstream(Ok(stream)) => {
                let addr = stream.peer_addr();
                self.attach_server(stream);
                match addr {
                    Ok(a) => {
                        info!(session = self.id, server = %a, "routed");
                        self.session.upstream_connected(a);
                    }
                    Err(e) => self.session.upstream_failed(&e.to_string(), &policy),
                }
            }
            DataEvent::Upstream(Err(reason)) => {
                warn!(session = self.id, reason = %reason, "route failed");
                self.session.upstream_failed(&reason, &policy);
            }
            DataEvent::Connected { id, side, result } => match result {
                Ok(stream) => {
                    // Until the relay takes it, dropping it must reset.
                    super::super::pinhole::reset_on_close(&stream);
                    let local = stream.local_addr().unwrap_or(*self.client_local);
                    if let Some(c) = self.channels.get_mut(&id) {
                        match side {
                            Side::Client => c.client = Some(Prepared::Stream(stream)),
                            Side::Server => c.server = Some(Prepared::Stream(stream)),
                        }
                        self.session.data_prepared(id, side, local, &policy);
                    }
                }
                Err(e) => {
                    debug!(session = self.id, ?side, error = %e, "data connect failed");
                    self.session.data_failed(id, side, &e.to_string(), &policy);
                }
            },
            DataEvent::Forwarded { id, forwarded } => self.forwarded(id, *forwarded),
            DataEvent::Kernel { id, event } => self.kernel_event(id, event),
            DataEvent::Filtered {
                id,
                side,
                local,
                result,
            } => self.filtered(id, side, local, *result),
            DataEvent::Delivered { id, result } => {
                if self.channels.contains_key(&id) {
                    let outcome = result.as_ref().map(|_| ()).map_err(|e| e.as_str());
                    self.session.data_delivered(id, outcome);
                }
            }
            DataEvent::Finished {
                id,
                result,
                elapsed,
            } => {
                let Some(c) = self.channels.remove(&id) else {
                    return;
                };
                self.session
                    .data_ended(id, result.as_ref().map(|_| ()).map_err(|e| e.as_str()));
                self.log_transfer(id, &c, result, elapsed);
            }
        }
    }

    /// Whether a relay, or a kernel transfer, is under way.
    pub(super) fn transfer_running(&self) -> bool {
        self.channels.values().any(Channel::running)
    }
}

//! The relay: a transfer carried through the gateway's own sockets. Each
//! side is a one-shot, peer-bound listener (`pinhole.rs`) or a connection
//! the gateway makes; once both are there, one task takes the connections
//! and copies the bytes both ways (`copy.rs`, zero-copy through a pipe in
//! `splice.rs`), with a deadline on every read and write.
//!
//! The task is the channel's: dropping the path aborts it, and its sockets
//! close with a reset unless their direction had ended cleanly.

mod copy;
mod pinhole;
mod splice;

use super::{
    Carriage, Context, Cutting, Leave, PathEvent, Preparing, Reason, Reports, Start, TransferPath,
};
use crate::ftp::session::{ConnectDeadline, Endpoint, Side};
use crate::proxy::events::Telemetry;
use crate::proxy::sockets::{connect_as, normal_close, reset_on_close, unspecified_like};
pub(crate) use copy::PeerBroke;
use copy::{relay_counted, RelayLimits};
use pinhole::{Pinhole, PinholeError, PinholeRequest};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tracing::{debug, warn};

/// One side of a relayed channel before the relay starts.
enum Prepared {
    /// Listening for its peer.
    Pinhole(Pinhole),
    /// Being connected; the connection comes here once made.
    Connecting(oneshot::Receiver<TcpStream>),
    /// Connected.
    Stream(TcpStream),
}

/// A relayed channel.
pub(crate) struct RelayPath {
    session: u64,
    reports: Reports,
    telemetry: Arc<Telemetry>,
    client: Option<Prepared>,
    server: Option<Prepared>,
    /// The relay task, once started.
    task: Option<AbortHandle>,
}

impl RelayPath {
    /// A relay for session `session`'s channel, reporting through
    /// `reports`; strangers and expired pinholes go to `telemetry`.
    pub(crate) fn new(session: u64, reports: Reports, telemetry: Arc<Telemetry>) -> RelayPath {
        RelayPath {
            session,
            reports,
            telemetry,
            client: None,
            server: None,
            task: None,
        }
    }

    fn side(&mut self, side: Side) -> &mut Option<Prepared> {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// A connection made since it was asked for takes its place.
    fn settle(p: &mut Option<Prepared>) {
        if let Some(Prepared::Connecting(rx)) = p {
            match rx.try_recv() {
                Ok(s) => *p = Some(Prepared::Stream(s)),
                Err(oneshot::error::TryRecvError::Empty) => {}
                Err(oneshot::error::TryRecvError::Closed) => *p = None,
            }
        }
    }

    fn listen(
        &mut self,
        side: Side,
        expect_peer: crate::addrs::PeerIp,
        at: &Context<'_>,
    ) -> Preparing {
        let rules = at.rules;
        let (bind, range) = match side {
            Side::Client => (at.pinhole_bind, rules.data.client_ports),
            Side::Server => (
                at.server_local
                    .map(|a| a.ip())
                    .unwrap_or(unspecified_like(*expect_peer)),
                rules.data.server_ports,
            ),
        };
        let req = PinholeRequest {
            bind,
            range,
            expect_peer: rules.security.check_data_peer.then_some(expect_peer),
            transparent: side == Side::Client && at.tproxy,
        };
        match Pinhole::open(req) {
            Ok(p) => {
                let local = p.local_addr();
                debug!(session = self.session, side = crate::proxy::plain::side(side), %local, expect = %expect_peer, "pinhole open");
                *self.side(side) = Some(Prepared::Pinhole(p));
                Preparing::Ready(local)
            }
            Err(e) => {
                warn!(session = self.session, side = crate::proxy::plain::side(side), error = %e, "cannot open pinhole");
                Preparing::Failed(Reason::new(e))
            }
        }
    }

    fn connect(
        &mut self,
        side: Side,
        to: SocketAddr,
        within: ConnectDeadline,
        at: &Context<'_>,
    ) -> Preparing {
        let timeout = match within {
            ConnectDeadline::Connect => at.rules.limits.connect_timeout,
            ConnectDeadline::PassiveProbe => at.rules.data.passive_probe_timeout,
        };
        let from = match side {
            Side::Client => Some(at.client_local.ip()),
            Side::Server => at.server_local.map(|a| a.ip()),
        };
        // Under TPROXY the client expects the server's address as the
        // source of an active-mode connection.
        let transparent = side == Side::Client && at.tproxy;
        let (made, connection) = oneshot::channel();
        *self.side(side) = Some(Prepared::Connecting(connection));
        let reports = self.reports.clone();
        let session = self.session;
        let fallback = *at.client_local;
        tokio::spawn(async move {
            match connect_as(from, to, timeout, transparent).await {
                Ok(stream) => {
                    let local = stream.local_addr().unwrap_or(fallback);
                    // Until the relay takes it, dropping it must reset.
                    reset_on_close(&stream);
                    if let Err(stream) = made.send(stream) {
                        // The channel is gone: nothing was carried on it.
                        normal_close(&stream);
                        return;
                    }
                    reports.send(PathEvent::Prepared { side, at: local });
                }
                Err(e) => {
                    debug!(session, side = crate::proxy::plain::side(side), error = %e, "data connect failed");
                    reports.send(PathEvent::NotPrepared {
                        side,
                        reason: Reason::new(e),
                    });
                }
            }
        });
        Preparing::Pending
    }
}

impl TransferPath for RelayPath {
    fn name(&self) -> &'static str {
        "relay"
    }

    fn carriage(&self) -> Carriage {
        Carriage::Through
    }

    fn takes(&self, endpoint: &Endpoint) -> bool {
        matches!(endpoint, Endpoint::Listen { .. } | Endpoint::Connect { .. })
    }

    fn prepare(&mut self, side: Side, endpoint: Endpoint, at: &Context<'_>) -> Preparing {
        match endpoint {
            Endpoint::Listen { expect_peer } => self.listen(side, expect_peer, at),
            Endpoint::Connect { to, within } => self.connect(side, to, within, at),
            Endpoint::Forward { .. } => {
                Preparing::Failed(Reason::new("the relay does not forward in the kernel"))
            }
        }
    }

    fn ready(&mut self) -> bool {
        Self::settle(&mut self.client);
        Self::settle(&mut self.server);
        let ready =
            |p: &Option<Prepared>| matches!(p, Some(Prepared::Pinhole(_) | Prepared::Stream(_)));
        ready(&self.client) && ready(&self.server)
    }

    fn start(&mut self, start: Start<'_>) {
        let (Some(client), Some(server)) = (self.client.take(), self.server.take()) else {
            return;
        };
        let rules = start.rules;
        let deadline = rules.data.pinhole_timeout;
        let limits = RelayLimits {
            idle: rules.limits.transfer_idle_timeout,
            rate: rules.limits.bandwidth_per_session,
        };
        let progress = start.progress.unwrap_or_default();
        let keep = start.keep;
        let reports = self.reports.clone();
        let session = self.session;
        let telemetry = self.telemetry.clone();
        let task = tokio::spawn(async move {
            // Dropped with the sockets, whether the task ends or is aborted.
            let _keep = keep;
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
                    let to_session = reports.clone();
                    let delivered = move |result: Result<(), String>| {
                        to_session.send(PathEvent::Delivered(result.map_err(Reason::new)));
                    };
                    relay_counted(c, s, limits, &progress, delivered)
                        .await
                        .map_err(Reason::of_relay)
                }
                Err(e) => Err(Reason::new(e)),
            };
            reports.send(PathEvent::Ended {
                result,
                elapsed: Some(started.elapsed()),
            });
        });
        self.task = Some(task.abort_handle());
    }

    fn running(&self) -> bool {
        self.task.is_some()
    }

    fn cut(&mut self) -> Cutting<'_> {
        // Dropping the path aborts the task, which resets both sockets.
        Box::pin(std::future::ready(()))
    }

    fn leave_to_finish(&mut self, _: Leave) {
        // The relay's sockets are the gateway's: nothing goes on without it.
    }

    fn ended(&mut self) {}
}

impl Drop for RelayPath {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
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
        Prepared::Connecting(rx) => rx
            .await
            .map_err(|_| "the data connection was not made".to_string()),
        Prepared::Pinhole(p) => p.accept(deadline, on_stranger).await.map_err(|e| {
            if matches!(e, PinholeError::Expired { .. }) {
                on_expired();
            }
            e.to_string()
        }),
    }
}

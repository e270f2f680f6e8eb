//! Data channels the kernel forwards ([`Endpoint::Forward`]): the driver
//! reserves the gateway port, asks the kernel thread for the pinhole, and
//! reports the pinhole's end to the engine as a relay's would be, and logs
//! the transfer with `path=kernel`.
//!
//! A mode conversion on the kernel data plane stays on the relay, behind a
//! kernel filter element: only the expected peer's connection to the
//! relay's port is marked (the operator's accept line lets it in), every
//! other new connection to that port is dropped in the kernel.
//!
//! The reservation is a listening socket on the gateway port that never
//! accepts: the pinhole's connection is translated before it could reach
//! it, and while it is held no relay pinhole can take the same port.
//!
//! [`Endpoint::Forward`]: crate::ftp::session::Endpoint::Forward

use super::super::kernel::{KernelPinhole, Withdraw, ANSWER_WITHIN};
use super::super::pinhole::{Pinhole, PinholeRequest};
use super::super::relay::Moved;
use super::channels::DataEvent;
use super::Driver;
use crate::dataplane::{
    ClientAddr, FlowEvent, GatewayAddr, PeerIp, PinholeFlow, ServerAddr, SourceNat,
};
use crate::ftp::session::{Action, ClientMode, DataId, DataPlane, ServerMode, Side};
use crate::rules::Kind;
use std::net::SocketAddr;
use std::time::Duration;
use tracing::{debug, warn};

/// How long a session that has ended waits for its kernel transfers that
/// the server reported complete to close, so they are logged: the last
/// bytes may still be in flight after the server's `226`, and the kernel
/// thread notices a close within its poll interval.
const SETTLE_AFTER_SESSION: Duration = Duration::from_secs(2);

/// Longest a cut holds up the control connection: a netlink round trip
/// takes well under a millisecond, but the kernel thread may be reading
/// conntrack when asked.
const CUT_WITHIN: Duration = Duration::from_millis(500);

/// A channel's pinhole in the kernel. Dropping it withdraws the pinhole,
/// and cuts the connection it forwards unless that was left to finish:
/// however a channel ends, nothing of it stays in the kernel unfollowed.
pub(super) struct KernelChannel {
    pinhole: KernelPinhole,
    /// The client dials (client passive); otherwise the server does.
    client_dials: bool,
    /// The kernel forwards its connection (rather than filtering one to a
    /// relay, whose own sockets end it). Cut when dropped even before the
    /// kernel thread has reported it established: a connection made a
    /// moment ago is as live as any.
    forwards: bool,
    /// Left to finish in the kernel after its session (a transfer the
    /// server reported complete): the kernel thread follows it to its end.
    keep_connection: bool,
    _reserved: Option<Pinhole>,
}

impl KernelChannel {
    fn new(
        mut pinhole: KernelPinhole,
        client_dials: bool,
        forwards: bool,
        reserved: Option<Pinhole>,
    ) -> KernelChannel {
        if !forwards {
            pinhole.set_on_drop(Withdraw::Forget);
        }
        KernelChannel {
            pinhole,
            client_dials,
            forwards,
            keep_connection: false,
            _reserved: reserved,
        }
    }
}

impl KernelChannel {
    /// Withdraws the pinhole and cuts the connection it forwards, waiting
    /// (at most [`CUT_WITHIN`]) until the kernel has it; dropping it later
    /// does nothing more.
    pub(super) async fn cut(&mut self) {
        if !self.forwards {
            return;
        }
        self.pinhole.cut(CUT_WITHIN).await;
    }

    /// Its connection is left to finish in the kernel, after its session.
    pub(super) fn left_to_finish(&self) -> bool {
        self.keep_connection
    }

    /// Leaves its connection to finish in the kernel when dropped: the
    /// kernel thread follows it to its end, logs it, and cuts it if it
    /// idles past its bound or the gateway stops.
    pub(super) fn leave_to_finish(&mut self) {
        self.keep_connection = true;
        if self.forwards {
            self.pinhole.set_on_drop(Withdraw::Detach);
        }
    }
}

impl std::fmt::Debug for KernelChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelChannel")
            .field("pinhole", &self.pinhole)
            .finish()
    }
}

/// What the kernel thread's answer to one forward request carries back to
/// the session.
pub(super) struct Forwarded {
    pub side: Side,
    pub gateway: GatewayAddr,
    pub client_dials: bool,
    pub reserved: Option<Pinhole>,
    pub result: Result<KernelPinhole, String>,
}

impl Driver {
    /// Asks the kernel to forward channel `id`'s one connection from
    /// `expect_peer` to `to`; reports with `data_prepared` (the address the
    /// peer is to dial) or `data_failed` (the engine then relays).
    pub(super) fn prepare_forward(
        &mut self,
        id: DataId,
        side: Side,
        expect_peer: PeerIp,
        to: SocketAddr,
        exact: bool,
    ) {
        let policy = self.policy();
        let Some(plane) = self.gw.kernel.clone() else {
            self.session
                .data_failed(id, side, "the kernel data path is off", &policy);
            return;
        };
        let rules = policy.rules();
        let timeout = rules.data.pinhole_timeout;
        let outside = self.server_local.map(|a| a.ip());
        let (flow, reserved) = if exact {
            // Transparent mode: the client dials the server's own address;
            // that one flow is admitted as it is.
            (
                PinholeFlow::exact(expect_peer, ServerAddr::new(to), timeout),
                None,
            )
        } else {
            let (bind, range) = match side {
                Side::Client => (self.client_local.ip(), rules.data.client_ports),
                Side::Server => (
                    outside.unwrap_or(self.client_local.ip()),
                    rules.data.server_ports,
                ),
            };
            let req = PinholeRequest {
                bind,
                range,
                expect_peer: Some(expect_peer),
                transparent: false,
            };
            let p = match self.gw.pinholes.open(req) {
                Ok(p) => p,
                Err(e) => {
                    let reason = format!("no gateway port for a kernel pinhole: {e}");
                    self.session.data_failed(id, side, &reason, &policy);
                    return;
                }
            };
            let gateway = GatewayAddr::new(p.local_addr());
            let flow = match side {
                // Client passive: leave towards the server from the
                // gateway's outside address.
                Side::Client => PinholeFlow::passive(
                    expect_peer,
                    gateway,
                    ServerAddr::new(to),
                    outside.map(SourceNat::new),
                    timeout,
                ),
                // Client active: towards the client from the gateway's
                // inside address, unless the client expects the server's.
                Side::Server => PinholeFlow::active(
                    expect_peer,
                    gateway,
                    ClientAddr::new(to),
                    (self.listener.kind != Kind::Transparent)
                        .then(|| SourceNat::new(self.client_local.ip())),
                    timeout,
                ),
            };
            (flow, Some(p))
        };
        let events = self.tx.clone();
        let on_event = Box::new(move |event| {
            let _ = events.send(DataEvent::Kernel { id, event });
        });
        let tx = self.tx.clone();
        let session = self.id;
        let idle = Some(rules.limits.transfer_idle_timeout);
        tokio::spawn(async move {
            let result = plane.add(flow, idle, on_event, ANSWER_WITHIN).await;
            debug!(
                session,
                channel = id.0,
                ?flow,
                ok = result.is_ok(),
                "kernel pinhole"
            );
            let _ = tx.send(DataEvent::Forwarded {
                id,
                forwarded: Box::new(Forwarded {
                    side,
                    gateway: flow.gateway(),
                    client_dials: side == Side::Client,
                    reserved,
                    result,
                }),
            });
        });
    }

    /// The kernel thread answered a forward request.
    pub(super) fn forwarded(&mut self, id: DataId, f: Forwarded) {
        let policy = self.policy();
        let pinhole = match f.result {
            Ok(p) => p,
            Err(reason) => {
                warn!(session = self.id, channel = id.0, reason = %reason, "kernel pinhole refused");
                self.session.data_failed(id, f.side, &reason, &policy);
                return;
            }
        };
        let kc = KernelChannel::new(pinhole, f.client_dials, true, f.reserved);
        // A channel closed meanwhile drops `kc`, which withdraws it.
        if let Some(c) = self.channels.get_mut(&id) {
            c.kernel = Some(kc);
            self.session.data_prepared(id, f.side, *f.gateway, &policy);
        }
    }

    /// Puts a kernel filter element in front of the relay listener at
    /// `local` for a session on the kernel data plane; the engine hears of
    /// the listener once the element is in. Returns false (nothing to
    /// wait for) otherwise. Not for listeners the client reaches through
    /// the firewall's redirect or TPROXY: there the address the element
    /// would be keyed on is rewritten by another table's rule.
    pub(super) fn filter_relay(
        &mut self,
        id: DataId,
        side: Side,
        expect_peer: PeerIp,
        local: SocketAddr,
    ) -> bool {
        let Some(plane) = self.gw.kernel.clone() else {
            return false;
        };
        if !matches!(self.session.data_plane(), DataPlane::Kernel { .. })
            || !self.policy().rules().security.check_data_peer
            || self.listener.tproxy
            || (side == Side::Client && self.listener.kind == Kind::Transparent)
        {
            return false;
        }
        let ip = match (local.ip().is_unspecified(), side) {
            (false, _) => local.ip(),
            (true, Side::Client) => self.client_local.ip(),
            (true, Side::Server) => match self.server_local {
                Some(a) => a.ip(),
                None => return false,
            },
        };
        let flow = PinholeFlow::relay(
            expect_peer,
            GatewayAddr::new(SocketAddr::new(ip, local.port())),
            self.policy().rules().data.pinhole_timeout,
        );
        // The relay reports on its own connection; the filter's events
        // only end it.
        let on_event = Box::new(|_| {});
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = plane
                .add(flow, None, on_event, ANSWER_WITHIN)
                .await
                .map(|p| KernelChannel::new(p, side == Side::Client, false, None));
            let _ = tx.send(DataEvent::Filtered {
                id,
                side,
                local,
                result: Box::new(result),
            });
        });
        true
    }

    /// The kernel thread answered a relay filter request: the listener is
    /// reported to the engine either way. Without the element the relay
    /// still checks its peer; only a default-drop input chain would keep
    /// the peer out, which the warning says.
    pub(super) fn filtered(
        &mut self,
        id: DataId,
        side: Side,
        local: SocketAddr,
        result: Result<KernelChannel, String>,
    ) {
        let policy = self.policy();
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        match result {
            Ok(k) => c.filters.push(k),
            Err(reason) => {
                warn!(session = self.id, channel = id.0, ?side, %local, reason = %reason, "no kernel filter for this relay pinhole; a default-drop input chain will not let its peer in");
            }
        }
        self.session.data_prepared(id, side, local, &policy);
    }

    /// Starts a kernel channel: nothing to copy, only to watch. Returns
    /// false for a relayed channel.
    pub(super) fn start_forward(
        &mut self,
        id: DataId,
        client_mode: ClientMode,
        server_mode: ServerMode,
    ) -> bool {
        let Some(c) = self.channels.get_mut(&id) else {
            return false;
        };
        if c.kernel.is_none() {
            return false;
        }
        c.modes = Some((client_mode, server_mode));
        c.started = Some(std::time::Instant::now());
        true
    }

    /// After the session's end: waits, within [`SETTLE_AFTER_SESSION`],
    /// for the transfers the server reported complete, so they are logged
    /// with their counts: kernel ones, and relays that have delivered all
    /// their data (a client may close its end of the data connection only
    /// after QUIT). A kernel transfer still open then is left to finish in
    /// the kernel (only its pinhole is withdrawn). Any other channel is
    /// cut when the driver drops.
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
            if let Some(k) = self.channels.get_mut(&id).and_then(|c| c.kernel.as_mut()) {
                k.leave_to_finish();
                debug!(
                    session = self.id,
                    channel = id.0,
                    "kernel transfer left to finish after its session"
                );
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

    /// One event of channel `id`'s kernel pinhole.
    pub(super) fn kernel_event(&mut self, id: DataId, event: FlowEvent) {
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        let Some(kc) = c.kernel.as_mut() else {
            return;
        };
        match event {
            FlowEvent::Established { dialer } => {
                debug!(session = self.id, channel = id.0, %dialer, "kernel transfer established");
            }
            FlowEvent::Finished { counts, duration } => {
                kc.pinhole.ended();
                let (up, down) = if kc.client_dials {
                    (counts.from_dialer, counts.to_dialer)
                } else {
                    (counts.to_dialer, counts.from_dialer)
                };
                if let Some(c) = self.channels.remove(&id) {
                    self.session.data_ended(id, Ok(()));
                    self.log_transfer(id, &c, Ok(Moved { up, down }), duration);
                }
            }
            FlowEvent::Expired | FlowEvent::Failed(_) => {
                kc.pinhole.ended();
                let reason = match &event {
                    FlowEvent::Failed(r) => format!("kernel pinhole failed: {r}"),
                    _ => "no connection through the kernel pinhole in time".to_string(),
                };
                let Some(c) = self.channels.remove(&id) else {
                    return;
                };
                self.session.data_ended(id, Err(&reason));
                if c.started.is_some() {
                    let elapsed = c.started.map(|s| s.elapsed()).unwrap_or_default();
                    self.log_transfer(id, &c, Err(reason), elapsed);
                }
            }
        }
    }
}

//! A session's start: the destination checked, the engine's session made
//! from the rules in force, the server reached (for listeners that know
//! it up front), then the driver's loop.

use super::ended::Ended;
use super::route::fixed_upstream;
use super::{sleep_until, Clock, DataEvent, Driver, SessionGateway};
use crate::addrs::{ClientAddr, GatewayAddr};
use crate::ftp::framer::LineFramer;
use crate::ftp::refusal::Refusal;
use crate::ftp::session::{
    Action, CloseReason, DataPlane, Event, Session, SessionConfig, Upstream,
};
use crate::proxy::admission::{Dismissal, Slot};
use crate::proxy::datapath::{PathReport, SessionPaths};
use crate::proxy::plain::{plain_io_error, UpstreamFailure};
use crate::proxy::sockets::{connect_from, unspecified_like};
use crate::rules::{DataPath, Kind, Listener, Rules};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::warn;

/// Runs one session from its accepted connection to its end; says how it
/// ended.
pub(super) async fn start(
    gw: Arc<SessionGateway>,
    listener: Listener,
    rules: Arc<Rules>,
    mut client: TcpStream,
    peer: ClientAddr,
    client_local: GatewayAddr,
    admission: Arc<Slot>,
) -> io::Result<Ended> {
    let id = admission.id;
    // Keepalive, Nagle off and urgent data inline come with the socket from
    // its listener (`listeners.rs`).
    let upstream = match fixed_upstream(&listener, &client, client_local) {
        Ok(u) => u,
        Err(e) => {
            let _ = client.write_all(&Refusal::UnknownDestination.reply()).await;
            return Err(e);
        }
    };
    if let Some(to) = upstream {
        if gw.listeners.is_own_listener(to) {
            // Reached directly, a transparent listener's original
            // destination is itself: connecting on would loop through the
            // gateway until a limit stopped it.
            gw.telemetry.denied(
                Some(id),
                *peer,
                "-",
                "self-destination",
                &format!("{to} is one of the gateway's own listeners"),
                None,
            );
            client.write_all(&Refusal::SelfDestination.reply()).await?;
            return Ok(Ended::early(Some(to), "denied"));
        }
        if !listener.may_reach(to.ip()) {
            gw.telemetry.denied(
                Some(id),
                *peer,
                "-",
                "server-not-allowed",
                &format!("{to} is not in the listener's servers"),
                None,
            );
            client.write_all(&Refusal::ServerNotAllowed.reply()).await?;
            return Ok(Ended::early(Some(to), "denied"));
        }
    }
    let cfg = config(&gw, &listener, &rules, peer, upstream);
    let pinhole_bind = match cfg.client_advertise {
        Some(_) => unspecified_like(client_local.ip()),
        None => client_local.ip(),
    };
    // The session's clock starts here: its login deadline covers the
    // connection to the server (its idle timeout starts once the driver
    // listens to both peers).
    let clock = Clock::start();
    let mut session = Session::new(cfg);
    let mut server = None;
    if let Some(to) = upstream {
        // Admission may close the session before the driver runs: a slow
        // server must not keep an evicted session's sockets open.
        let connect = connect_from(None, to, rules.limits.connect_timeout);
        let deadline = session.poll_timeout().map(|t| clock.instant(t));
        let connected = tokio::select! {
            r = connect => r,
            () = admission.evicted() => {
                warn!(session = id, client = %peer, server = %to, reason = Dismissal::Evicted.reason(), "closing while connecting to the server");
                session.end(CloseReason::Evicted);
                last_words(&gw, &mut client, &mut session, id, Some(to)).await;
                return Ok(Ended::early(Some(to), "evicted"));
            }
            () = sleep_until(deadline) => {
                session.handle_timeout(clock.now());
                last_words(&gw, &mut client, &mut session, id, Some(to)).await;
                return Ok(Ended::early(Some(to), "login timeout"));
            }
        };
        match connected {
            Ok(s) => server = Some(s),
            Err(e) => {
                let error = plain_io_error(&e);
                let why = UpstreamFailure::of_connect(&e);
                gw.telemetry
                    .upstream_failed(id, *peer, &to.to_string(), why, &error);
                client
                    .write_all(
                        &Refusal::Unreachable {
                            server: to,
                            error: &error,
                        }
                        .reply(),
                    )
                    .await?;
                return Ok(Ended::early(Some(to), "server unreachable"));
            }
        }
    }
    let (client_r, client_w) = client.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let to_session = tx.clone();
    let paths = SessionPaths::new(
        id,
        gw.telemetry.clone(),
        gw.kernel.as_ref(),
        Arc::new(move |report: PathReport| {
            let _ = to_session.send(DataEvent::Path(report));
        }),
    );
    let max_line = rules.limits.max_line;
    let mut d = Driver {
        gw,
        listener,
        started_rules: rules,
        id,
        session,
        clock,
        client_local,
        client_r: Some(client_r),
        client_w,
        server_r: None,
        server_w: None,
        server_local: None,
        from_client: LineFramer::new(max_line),
        from_server: LineFramer::new(max_line),
        channels: HashMap::new(),
        paths,
        out: Vec::new(),
        tx,
        rx,
        opaque: false,
        close_pending: false,
        dismissed: false,
        end: "closed",
        pinhole_bind,
        admission,
    };
    if let Some(s) = server {
        d.attach_server(s);
    }
    // Both control connections are in hand: the driver starts listening.
    d.heard();
    let r = d.run().await;
    d.finish_transfers().await;
    r.map(|_| Ended {
        user: d.session.user().map(String::from),
        server: d.session.server().map(|s| s.to_string()),
        reason: if d.session.quit() {
            "client quit"
        } else {
            d.end
        },
    })
}

/// The engine's settings for a session, from the rules it was accepted
/// under.
fn config(
    gw: &SessionGateway,
    listener: &Listener,
    rules: &Rules,
    peer: ClientAddr,
    upstream: Option<SocketAddr>,
) -> SessionConfig {
    let mut cfg = SessionConfig::for_client(
        peer,
        upstream
            .map(Upstream::Fixed)
            .unwrap_or(Upstream::UserAtHost),
    );
    cfg.bounce_protection = rules.security.bounce_protection;
    cfg.refuse_low_ports = rules.security.refuse_low_ports;
    cfg.trust_passive_address = rules.security.trust_passive_address;
    cfg.passive_known_dead = upstream.is_some_and(|u| gw.passive.known_dead(u.ip()));
    cfg.passive_known_alive = upstream.is_some_and(|u| gw.passive.known_alive(u.ip()));
    cfg.client_advertise = match listener.kind {
        Kind::Reverse => listener.advertise_for(peer.ip()),
        // The client believes it talks to the server itself; the firewall
        // redirects its data connections to that address here too.
        Kind::Transparent => upstream.map(|u| u.ip()),
        _ => None,
    };
    cfg.data_plane = match rules.data.path {
        DataPath::Kernel | DataPath::Auto if gw.kernel.is_some() => DataPlane::Kernel {
            exact: listener.kind == Kind::Transparent,
        },
        _ => DataPlane::Relay,
    };
    cfg.timeouts = super::timeouts(rules);
    cfg
}

/// Writes what the engine said to a client whose session ended before its
/// server was reached, within a bound (the client may not be reading).
async fn last_words(
    gw: &SessionGateway,
    client: &mut TcpStream,
    session: &mut Session,
    id: u64,
    server: Option<SocketAddr>,
) {
    let mut bytes = Vec::new();
    while let Some(action) = session.poll_action() {
        match action {
            Action::ToClient(b) => bytes.extend_from_slice(&b),
            Action::Event(Event::LoginTimeout) => {
                gw.telemetry.login_timeout(id, session.client(), server)
            }
            _ => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), client.write_all(&bytes)).await;
}

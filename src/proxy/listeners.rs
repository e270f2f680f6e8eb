//! The listening sockets: bound at start, matched to the rules by name, and
//! brought in line with the rules on every reload.

use super::admission::Admission;
use super::control::{self, OwnListeners, SessionGateway};
use super::current_rules::CurrentRules;
use super::error::ProxyError;
use super::events::Telemetry;
use super::sockets::bind_listener;
use crate::addrs::{host_and_port, ClientAddr};
use crate::ftp::refusal::Refusal;
use crate::rules::{Listener, Rules};
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// One bound listener.
struct Running {
    /// The address and mode in the rules it was bound for.
    listen: SocketAddr,
    tproxy: bool,
    /// Where it is bound (differs from `listen` for port 0).
    bound: SocketAddr,
    task: JoinHandle<()>,
}

/// The bound listeners, by name.
#[derive(Default)]
pub(crate) struct ListenerSet {
    running: Mutex<BTreeMap<String, Running>>,
}

/// Whether `ip` is an address of one of this host's interfaces. (Binding
/// to it would not tell: with TPROXY or `ip_nonlocal_bind` any address
/// binds.)
fn is_local(ip: IpAddr) -> bool {
    match if_addrs::get_if_addrs() {
        Ok(ifs) => ifs.iter().any(|i| i.ip().to_canonical() == ip),
        Err(e) => {
            warn!(error = %e, "cannot list the interface addresses");
            false
        }
    }
}

impl ListenerSet {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the listener `name` is bound now.
    pub(crate) fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.lock().get(name).map(|r| r.bound)
    }

    /// Whether `to` is one of the gateway's own listeners: a connection
    /// there would come straight back into the gateway.
    pub(crate) fn is_own(&self, to: SocketAddr) -> bool {
        let to = host_and_port(to);
        let (exact, wildcard) = {
            let running = self.lock();
            let exact = running.values().any(|r| r.bound == to);
            let wildcard = running
                .values()
                .any(|r| r.bound.port() == to.port() && r.bound.ip().is_unspecified());
            (exact, wildcard)
        };
        exact || (wildcard && is_local(to.ip()))
    }

    /// Stops every listener (their sockets close).
    pub(crate) fn stop_all(&self) {
        for (_, r) in std::mem::take(&mut *self.lock()) {
            r.task.abort();
        }
    }
}

impl OwnListeners for ListenerSet {
    fn is_own_listener(&self, to: SocketAddr) -> bool {
        self.is_own(to)
    }
}

fn bind(l: &Listener) -> io::Result<(TcpListener, SocketAddr)> {
    let listener = bind_listener(l.listen, l.tproxy, 1024)?;
    // Options every control connection wants, set once here: accepted
    // connections inherit them (a session used to spend a system call on
    // each). Nagle off, as replies are single short lines. Urgent data
    // inline: a client that sends ABOR, or the DM of the telnet synch, as
    // TCP urgent data (ftplib sends the whole `ABOR\r\n` so) would
    // otherwise lose that byte, and a lost LF leaves ABOR unfinished in
    // the framer.
    let s = socket2::SockRef::from(&listener);
    s.set_tcp_nodelay(true)?;
    s.set_out_of_band_inline(true)?;
    let bound = host_and_port(listener.local_addr()?);
    Ok((listener, bound))
}

/// The listeners' room: the bound listeners, and what their accept loops
/// need: the rules in force, admission, and what sessions share. (The set
/// of bound listeners is a handle of its own, as sessions ask it whether
/// a destination is the gateway itself.)
pub(crate) struct Listening {
    listeners: Arc<ListenerSet>,
    /// The runtime the gateway started on: a reload binds listeners and
    /// starts their tasks there.
    rt: tokio::runtime::Handle,
    rules: Arc<CurrentRules>,
    admission: Arc<Admission>,
    sessions: Arc<SessionGateway>,
    telemetry: Arc<Telemetry>,
}

impl Listening {
    /// Nothing bound yet: see [`bind_all`](Self::bind_all).
    pub(crate) fn new(
        listeners: Arc<ListenerSet>,
        rt: tokio::runtime::Handle,
        rules: Arc<CurrentRules>,
        admission: Arc<Admission>,
        sessions: Arc<SessionGateway>,
        telemetry: Arc<Telemetry>,
    ) -> Listening {
        Listening {
            listeners,
            rt,
            rules,
            admission,
            sessions,
            telemetry,
        }
    }

    /// The bound listeners.
    pub(crate) fn listeners(&self) -> &ListenerSet {
        &self.listeners
    }

    /// Binds and starts the listener `l`.
    fn spawn_listener(self: &Arc<Self>, l: &Listener) -> io::Result<Running> {
        let _rt = self.rt.enter();
        let (listener, bound) = bind(l)?;
        info!(listener = %l.name, addr = %bound, kind = l.kind.as_str(), "listening");
        let task = self
            .rt
            .spawn(accept_loop(self.clone(), l.name.clone(), listener));
        Ok(Running {
            listen: l.listen,
            tproxy: l.tproxy,
            bound,
            task,
        })
    }

    /// Binds every listener of the rules in force; the first that cannot
    /// be bound is the error.
    pub(crate) fn bind_all(self: &Arc<Self>) -> Result<Vec<SocketAddr>, ProxyError> {
        let rules = self.rules.get();
        let mut addrs = Vec::new();
        for l in &rules.listeners {
            match self.spawn_listener(l) {
                Ok(r) => {
                    addrs.push(r.bound);
                    self.listeners.lock().insert(l.name.clone(), r);
                }
                Err(source) => {
                    self.listeners.stop_all();
                    return Err(ProxyError::Bind {
                        name: l.name.clone(),
                        addr: l.listen,
                        source,
                    });
                }
            }
        }
        Ok(addrs)
    }

    /// Brings the listeners in line with `rules`, matching them by name: a
    /// removed one stops accepting (its sessions go on), a moved one is
    /// bound at its new address before the old socket closes (if it cannot
    /// be, the old one stays and the log says a restart is needed), a new
    /// one is bound.
    pub(crate) fn reconcile_listeners(self: &Arc<Self>, rules: &Rules) {
        let mut running = self.listeners.lock();
        let gone: Vec<String> = running
            .keys()
            .filter(|n| !rules.listeners.iter().any(|l| &l.name == *n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(r) = running.remove(&name) {
                r.task.abort();
                info!(listener = %name, addr = %r.bound, "listener removed from the rules: no longer accepting; its sessions finish on the rules they started with");
            }
        }
        for l in &rules.listeners {
            match running.get(&l.name) {
                Some(r) if r.listen == l.listen && r.tproxy == l.tproxy => {}
                Some(r) => {
                    let old = r.bound;
                    match self.spawn_listener(l) {
                        Ok(new) => {
                            info!(listener = %l.name, from = %old, to = %new.bound, "listener moved");
                            if let Some(r) = running.insert(l.name.clone(), new) {
                                r.task.abort();
                            }
                        }
                        Err(e) => {
                            warn!(listener = %l.name, addr = %old, wanted = %l.listen, error = %e, "listener address changed in the rules but the new one cannot be bound; it stays where it is until a restart")
                        }
                    }
                }
                None => match self.spawn_listener(l) {
                    Ok(new) => {
                        info!(listener = %l.name, addr = %new.bound, "listener added");
                        running.insert(l.name.clone(), new);
                    }
                    Err(e) => {
                        error!(listener = %l.name, addr = %l.listen, error = %e, "new listener cannot be bound; it needs a restart once the address is free")
                    }
                },
            }
        }
    }
}

async fn accept_loop(room: Arc<Listening>, name: String, listener: TcpListener) {
    // The keepalive the listener's sockets inherit; the rules may change it.
    let mut keepalive: Option<Option<Duration>> = None;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep going.
                error!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The rules in force now, and this listener in them by name: a
        // reload may have reordered, changed or removed it.
        let rules = room.rules.get();
        let Some(config) = rules.listener(&name).cloned() else {
            refuse(
                &room.telemetry,
                stream,
                peer,
                "listener removed from the rules",
                Refusal::ListenerRemoved.reply(),
            );
            continue;
        };
        let want = rules.limits.control_keepalive;
        if keepalive != Some(want) {
            // Connections accepted from now on inherit it; this one, made
            // before, gets it directly.
            let set = super::keepalive::set_on_listener(&listener, want)
                .and_then(|_| super::keepalive::set_on_listener(&stream, want));
            match set {
                Ok(()) => keepalive = Some(want),
                Err(e) => {
                    warn!(listener = %name, error = %e, "cannot set keepalive on control connections")
                }
            }
        }
        let client = ClientAddr::new(peer);
        match room.admission.admit(client.ip(), &rules.limits) {
            Ok(guard) => {
                tokio::spawn(control::serve(
                    room.sessions.clone(),
                    rules.clone(),
                    config,
                    stream,
                    client,
                    guard,
                ));
            }
            Err(refusal) => {
                let reason = refusal.reason();
                let msg = Refusal::Busy { limit: reason }.reply();
                refuse(&room.telemetry, stream, peer, reason, msg);
            }
        }
    }
}

/// Answers `421` and closes, without holding up the accept loop.
fn refuse(
    telemetry: &Telemetry,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    reason: &str,
    msg: Vec<u8>,
) {
    telemetry.denied(None, peer, "-", reason, "session refused", None);
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut stream = stream;
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&msg)).await;
    });
}

#[cfg(test)]
mod tests {
    use super::is_local;

    #[test]
    fn local_addresses_are_told_from_others() {
        assert!(is_local("127.0.0.1".parse().unwrap()));
        assert!(!is_local("198.51.100.77".parse().unwrap()));
        assert!(!is_local("2001:db8::77".parse().unwrap()));
    }
}

//! The server a session is for: known up front from the listener, or
//! resolved and connected for `USER name@host`.

use super::*;
use crate::ftp::session::RouteFailure;
use crate::proxy::plain::{plain_io_error, UpstreamFailure};

impl Driver {
    pub(super) fn connect_upstream(&mut self, host: String, port: u16) {
        let tx = self.tx.clone();
        let listener = self.listener.clone();
        let timeout = self.policy().rules().limits.connect_timeout;
        tokio::spawn(async move {
            let result = async {
                let server = format!("{host}:{port}");
                let unreachable = |why, text| RouteError::Unreachable {
                    why,
                    server: server.clone(),
                    text,
                };
                // A resolver that does not answer must not hold the session.
                let addrs: Vec<SocketAddr> =
                    tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
                        .await
                        .map_err(|_| {
                            let secs = timeout.as_secs_f64();
                            unreachable(
                                UpstreamFailure::Resolve,
                                format!("Cannot resolve {host}: no answer within {secs} s"),
                            )
                        })?
                        .map_err(|e| {
                            unreachable(
                                UpstreamFailure::Resolve,
                                format!("Cannot resolve {host}: {}", resolve_error(&e)),
                            )
                        })?
                        .collect();
                let allowed: Vec<SocketAddr> = addrs
                    .iter()
                    .copied()
                    .filter(|a| listener.may_reach(a.ip()))
                    .take(MAX_ROUTE_ADDRS)
                    .collect();
                if allowed.is_empty() {
                    return Err(RouteError::NotAllowed(format!(
                        "{host} is not reachable through this gateway"
                    )));
                }
                let mut last = unreachable(UpstreamFailure::Unreachable, String::new());
                for a in allowed {
                    match connect_from(None, a, timeout).await {
                        Ok(s) => return Ok(s),
                        Err(e) => {
                            last = unreachable(
                                UpstreamFailure::of_connect(&e),
                                format!("Cannot reach {a}: {}", plain_io_error(&e)),
                            )
                        }
                    }
                }
                Err(last)
            }
            .await;
            let _ = tx.send(DataEvent::Upstream(result));
        });
    }
}

impl Driver {
    /// The server a `USER name@host` named was not reached: a denial by
    /// the listener's `servers`, or an upstream failure.
    pub(super) fn route_failed(&mut self, e: RouteError) {
        let policy = self.policy();
        let client = self.session.client();
        match e {
            RouteError::NotAllowed(text) => {
                let user = self.session.user().unwrap_or("-").to_string();
                self.gw.telemetry.denied(
                    Some(self.id),
                    client,
                    &user,
                    "server-not-allowed",
                    &text,
                    None,
                );
                self.session
                    .upstream_failed(RouteFailure::NotAllowed(&text), &policy);
            }
            RouteError::Unreachable { why, server, text } => {
                self.gw
                    .telemetry
                    .upstream_failed(self.id, client, &server, why, &text);
                self.session
                    .upstream_failed(RouteFailure::Unreachable(&text), &policy);
            }
        }
    }
}

/// Why the server a `USER name@host` named was not reached.
#[derive(Debug)]
pub(super) enum RouteError {
    /// The rules do not let the client reach it: a denial.
    NotAllowed(String),
    /// It could not be reached: an upstream failure.
    Unreachable {
        /// Its class, as counted.
        why: UpstreamFailure,
        /// The host and port the client named.
        server: String,
        /// In plain words, for the client and the log.
        text: String,
    },
}

/// A resolver's error in plain words: the system's text (`Name or
/// service not known`) without the `failed to lookup address
/// information` tokio puts before it.
fn resolve_error(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text
        .strip_prefix("failed to lookup address information: ")
        .unwrap_or(&text);
    crate::proxy::plain::without_os_error(text)
}

/// Addresses of a routed host name tried at most, each within the connect
/// timeout.
const MAX_ROUTE_ADDRS: usize = 4;

/// The server the connection is for, for listeners that know it up front.
pub(super) fn fixed_upstream(
    listener: &Listener,
    client: &TcpStream,
    client_local: GatewayAddr,
) -> io::Result<Option<SocketAddr>> {
    match listener.kind {
        Kind::Explicit | Kind::Reverse => Ok(listener.upstream),
        Kind::UserAtHost => Ok(None),
        Kind::Transparent if listener.tproxy => Ok(Some(*client_local)),
        Kind::Transparent => {
            crate::proxy::transparent::original_destination_or_local(client, *client_local)
                .map(Some)
        }
    }
}

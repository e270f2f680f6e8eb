//! The server a session is for: known up front from the listener, or
//! resolved and connected for `USER name@host`.

use super::*;

impl Driver {
    pub(super) fn connect_upstream(&mut self, host: String, port: u16) {
        let tx = self.tx.clone();
        let listener = self.listener.clone();
        let timeout = self.policy().rules().limits.connect_timeout;
        tokio::spawn(async move {
            let result = async {
                // A resolver that does not answer must not hold the session.
                let addrs: Vec<SocketAddr> =
                    tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
                        .await
                        .map_err(|_| {
                            format!("Cannot resolve {host}: no answer within {timeout:?}")
                        })?
                        .map_err(|e| format!("Cannot resolve {host}: {e}"))?
                        .collect();
                let allowed: Vec<SocketAddr> = addrs
                    .iter()
                    .copied()
                    .filter(|a| listener.may_reach(a.ip()))
                    .take(MAX_ROUTE_ADDRS)
                    .collect();
                if allowed.is_empty() {
                    return Err(format!("{host} is not reachable through this gateway"));
                }
                let mut last = String::new();
                for a in allowed {
                    match connect_from(None, a, timeout).await {
                        Ok(s) => return Ok(s),
                        Err(e) => last = format!("Cannot connect to {a}: {e}"),
                    }
                }
                Err(last)
            }
            .await;
            let _ = tx.send(DataEvent::Upstream(result));
        });
    }
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

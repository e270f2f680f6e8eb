//! The `metrics:` section: the HTTP endpoint's address, which no listener
//! and no data port may share, and the `/status` token.

use super::super::schema::{RawListener, RawMetrics};
use super::super::*;
use super::context::Ctx;
use super::sockets::parse_socket;
use super::sockets::{clash, listener_sockets};

/// The `metrics:` section. The token file is read here, at load and at
/// every reload, so `ftpalg check` shows a missing or weak token and a
/// reload picks up a new one.
pub(super) fn compile_metrics(
    cx: &mut Ctx,
    m: &RawMetrics,
    data: &DataSettings,
    listeners: &[RawListener],
) -> Option<MetricsSettings> {
    let listen = m.listen.as_ref().and_then(|l| {
        let a = parse_socket(&l.value);
        if a.is_none() {
            cx.error(
                l,
                format!("metrics listen '{}' is not an address:port", l.value),
                "write e.g. 127.0.0.1:9121 or \"[::1]:9121\"",
            );
        }
        if let Some(a) = a {
            let taken = listener_sockets(listeners);
            clash(cx, l, "metrics listen", a, &taken);
            if data.client_ports.contains(a.port()) || data.server_ports.contains(a.port()) {
                cx.error(
                    l,
                    format!(
                        "metrics listen: port {} is inside a data port range",
                        a.port()
                    ),
                    "move the endpoint or the data ranges so they do not overlap",
                );
            }
        }
        a
    });
    let mut token = None;
    if let Some(f) = &m.status_token_file {
        let path = std::path::PathBuf::from(&f.value);
        match StatusToken::read(&path) {
            Ok(t) => {
                if token::readable_by_others(&path) {
                    cx.warn(
                        f,
                        format!("metrics status_token_file '{}' may be read by any user on this host", f.value),
                        "chmod 640 (owner root, group of the run_as user) or 600 (owner the run_as user)",
                    );
                }
                token = Some((path, t));
            }
            Err(e) => cx.error(
                f,
                format!("metrics status_token_file '{}' {e}", f.value),
                "give the absolute path of a file holding one line of at least 16 letters, digits or -._~+/ (e.g. the output of `openssl rand -hex 32`), readable by the run_as user",
            ),
        }
    }
    let settings = MetricsSettings {
        listen: listen?,
        status_token_file: token.as_ref().map(|(p, _)| p.clone()),
        status_token: token.map(|(_, t)| t),
    };
    if let (true, None, Some(l)) = (settings.beyond_loopback(), &m.status_token_file, &m.listen) {
        cx.warn(
            l,
            format!(
                "metrics listen {} is reachable beyond loopback and /status has no token: it shows user names, client addresses and file names to anyone who reaches it",
                settings.listen
            ),
            "set metrics.status_token_file, or listen on 127.0.0.1",
        );
    }
    Some(settings)
}

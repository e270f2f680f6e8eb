//! One listener as written, checked and compiled.

use super::super::schema::*;
use super::super::*;
use super::context::Ctx;

pub(super) fn parse_socket(s: &str) -> Option<SocketAddr> {
    s.trim().parse().ok()
}

pub(super) fn compile_listener(
    cx: &mut Ctx,
    l: &RawListener,
    data: &DataSettings,
    done: &[Listener],
) -> Option<Listener> {
    let mut ok = true;
    if done.iter().any(|d| d.name == l.name.value) {
        cx.error(
            &l.name,
            format!("a listener named '{}' already exists", l.name.value),
            "give each listener its own name",
        );
        ok = false;
    }
    let listen = match parse_socket(&l.listen.value) {
        Some(a) => a,
        None => {
            cx.error(
                &l.listen,
                format!("'{}' is not an address:port", l.listen.value),
                "write e.g. 127.0.0.1:2121 or [::]:21",
            );
            return None;
        }
    };
    if done.iter().any(|d| d.listen == listen) {
        cx.error(
            &l.listen,
            format!("{listen} is already used by another listener"),
            "give each listener its own address and port",
        );
        ok = false;
    }
    if data.client_ports.contains(listen.port()) || data.server_ports.contains(listen.port()) {
        cx.error(
            &l.listen,
            format!("port {} is inside a data port range", listen.port()),
            "move the listener or the data ranges so they do not overlap",
        );
        ok = false;
    }
    let kind = l.kind.value;
    let upstream = match (&l.upstream, kind) {
        (Some(u), Kind::Explicit | Kind::Reverse) => match parse_socket(&u.value) {
            Some(a) => Some(a),
            None => {
                cx.error(
                    u,
                    format!("'{}' is not an address:port", u.value),
                    "write the server as e.g. 198.51.100.10:21",
                );
                ok = false;
                None
            }
        },
        (None, Kind::Explicit | Kind::Reverse) => {
            cx.error(
                &l.kind,
                format!("a {} listener needs an upstream", kind_name(kind)),
                "add upstream: ADDRESS:PORT of the FTP server",
            );
            ok = false;
            None
        }
        (Some(u), _) => {
            cx.error(
                u,
                format!("upstream has no meaning for a {} listener", kind_name(kind)),
                "remove it; this kind finds the server itself",
            );
            ok = false;
            None
        }
        (None, _) => None,
    };
    let servers = match (&l.servers, kind) {
        (Some(list), _) => {
            let mut out = Vec::new();
            let mut good = true;
            for s in list {
                match cx.netset(s) {
                    Some(n) => out.push(n),
                    None => good = false,
                }
            }
            if !good {
                ok = false;
            }
            Some(out)
        }
        (None, Kind::UserAtHost) => {
            cx.error(&l.kind, "a user-at-host listener needs servers: the networks clients may reach".into(), "add e.g. servers: [outside]; without it clients could reach anything the gateway can");
            ok = false;
            None
        }
        (None, _) => None,
    };
    let mut advertise = Vec::new();
    if let Some(list) = &l.advertise {
        if kind != Kind::Reverse {
            if let Some(first) = list.first() {
                cx.warn(
                    &first.clients,
                    "advertise is used only by reverse listeners".into(),
                    "remove it, or make the listener kind: reverse",
                );
            }
        }
        for a in list {
            let net = cx.netset(&a.clients);
            let addr = match a.address.value.trim().parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    cx.error(
                        &a.address,
                        format!("'{}' is not an IP address", a.address.value),
                        "write the address clients of that network can reach",
                    );
                    None
                }
            };
            if let (Some(n), Some(ip)) = (net, addr) {
                advertise.push((n, ip));
            } else {
                ok = false;
            }
        }
    }
    let server_mode = l
        .server_mode
        .as_ref()
        .map(|s| s.value)
        .unwrap_or(data.server_mode);
    ok.then(|| Listener {
        name: l.name.value.clone(),
        listen,
        kind,
        upstream,
        servers,
        advertise,
        server_mode,
        tproxy: l.tproxy.unwrap_or(false),
    })
}

/// The listener kind as written in YAML.
pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Explicit => "explicit",
        Kind::UserAtHost => "user-at-host",
        Kind::Transparent => "transparent",
        Kind::Reverse => "reverse",
    }
}

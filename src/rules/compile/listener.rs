//! One listener as written, checked and compiled.

use super::super::schema::*;
use super::super::*;
use super::context::Ctx;

pub(super) fn parse_socket(s: &str) -> Option<SocketAddr> {
    s.trim().parse().ok()
}

/// Compiles one listener; `earlier` are those before it in the file.
/// Every part is checked even when another has failed.
pub(super) fn compile_listener(
    cx: &mut Ctx,
    l: &RawListener,
    data: &DataSettings,
    earlier: &[RawListener],
) -> Option<Listener> {
    let mut ok = true;
    if let Some(name) = &l.name {
        if earlier
            .iter()
            .any(|d| d.name.as_ref().is_some_and(|n| n.value == name.value))
        {
            cx.error(
                name,
                format!("a listener named '{}' already exists", name.value),
                "give each listener its own name",
            );
            ok = false;
        }
    }
    let listen = l.listen.as_ref().and_then(|s| {
        let a = parse_socket(&s.value);
        if a.is_none() {
            cx.error(
                s,
                format!("'{}' is not an address:port", s.value),
                "write e.g. 127.0.0.1:2121 or [::]:21",
            );
        }
        a.map(|a| (s, a))
    });
    if let Some((s, listen)) = listen {
        if earlier
            .iter()
            .filter_map(|d| d.listen.as_ref().and_then(|x| parse_socket(&x.value)))
            .any(|a| a == listen)
        {
            cx.error(
                s,
                format!("{listen} is already used by another listener"),
                "give each listener its own address and port",
            );
            ok = false;
        }
        if data.client_ports.contains(listen.port()) || data.server_ports.contains(listen.port()) {
            cx.error(
                s,
                format!("port {} is inside a data port range", listen.port()),
                "move the listener or the data ranges so they do not overlap",
            );
            ok = false;
        }
    }
    // Without its kind, nothing else of a listener can be judged: the
    // shape check has said why it is missing.
    let Some(kind_at) = &l.kind else {
        return None;
    };
    let kind = kind_at.value;
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
                kind_at,
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
            cx.error(kind_at, "a user-at-host listener needs servers: the networks clients may reach".into(), "add e.g. servers: [outside]; without it clients could reach anything the gateway can");
            ok = false;
            None
        }
        (None, _) => None,
    };
    let mut advertise = Vec::new();
    if let Some(list) = &l.advertise {
        if kind != Kind::Reverse {
            if let Some(first) = list.iter().find_map(|a| a.clients.as_ref()) {
                cx.warn(
                    first,
                    "advertise is used only by reverse listeners".into(),
                    "remove it, or make the listener kind: reverse",
                );
            }
        }
        for a in list {
            let net = a.clients.as_ref().and_then(|c| cx.netset(c));
            let addr = a
                .address
                .as_ref()
                .and_then(|s| match s.value.trim().parse::<IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        cx.error(
                            s,
                            format!("'{}' is not an IP address", s.value),
                            "write the address clients of that network can reach",
                        );
                        None
                    }
                });
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
    let (Some(name), Some((_, listen))) = (&l.name, listen) else {
        return None;
    };
    ok.then(|| Listener {
        name: name.value.clone(),
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

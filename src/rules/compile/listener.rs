//! One listener as written, checked and compiled, and which of its keys
//! each kind reads.

use super::super::keys::READ_BY;
use super::super::schema::*;
use super::super::*;
use super::context::{at, Ctx};
use super::sockets::{clash, listener_sockets, parse_socket};

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
        let taken = listener_sockets(earlier);
        if clash(cx, s, "listen", listen, &taken) {
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
    for (key, at) in [
        ("upstream", l.upstream.as_ref().map(|s| at(&s.referenced))),
        ("servers", l.servers.as_ref().map(|s| at(&s.referenced))),
        ("advertise", l.advertise.as_ref().map(|s| at(&s.referenced))),
        ("tproxy", l.tproxy.as_ref().map(|s| at(&s.referenced))),
    ] {
        let Some(loc) = at else { continue };
        if let Some((_, kinds, hint)) = READ_BY.iter().find(|(k, _, _)| *k == key) {
            if !kinds.contains(&kind) {
                cx.push(
                    Severity::Error,
                    loc,
                    format!("{key} means nothing for {} listener", a_kind(kind)),
                    hint,
                );
                ok = false;
            }
        }
    }
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
                format!("{} listener needs an upstream", a_kind(kind)),
                "add upstream: ADDRESS:PORT of the FTP server",
            );
            ok = false;
            None
        }
        _ => None,
    };
    let servers = match (&l.servers, kind) {
        (Some(list), _) => {
            let mut out = Vec::new();
            for s in &list.value {
                match cx.netset(s) {
                    Some(n) => out.push(n),
                    None => ok = false,
                }
            }
            if list.value.is_empty() {
                cx.error(
                    list,
                    "servers: [] lets clients reach no server".into(),
                    "list the networks clients may reach, e.g. servers: [routable]",
                );
                ok = false;
            }
            Some(out)
        }
        (None, Kind::UserAtHost) => {
            cx.error(kind_at, "a user-at-host listener needs servers: the networks clients may reach".into(), "add e.g. servers: [routable]; without it clients could reach anything the gateway can");
            ok = false;
            None
        }
        (None, _) => None,
    };
    let mut advertise = Vec::new();
    for a in l.advertise.iter().flat_map(|l| &l.value) {
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
    if let Some(list) = l.advertise.as_ref().filter(|l| l.value.is_empty()) {
        cx.warn(
            list,
            "advertise: [] says nothing".into(),
            "remove it, or list { clients, address } pairs",
        );
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
        tproxy: l.tproxy.as_ref().is_some_and(|t| t.value),
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

/// The kind with its article: `an explicit`, `a reverse`.
fn a_kind(k: Kind) -> String {
    let article = if k == Kind::Explicit { "an" } else { "a" };
    format!("{article} {}", kind_name(k))
}

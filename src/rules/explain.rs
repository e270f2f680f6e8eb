//! `ftpalg check --explain`: the effective policy in plain words.

use super::compile::kind_name;
use super::{DataModeMatch, DataPath, Kind, NetSet, RuleAction, Rules};
use crate::ftp::session::{ServerDataMode, TlsPolicy};
use std::fmt::Write;

fn nets(sets: &[NetSet]) -> String {
    sets.iter()
        .map(|s| {
            let list: Vec<String> = s
                .parts
                .iter()
                .map(|p| match p.except.as_slice() {
                    [] => p.net.to_string(),
                    except => {
                        let e: Vec<String> = except.iter().map(|n| n.to_string()).collect();
                        format!("{} except [{}]", p.net, e.join(", "))
                    }
                })
                .collect();
            if list.len() == 1 && list[0] == s.label {
                s.label.clone()
            } else {
                format!("{} ({})", s.label, list.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn mode_words(m: ServerDataMode) -> &'static str {
    match m {
        ServerDataMode::SameAsClient => "the same mode as the client",
        ServerDataMode::Passive => "passive (PASV/EPSV) always",
        ServerDataMode::Active => "active (PORT/EPRT) always",
        ServerDataMode::Auto => "passive first, and active for the rest of the session if the server's passive port does not answer",
    }
}

fn secs(d: std::time::Duration) -> String {
    if d.as_millis() % 1000 == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Describes the rules in plain words, one idea per line.
pub fn explain(r: &Rules) -> String {
    let mut o = String::new();
    for l in &r.listeners {
        let _ = write!(
            o,
            "Listener '{}' on {} ({}): ",
            l.name,
            l.listen,
            kind_name(l.kind)
        );
        let _ = match l.kind {
            Kind::Explicit => writeln!(o, "every client is relayed to the FTP server {}.", l.upstream.map(|u| u.to_string()).unwrap_or_default()),
            Kind::Reverse => writeln!(o, "clients reach the FTP server {} behind this gateway.", l.upstream.map(|u| u.to_string()).unwrap_or_default()),
            Kind::UserAtHost => writeln!(o, "clients choose the server with USER name@host[:port]."),
            Kind::Transparent => writeln!(o, "connections redirected here by the firewall go on to their original destination{}.", if l.tproxy { " (TPROXY)" } else { "" }),
        };
        match &l.servers {
            Some(s) => {
                let _ = writeln!(
                    o,
                    "  Servers clients may reach: {}; any other is refused.",
                    nets(s)
                );
            }
            None if l.kind == Kind::Transparent => {
                let _ = writeln!(o, "  Servers clients may reach: any.");
            }
            None => {}
        }
        for (net, addr) in &l.advertise {
            let _ = writeln!(
                o,
                "  Clients in {} are told to connect to {addr} for data.",
                nets(std::slice::from_ref(net))
            );
        }
        let _ = writeln!(o, "  Data: the client side follows the client (PASV, EPSV, PORT, EPRT); towards the server: {}.", mode_words(l.server_mode));
    }
    let d = &r.data;
    let _ = writeln!(
        o,
        "Pinholes: clients connect to ports {}, servers to ports {}; each accepts one connection{} within {}.",
        d.client_ports,
        d.server_ports,
        if r.security.check_data_peer { " from the expected peer only" } else { " from ANY address (check_data_peer is off)" },
        secs(d.pinhole_timeout)
    );
    match d.path {
        DataPath::Relay => {}
        DataPath::Kernel => {
            let _ = writeln!(o, "Data path: kernel. Transfers whose two sides use the same direction are forwarded by the kernel through pinholes in ftpalg's nftables table; the others are relayed.");
        }
        DataPath::Auto => {
            let _ = writeln!(o, "Data path: auto. The kernel forwards same-direction transfers if ftpalg can manage its nftables table at start; otherwise every transfer is relayed.");
        }
    }
    if d.path != DataPath::Relay {
        let k = &d.kernel;
        let _ = writeln!(
            o,
            "  Table: inet {} (replaced at start); admitted connections carry conntrack mark {:#010x} under mask {:#010x}; {}.",
            k.table,
            k.mark,
            k.mark_mask,
            match k.log_group {
                Some(g) => format!("strangers turned away at a pinhole are logged through nflog group {g}"),
                None => "strangers turned away at a pinhole are dropped without a log line".into(),
            }
        );
        let _ = writeln!(
            o,
            "  Accept line for default-drop forward and input chains: {}",
            k.config().accept_rule()
        );
    }
    if r.rules.is_empty() {
        let _ = writeln!(o, "Access rules: none; every command is allowed.");
    } else {
        let _ = writeln!(
            o,
            "Access rules, first match wins; a command no rule matches is allowed:"
        );
        for (i, rule) in r.rules.iter().enumerate() {
            let mut what = Vec::new();
            match &rule.command {
                Some(c) => {
                    let mut names: Vec<String> = c.verbs.iter().map(|v| v.to_string()).collect();
                    names.extend(c.classes.iter().map(|c| format!("{c} commands")));
                    what.push(names.join(", "));
                }
                None => what.push("any command".into()),
            }
            if let Some(m) = rule.data_mode {
                what.push(match m {
                    DataModeMatch::Active => "in active mode".into(),
                    DataModeMatch::Passive => "in passive mode".into(),
                });
            }
            if let Some(u) = &rule.user {
                what.push(format!("by users {}", u.join(", ")));
            }
            what.push(match &rule.client {
                Some(c) => format!("from clients in {}", nets(c)),
                None => "from any client".into(),
            });
            what.push(match &rule.server {
                Some(s) => format!("to servers in {}", nets(s)),
                None => "to any server".into(),
            });
            if let Some(l) = &rule.listener {
                what.push(format!("on listener {}", l.join(", ")));
            }
            let verdict = match rule.action {
                RuleAction::Allow => "allowed".to_string(),
                RuleAction::Deny => {
                    format!("denied with \"{} {}\"", rule.reply_code, rule.reply_text)
                }
            };
            let _ = writeln!(
                o,
                "  {}. '{}' (line {}): {} {verdict}.",
                i + 1,
                rule.name,
                rule.line,
                what.join(" ")
            );
        }
    }
    let s = &r.security;
    // Each switch says what it does as set, not what it would do on.
    let _ = writeln!(o, "Security: bounce protection {}; low ports {}; passive replies are honoured only after a PASV/EPSV the gateway sent; the server's 227 address is {}.",
        if s.bounce_protection {
            "on (PORT/EPRT must name the client's own address)"
        } else {
            "OFF (PORT/EPRT may name any host: servers can be made to connect to third parties)"
        },
        if s.refuse_low_ports {
            "refused (PORT/EPRT below 1024 refused)"
        } else {
            "ALLOWED (PORT/EPRT may name ports below 1024)"
        },
        if s.trust_passive_address { "TRUSTED" } else { "ignored in favour of the control connection's address" });
    let _ = writeln!(o, "TLS: {}.", match s.tls {
        TlsPolicy::Refuse => "AUTH TLS is refused with 534 so clients continue in plain FTP",
        TlsPolicy::Passthrough => "AUTH TLS is passed through; such sessions are not inspected and the gateway opens no data channels for them",
    });
    let l = &r.limits;
    let _ = writeln!(
        o,
        "Limits: {} sessions in total, {} per client address; at either limit the longest-silent connection that has not logged in makes room for a newcomer; login within {}; control idle {}; data idle {}; connect timeout {}; lines up to {} bytes{}.",
        l.sessions,
        l.sessions_per_client,
        secs(l.login_timeout),
        secs(l.control_idle_timeout),
        secs(l.transfer_idle_timeout),
        secs(l.connect_timeout),
        l.max_line,
        l.bandwidth_per_session.map(|b| format!("; {b} bytes/s per session")).unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "Operations: {}; {}; {}.",
        match l.control_keepalive {
            Some(d) => format!("TCP keepalive on both control connections after {} of silence, so NATs on the way do not forget them during long transfers", secs(d)),
            None => "control keepalive OFF: a NAT on the way may forget a control connection during a long transfer".into(),
        },
        match &r.metrics {
            Some(m) => format!(
                "metrics and health over HTTP on {} (no authentication), status (user names, client addresses, file names) {}",
                m.listen,
                match &m.status_token_file {
                    Some(f) => format!("only with the bearer token in {}", f.display()),
                    None if m.beyond_loopback() => "OPEN to anyone who reaches the endpoint".into(),
                    None => "open to local users".into(),
                }
            ),
            None => "no metrics endpoint".into(),
        },
        match (&r.run_as.user, &r.run_as.group) {
            (Some(u), Some(g)) => format!("started as root, runs as {u}:{g} with only the capabilities its listeners need"),
            (Some(u), None) => format!("started as root, runs as {u} with only the capabilities its listeners need"),
            _ => "started as root with no run_as user, stays uid 0 with only the capabilities its listeners need".into(),
        }
    );
    o
}

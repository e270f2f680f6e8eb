//! Turns the YAML as written into [`Rules`], collecting every problem: the
//! file as a whole here; single values in `context`, each listener in
//! `listener`, each rule and the shadowing between rules in `rule`.

use super::duration::parse_rate;
use super::network::{parse_net, NetSet, BUILTIN};
use super::ports::PortRange;
use super::schema::*;
use super::*;
use crate::ftp::framer::DEFAULT_MAX_LINE;
use std::collections::BTreeMap;

mod context;
mod listener;
mod rule;

use context::{at, Ctx};
pub use listener::kind_name;
use listener::{compile_listener, parse_socket};
use rule::{compile_rule, shadowing};

/// Compiles `text`, reporting every problem of shape (misspelt keys, wrong
/// types, unknown values) and, around them, every problem of meaning.
pub fn compile(text: &str) -> Loaded {
    let Some(checked) = super::structure::check(text) else {
        return compile_typed(text);
    };
    if checked.diagnostics.is_empty() {
        return compile_typed(text);
    }
    let mut diagnostics = checked.diagnostics;
    if let Some(remains) = checked.remains {
        for d in compile_typed(&remains).diagnostics {
            if !diagnostics
                .iter()
                .any(|x| (x.line, x.column) == (d.line, d.column))
            {
                diagnostics.push(d);
            }
        }
    }
    diagnostics.sort_by_key(|d| (d.severity == Severity::Warning, d.line, d.column));
    Loaded {
        rules: None,
        diagnostics,
    }
}

fn compile_typed(text: &str) -> Loaded {
    let options = serde_saphyr::options! { strict_booleans: true };
    let raw: RawFile = match serde_saphyr::from_str_with_options(text, options) {
        Ok(r) => r,
        Err(e) => {
            let (line, column) = e.location().map(|l| at(&l)).unwrap_or((0, 0));
            let message = first_line(&e.to_string());
            let hint = if message.contains("unknown field") {
                "remove the key or fix its spelling; docs/rules.md lists every key"
            } else if message.contains("unknown variant") {
                "use one of the values the message lists"
            } else if message.contains("missing field") {
                "add the key; docs/rules.md says what it takes"
            } else {
                "check the indentation and the value's type against docs/rules.md"
            };
            let d = Diagnostic {
                severity: Severity::Error,
                line,
                column,
                message,
                hint: hint.into(),
            };
            return Loaded {
                rules: None,
                diagnostics: vec![d],
            };
        }
    };
    let mut cx = Ctx {
        diags: Vec::new(),
        bad_range: false,
        networks: BTreeMap::new(),
    };
    for (name, nets) in BUILTIN {
        let nets = nets.iter().filter_map(|n| parse_net(n)).collect();
        cx.networks.insert(
            name.to_string(),
            NetSet {
                label: name.to_string(),
                nets,
            },
        );
    }
    for (name, list) in &raw.networks {
        if BUILTIN.iter().any(|(b, _)| b == name) {
            cx.error(
                list,
                format!("network name '{name}' is built in"),
                "pick another name; built-ins are any, loopback, private, cgnat, not-routable",
            );
            continue;
        }
        let mut nets = Vec::new();
        for item in &list.value {
            match parse_net(&item.value) {
                Some(n) => nets.push(n),
                None => cx.error(
                    item,
                    format!("'{}' is not a CIDR", item.value),
                    "write an address with a prefix length, e.g. 100.64.0.0/24 or 2001:db8:1::/64",
                ),
            }
        }
        if list.value.is_empty() {
            cx.error(
                list,
                format!("network '{name}' is empty"),
                "list at least one CIDR",
            );
        }
        cx.networks.insert(
            name.clone(),
            NetSet {
                label: name.clone(),
                nets,
            },
        );
    }

    let data = DataSettings {
        server_mode: raw
            .data
            .server_mode
            .as_ref()
            .map(|s| s.value)
            .unwrap_or_default(),
        client_ports: cx.range(
            &raw.data.client_ports,
            "client_ports",
            PortRange {
                first: 40000,
                last: 40999,
            },
        ),
        server_ports: cx.range(
            &raw.data.server_ports,
            "server_ports",
            PortRange {
                first: 41000,
                last: 41999,
            },
        ),
        pinhole_timeout: cx.duration_at_most(
            &raw.data.pinhole_timeout,
            "pinhole_timeout",
            Duration::from_secs(30),
            crate::rules::MAX_PINHOLE_TIMEOUT,
        ),
        passive_probe_timeout: cx.duration(
            &raw.data.passive_probe_timeout,
            "passive_probe_timeout",
            Duration::from_secs(3),
        ),
        path: raw.data.path.as_ref().map(|p| p.value).unwrap_or_default(),
    };
    if !cx.bad_range && data.client_ports.overlaps(&data.server_ports) {
        let s = raw
            .data
            .server_ports
            .as_ref()
            .or(raw.data.client_ports.as_ref());
        let msg = format!(
            "client_ports {} and server_ports {} overlap",
            data.client_ports, data.server_ports
        );
        let hint = "keep the two ranges apart so firewall rules can tell client-side from server-side pinholes";
        match s {
            Some(s) => cx.error(s, msg, hint),
            None => cx.push(Severity::Error, (0, 0), msg, hint),
        }
    }

    let mut limits = Limits {
        sessions: 1000,
        sessions_per_client: 20,
        control_idle_timeout: cx.duration(
            &raw.limits.control_idle_timeout,
            "control_idle_timeout",
            Duration::from_secs(900),
        ),
        login_timeout: cx.duration(
            &raw.limits.login_timeout,
            "login_timeout",
            Duration::from_secs(30),
        ),
        transfer_idle_timeout: cx.duration(
            &raw.limits.transfer_idle_timeout,
            "transfer_idle_timeout",
            Duration::from_secs(300),
        ),
        connect_timeout: cx.duration(
            &raw.limits.connect_timeout,
            "connect_timeout",
            Duration::from_secs(10),
        ),
        max_line: DEFAULT_MAX_LINE,
        bandwidth_per_session: None,
        control_keepalive: Some(Duration::from_secs(60)),
        shutdown_grace: shutdown_grace(&mut cx, &raw.limits.shutdown_grace, &data),
    };
    if let Some(s) = &raw.limits.control_keepalive {
        limits.control_keepalive = if s.value.trim() == "off" {
            None
        } else {
            Some(cx.duration(
                &raw.limits.control_keepalive,
                "control_keepalive",
                Duration::from_secs(60),
            ))
        };
    }
    limits.sessions = cx.count(
        &raw.limits.sessions,
        "sessions",
        limits.sessions,
        "set the largest number of concurrent sessions the box can carry",
    );
    limits.sessions_per_client = cx.count(
        &raw.limits.sessions_per_client,
        "sessions_per_client",
        limits.sessions_per_client,
        "a client needs one session to do anything",
    );
    if let Some(s) = &raw.limits.max_line {
        if !(512..=65536).contains(&s.value) {
            cx.error(
                s,
                format!("max_line {} is out of range", s.value),
                "RFC 959 lines fit in 512 bytes; use 512 to 65536 (default 2048)",
            );
        }
        limits.max_line = s.value as usize;
    }
    if let Some(s) = &raw.limits.bandwidth_per_session {
        match parse_rate(&s.value) {
            Some(0) | None => cx.error(
                s,
                format!("'{}' is not a rate", s.value),
                "write e.g. 10MiB/s or 500KiB/s; leave it out for no cap",
            ),
            Some(r) => limits.bandwidth_per_session = Some(r),
        }
        // The kernel moves a forwarded transfer's bytes without ftpalg: a
        // cap it cannot apply must not look applied.
        if data.path != DataPath::Relay {
            cx.error(
                s,
                format!(
                    "bandwidth_per_session is applied by the relay only, and data.path: {} moves transfers in the kernel, uncapped",
                    data.path.as_str()
                ),
                "set data.path: relay to cap transfers, or leave bandwidth_per_session out",
            );
        }
    }

    let security = Security {
        bounce_protection: raw.security.bounce_protection.unwrap_or(true),
        refuse_low_ports: raw.security.refuse_low_ports.unwrap_or(true),
        check_data_peer: raw.security.check_data_peer.unwrap_or(true),
        trust_passive_address: raw.security.trust_passive_address.unwrap_or(false),
        tls: raw.security.tls.unwrap_or_default(),
    };

    let mut listeners = Vec::new();
    if raw.listeners.value.is_empty() {
        cx.error(
            &raw.listeners,
            "no listeners".into(),
            "add at least one listener with name, listen and kind",
        );
    }
    for l in &raw.listeners.value {
        if let Some(listener) = compile_listener(&mut cx, l, &data, &listeners) {
            listeners.push(listener);
        }
    }

    let mut rules = Vec::new();
    for (i, r) in raw.rules.iter().enumerate() {
        if let Some(rule) = compile_rule(&mut cx, r, i, &listeners) {
            rules.push(rule);
        }
    }
    shadowing(&mut cx, &rules, &raw.rules);

    let metrics = raw
        .metrics
        .as_ref()
        .and_then(|m| compile_metrics(&mut cx, m));
    let mut diagnostics = cx.diags;
    diagnostics.sort_by_key(|d| (d.severity == Severity::Warning, d.line, d.column));
    let ok = diagnostics.iter().all(|d| d.severity == Severity::Warning);
    let rules = ok.then_some(Rules {
        listeners,
        data,
        limits,
        security,
        rules,
        metrics,
        run_as: RunAs {
            user: raw.run_as.user.as_ref().map(|s| s.value.clone()),
            group: raw.run_as.group.as_ref().map(|s| s.value.clone()),
        },
    });
    Loaded { rules, diagnostics }
}

/// The `metrics:` section. The token file is read here, at load and at
/// every reload, so `ftpalg check` shows a missing or weak token and a
/// reload picks up a new one.
fn compile_metrics(cx: &mut Ctx, m: &RawMetrics) -> Option<MetricsSettings> {
    let listen = parse_socket(&m.listen.value);
    if listen.is_none() {
        cx.error(
            &m.listen,
            format!("metrics listen '{}' is not an address:port", m.listen.value),
            "write e.g. 127.0.0.1:9121 or \"[::1]:9121\"",
        );
    }
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
    if settings.beyond_loopback() && m.status_token_file.is_none() {
        cx.warn(
            &m.listen,
            format!(
                "metrics listen {} is reachable beyond loopback and /status has no token: it shows user names, client addresses and file names to anyone who reaches it",
                settings.listen
            ),
            "set metrics.status_token_file, or listen on 127.0.0.1",
        );
    }
    Some(settings)
}

/// The parser's message without its own `error: line N column M:` prefix,
/// which the diagnostic already carries.
fn first_line(s: &str) -> String {
    let mut m = s.lines().next().unwrap_or(s).trim();
    m = m.strip_prefix("error:").unwrap_or(m).trim_start();
    if let Some(rest) = m.strip_prefix("line ") {
        if let Some((_, after)) = rest.split_once(": ") {
            m = after;
        }
    }
    m.to_string()
}

/// `limits.shutdown_grace`, bounded: a stop must end, and the unit's stop
/// timeout follows it (ftpalg extends it while it waits).
fn shutdown_grace(
    cx: &mut Ctx,
    s: &Option<serde_saphyr::Spanned<String>>,
    data: &DataSettings,
) -> Duration {
    let default = crate::rules::default_shutdown_grace(data.pinhole_timeout);
    let d = cx.duration(s, "shutdown_grace", default);
    match s {
        Some(s) if d > crate::rules::MAX_SHUTDOWN_GRACE => {
            cx.error(
                s,
                format!(
                    "shutdown_grace must be at most {}h",
                    crate::rules::MAX_SHUTDOWN_GRACE.as_secs() / 3600
                ),
                "a stop waits this long for running transfers; longer ones are better resumed (REST)",
            );
            default
        }
        _ => d,
    }
}

//! Turns the YAML as written into [`Rules`], collecting every problem: the
//! file as a whole here; single values in `context`, each listener in
//! `listener`, each rule and the shadowing between rules in `rule`.

use super::duration::parse_rate;
use super::ports::PortRange;
use super::schema::*;
use super::*;
use crate::ftp::framer::DEFAULT_MAX_LINE;
use std::collections::BTreeMap;

mod context;
mod kernel;
mod listener;
mod metrics;
mod networks;
mod rule;
mod run_as;
mod security;
mod sockets;

use context::{at, Ctx};
use kernel::compile_kernel;
use listener::compile_listener;
pub use listener::kind_name;
use metrics::compile_metrics;
use networks::compile_networks;
use rule::{compile_rule, duplicate_names, shadowing};
use run_as::compile_run_as;
use security::compile_security;

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
    // What remains once the entries with errors are blanked out; should
    // it not parse after all, the errors of shape stand alone.
    if let Some(Ok(raw)) = checked.remains.as_deref().map(parse) {
        for d in compile_raw(&raw).diagnostics {
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
    match parse(text) {
        Ok(raw) => compile_raw(&raw),
        Err(d) => Loaded {
            rules: None,
            diagnostics: vec![d],
        },
    }
}

/// The file as written, or the parser's first error.
pub(super) fn parse(text: &str) -> Result<RawFile, Diagnostic> {
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
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
        Diagnostic {
            severity: Severity::Error,
            line,
            column,
            message,
            hint: hint.into(),
        }
    })
}

fn compile_raw(raw: &RawFile) -> Loaded {
    let mut cx = Ctx {
        diags: Vec::new(),
        bad_range: false,
        networks: BTreeMap::new(),
        extra_commands: Vec::new(),
    };
    extra_commands(&mut cx, raw);
    compile_networks(&mut cx, &raw.networks);

    let mut data = DataSettings {
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
        kernel: KernelSettings::default(),
    };
    data.kernel = compile_kernel(&mut cx, raw.data.kernel.as_ref(), data.path);
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

    let security = compile_security(&mut cx, &raw.security);

    let mut listeners = Vec::new();
    let raw_listeners: &[RawListener] = raw.listeners.as_ref().map_or(&[], |l| &l.value);
    if let Some(l) = raw.listeners.as_ref().filter(|l| l.value.is_empty()) {
        cx.error(
            l,
            "no listeners".into(),
            "add at least one listener with name, listen and kind",
        );
    }
    for (i, l) in raw_listeners.iter().enumerate() {
        if let Some(listener) = compile_listener(&mut cx, l, &data, &raw_listeners[..i]) {
            listeners.push(listener);
        }
    }

    // Rules may name a listener that has errors of its own: it is still
    // the listener meant.
    let listener_names: Vec<&str> = raw_listeners
        .iter()
        .filter_map(|l| l.name.as_ref().map(|n| n.value.as_str()))
        .collect();
    let mut rules = Vec::new();
    for (i, r) in raw.rules.iter().enumerate() {
        if let Some(rule) = compile_rule(&mut cx, r, i, &listener_names) {
            rules.push(rule);
        }
    }
    shadowing(&mut cx, &rules, &raw.rules);
    duplicate_names(&mut cx, &raw.rules);

    let metrics = raw
        .metrics
        .as_ref()
        .and_then(|m| compile_metrics(&mut cx, m, &data, raw_listeners));
    let run_as = compile_run_as(&mut cx, &raw.run_as);
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
        run_as,
    });
    Loaded { rules, diagnostics }
}

/// `extra_commands`: verbs a server knows that ftpalg does not, which
/// rules may then name.
fn extra_commands(cx: &mut Ctx, raw: &RawFile) {
    let Some(list) = &raw.extra_commands else {
        return;
    };
    if list.value.is_empty() {
        cx.warn(list, "extra_commands: [] says nothing".into(), "remove it");
    }
    for item in &list.value {
        let v = item.value.trim();
        if v.is_empty() || v.len() > 8 || !v.chars().all(|c| c.is_ascii_uppercase()) {
            cx.error(
                item,
                format!("extra_commands: '{v}' is not a command verb"),
                "write the verb in upper case, 1 to 8 letters, e.g. XCRC",
            );
        } else if super::verbs::known(v) {
            cx.warn(
                item,
                format!("extra_commands: {v} is a command ftpalg knows"),
                "remove it; rules may name it as it is",
            );
        } else {
            cx.extra_commands.push(v.to_string());
        }
    }
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

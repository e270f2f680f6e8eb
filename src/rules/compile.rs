//! Turns the YAML as written into [`Rules`], collecting every problem.

use super::duration::{parse_duration, parse_range, parse_rate, PortRange, RangeError};
use super::network::{parse_net, NetSet, BUILTIN};
use super::schema::*;
use super::*;
use crate::ftp::framer::DEFAULT_MAX_LINE;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;

struct Ctx {
    diags: Vec<Diagnostic>,
    bad_range: bool,
    networks: BTreeMap<String, NetSet>,
}

fn at(loc: &Location) -> (u32, u32) {
    (loc.line() as u32, loc.column() as u32)
}

impl Ctx {
    fn push(&mut self, severity: Severity, loc: (u32, u32), message: String, hint: &str) {
        self.diags.push(Diagnostic {
            severity,
            line: loc.0,
            column: loc.1,
            message,
            hint: hint.to_string(),
        });
    }
    fn error<T>(&mut self, s: &Spanned<T>, message: String, hint: &str) {
        self.push(Severity::Error, at(&s.referenced), message, hint);
    }
    fn warn<T>(&mut self, s: &Spanned<T>, message: String, hint: &str) {
        self.push(Severity::Warning, at(&s.referenced), message, hint);
    }

    fn duration(&mut self, s: &Option<Spanned<String>>, key: &str, default: Duration) -> Duration {
        let Some(s) = s else { return default };
        match parse_duration(&s.value) {
            Some(d) if !d.is_zero() => d,
            Some(_) => {
                self.error(
                    s,
                    format!("{key} must be longer than zero"),
                    "write e.g. 30s",
                );
                default
            }
            None => {
                self.error(
                    s,
                    format!("{key}: '{}' is not a duration", s.value),
                    "write a number with a unit: 500ms, 30s, 15m, 2h",
                );
                default
            }
        }
    }

    fn range(&mut self, s: &Option<Spanned<String>>, key: &str, default: PortRange) -> PortRange {
        let Some(s) = s else { return default };
        let before = self.diags.len();
        let r = self.range_inner(s, key, default);
        if self.diags[before..]
            .iter()
            .any(|d| d.severity == Severity::Error)
        {
            self.bad_range = true;
        }
        r
    }

    fn range_inner(&mut self, s: &Spanned<String>, key: &str, default: PortRange) -> PortRange {
        match parse_range(&s.value) {
            Ok(r) => {
                if r.len() < 16 {
                    self.warn(
                        s,
                        format!("{key} {r} holds only {} ports", r.len()),
                        "each concurrent transfer needs a port; give at least a few hundred",
                    );
                }
                r
            }
            Err(RangeError::Empty) => {
                self.error(
                    s,
                    format!(
                        "{key} '{}' is empty: the first port is above the last",
                        s.value
                    ),
                    "write FIRST-LAST with FIRST <= LAST, e.g. 40000-40999",
                );
                default
            }
            Err(RangeError::OutOfRange) => {
                self.error(
                    s,
                    format!("{key} '{}' has a port out of range", s.value),
                    "ports are 1 to 65535",
                );
                default
            }
            Err(RangeError::Syntax) => {
                self.error(
                    s,
                    format!("{key} '{}' is not a port range", s.value),
                    "write FIRST-LAST, e.g. 40000-40999",
                );
                default
            }
        }
    }

    /// A count that must be at least 1.
    fn count(&mut self, s: &Option<Spanned<u32>>, key: &str, default: u32, hint: &str) -> u32 {
        match s {
            None => default,
            Some(s) if s.value == 0 => {
                self.error(s, format!("{key} must be at least 1"), hint);
                default
            }
            Some(s) => s.value,
        }
    }

    /// Resolves a network name or literal CIDR.
    fn netset(&mut self, s: &Spanned<String>) -> Option<NetSet> {
        let name = s.value.trim();
        if let Some(set) = self.networks.get(name) {
            return Some(set.clone());
        }
        if let Some(net) = parse_net(name) {
            return Some(NetSet {
                label: name.to_string(),
                nets: vec![net],
            });
        }
        let known: Vec<&str> = self.networks.keys().map(String::as_str).collect();
        let hint = format!(
            "define it under networks:, or use one of: {}",
            known.join(", ")
        );
        self.error(
            s,
            format!("'{name}' is neither a network name nor a CIDR"),
            &hint,
        );
        None
    }

    fn netsets(&mut self, items: &OneOrMany) -> Option<Vec<NetSet>> {
        let mut out = Vec::new();
        let mut ok = true;
        for s in items.items() {
            match self.netset(&s) {
                Some(n) => out.push(n),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

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
        pinhole_timeout: cx.duration(
            &raw.data.pinhole_timeout,
            "pinhole_timeout",
            Duration::from_secs(30),
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
        .and_then(|m| match parse_socket(&m.listen.value) {
            Some(a) => Some(a),
            None => {
                cx.error(
                    &m.listen,
                    format!("metrics listen '{}' is not an address:port", m.listen.value),
                    "write e.g. 127.0.0.1:9121 or \"[::1]:9121\"",
                );
                None
            }
        });
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

fn parse_socket(s: &str) -> Option<SocketAddr> {
    s.trim().parse().ok()
}

fn compile_listener(
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

fn compile_rule(cx: &mut Ctx, r: &RawRule, index: usize, listeners: &[Listener]) -> Option<Rule> {
    let mut ok = true;
    let name = r
        .name
        .as_ref()
        .map(|n| n.value.clone())
        .unwrap_or_else(|| format!("rule {}", index + 1));
    let m = &r.matcher;
    let client = m.client.as_ref().map(|c| cx.netsets(c));
    let server = m.server.as_ref().map(|c| cx.netsets(c));
    if matches!(client, Some(None)) || matches!(server, Some(None)) {
        ok = false;
    }
    let user = m.user.as_ref().map(|u| {
        u.items()
            .iter()
            .map(|s| s.value.clone())
            .collect::<Vec<_>>()
    });
    let command = m.command.as_ref().map(|c| {
        let mut set = CommandSet {
            verbs: Vec::new(),
            classes: Vec::new(),
        };
        for item in c.items() {
            let v = item.value.trim();
            if matches!(v, "write" | "transfer") {
                set.classes.push(v.to_string());
            } else if v.chars().all(|c| c.is_ascii_uppercase()) {
                match Verb::parse(v.as_bytes()) {
                    Some(verb) => set.verbs.push(verb),
                    None => {
                        cx.error(
                            &item,
                            format!("'{v}' is not a command"),
                            "commands are 1 to 8 letters, e.g. STOR",
                        );
                        ok = false;
                    }
                }
            } else {
                cx.error(
                    &item,
                    format!("'{v}' is not a command or a class"),
                    "write verbs in upper case (STOR, DELE) or a class: write, transfer",
                );
                ok = false;
            }
        }
        set
    });
    let data_mode = match &m.data_mode {
        None => None,
        Some(s) => match s.value.as_str() {
            "active" => Some(DataModeMatch::Active),
            "passive" => Some(DataModeMatch::Passive),
            other => {
                cx.error(
                    s,
                    format!("data_mode '{other}' is unknown"),
                    "use active (PORT, EPRT) or passive (PASV, EPSV)",
                );
                ok = false;
                None
            }
        },
    };
    let listener = m.listener.as_ref().map(|l| {
        let items = l.items();
        for item in &items {
            if !listeners.iter().any(|x| x.name == item.value) {
                let names: Vec<&str> = listeners.iter().map(|x| x.name.as_str()).collect();
                cx.error(
                    item,
                    format!("no listener is named '{}'", item.value),
                    &format!("use one of: {}", names.join(", ")),
                );
                ok = false;
            }
        }
        items.iter().map(|s| s.value.clone()).collect::<Vec<_>>()
    });
    let action = match r.action.value {
        RawAction::Allow => RuleAction::Allow,
        RawAction::Deny => RuleAction::Deny,
    };
    let (mut reply_code, mut reply_text) = (550u16, format!("Denied by policy ({name})."));
    if let Some(reply) = &r.reply {
        if action == RuleAction::Allow {
            cx.warn(
                reply,
                "reply is used only by deny rules".into(),
                "remove it",
            );
        }
        let text = reply.value.trim();
        let code = text
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (400..600).contains(c));
        match (code, text.as_bytes().get(3)) {
            (Some(c), Some(b' ')) => {
                reply_code = c;
                reply_text = text[4..].trim().to_string();
            }
            _ => {
                cx.error(
                    reply,
                    format!("reply '{text}' does not start with a 4xx or 5xx code and a space"),
                    "write e.g. \"550 This mirror is read-only.\"",
                );
                ok = false;
            }
        }
    }
    ok.then(|| Rule {
        name,
        line: rule_start(r).line() as u32,
        client: client.flatten(),
        server: server.flatten(),
        user,
        command,
        data_mode,
        listener,
        action,
        reply_code,
        reply_text,
    })
}

/// Where a rule begins: its name if it has one, else its action.
fn rule_start(r: &RawRule) -> Location {
    r.name
        .as_ref()
        .map(|n| n.referenced)
        .unwrap_or(r.action.referenced)
}

fn covers_nets(earlier: &Option<Vec<NetSet>>, later: &Option<Vec<NetSet>>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => {
            let union = NetSet {
                label: String::new(),
                nets: a.iter().flat_map(|s| s.nets.clone()).collect(),
            };
            b.iter().all(|s| union.covers(s))
        }
    }
}

fn covers_list<T: PartialEq>(earlier: &Option<Vec<T>>, later: &Option<Vec<T>>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => b.iter().all(|x| a.contains(x)),
    }
}

fn covers_users(earlier: &Option<Vec<String>>, later: &Option<Vec<String>>) -> bool {
    match earlier {
        Some(a) if a.iter().any(|p| p == "*") => true,
        _ => covers_list(earlier, later),
    }
}

fn covers_commands(earlier: &Option<CommandSet>, later: &Option<CommandSet>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => {
            b.verbs.iter().all(|v| a.contains(*v))
                && b.classes.iter().all(|c| a.classes.contains(c))
        }
    }
}

/// Warns about rules that an earlier rule always matches first.
fn shadowing(cx: &mut Ctx, rules: &[Rule], raw: &[RawRule]) {
    for (j, later) in rules.iter().enumerate() {
        for earlier in &rules[..j] {
            let shadowed = covers_nets(&earlier.client, &later.client)
                && covers_nets(&earlier.server, &later.server)
                && covers_users(&earlier.user, &later.user)
                && covers_commands(&earlier.command, &later.command)
                && (earlier.data_mode.is_none() || earlier.data_mode == later.data_mode)
                && covers_list(&earlier.listener, &later.listener);
            if shadowed {
                if let Some(r) = raw
                    .iter()
                    .find(|r| rule_start(r).line() as u32 == later.line)
                {
                    let msg = format!("rule '{}' can never match: rule '{}' (line {}) matches everything it does first", later.name, earlier.name, earlier.line);
                    let hint = "move it above the earlier rule, or narrow the earlier rule's match";
                    cx.push(Severity::Warning, at(&rule_start(r)), msg, hint);
                }
                break;
            }
        }
    }
}

//! One policy rule as written, checked and compiled, and the warning for
//! rules that an earlier one always matches first.

use super::super::network::NetSet;
use super::super::schema::*;
use super::super::structure::nearest;
use super::super::verbs;
use super::super::*;
use super::context::{at, Ctx};
use serde_saphyr::Location;

pub(super) fn compile_rule(
    cx: &mut Ctx,
    r: &RawRule,
    index: usize,
    listeners: &[&str],
) -> Option<Rule> {
    let mut ok = true;
    let name = rule_name(r, index);
    let m = &r.matcher;
    // An empty list matches nothing: the rule would never apply.
    for (key, list) in [
        ("client", &m.client),
        ("server", &m.server),
        ("user", &m.user),
        ("command", &m.command),
        ("listener", &m.listener),
    ] {
        if let Some(list) = list.as_ref().filter(|l| l.0.value.is_empty()) {
            cx.error(
                &list.0,
                format!("{key}: [] matches nothing: the rule would never apply"),
                "list what it should match, or leave the key out to match any",
            );
            ok = false;
        }
    }
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
                    Some(verb) if verbs::known(v) || cx.extra_commands.iter().any(|x| x == v) => {
                        set.verbs.push(verb)
                    }
                    Some(_) => {
                        let also = "a server's own command goes in extra_commands first";
                        let hint = match nearest(v, verbs::KNOWN) {
                            Some(n) => format!("did you mean `{n}`? {also}"),
                            None => format!("check the spelling; {also}"),
                        };
                        cx.error(
                            &item,
                            format!("'{v}' is not an FTP command ftpalg knows"),
                            &hint,
                        );
                        ok = false;
                    }
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
            if !listeners.contains(&item.value.as_str()) {
                cx.error(
                    item,
                    format!("no listener is named '{}'", item.value),
                    &format!("use one of: {}", listeners.join(", ")),
                );
                ok = false;
            }
        }
        items.iter().map(|s| s.value.clone()).collect::<Vec<_>>()
    });
    // A rule without a usable action is checked all the same; the shape
    // check has said what is wrong with the action.
    let action = r.action.as_ref().map(|a| match a.value {
        RawAction::Allow => RuleAction::Allow,
        RawAction::Deny => RuleAction::Deny,
    });
    let (mut reply_code, mut reply_text) = (550u16, format!("Denied by policy ({name})."));
    if let Some(reply) = &r.reply {
        if action == Some(RuleAction::Allow) {
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
    let (Some(action), Some(start)) = (action, rule_start(r)) else {
        return None;
    };
    ok.then(|| Rule {
        name,
        line: start.line() as u32,
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

/// The name a rule is logged and counted by: its own, or `rule N`.
pub(super) fn rule_name(r: &RawRule, index: usize) -> String {
    r.name
        .as_ref()
        .map(|n| n.value.clone())
        .unwrap_or_else(|| format!("rule {}", index + 1))
}

/// Refuses a second rule of a name: its denials could not be told from
/// the first's in the log and the metrics.
pub(super) fn duplicate_names(cx: &mut Ctx, raw: &[RawRule]) {
    for (j, later) in raw.iter().enumerate() {
        let name = rule_name(later, j);
        let Some(first) = raw[..j]
            .iter()
            .enumerate()
            .find(|(i, r)| rule_name(r, *i) == name)
        else {
            continue;
        };
        let (Some(here), Some(there)) = (rule_start(later), rule_start(first.1)) else {
            continue;
        };
        cx.push(
            Severity::Error,
            at(&here),
            format!(
                "a rule named '{name}' already exists (line {})",
                there.line()
            ),
            "give each rule its own name: a denial is logged and counted by its rule's name",
        );
    }
}

/// Where a rule begins: its name if it has one, else its action.
fn rule_start(r: &RawRule) -> Option<Location> {
    r.name
        .as_ref()
        .map(|n| n.referenced)
        .or_else(|| r.action.as_ref().map(|a| a.referenced))
}

fn covers_nets(earlier: &Option<Vec<NetSet>>, later: &Option<Vec<NetSet>>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => {
            let union = NetSet {
                label: String::new(),
                parts: a.iter().flat_map(|s| s.parts.clone()).collect(),
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
pub(super) fn shadowing(cx: &mut Ctx, rules: &[Rule], raw: &[RawRule]) {
    for (j, later) in rules.iter().enumerate() {
        for earlier in &rules[..j] {
            let shadowed = covers_nets(&earlier.client, &later.client)
                && covers_nets(&earlier.server, &later.server)
                && covers_users(&earlier.user, &later.user)
                && covers_commands(&earlier.command, &later.command)
                && (earlier.data_mode.is_none() || earlier.data_mode == later.data_mode)
                && covers_list(&earlier.listener, &later.listener);
            if shadowed {
                if let Some(start) = raw
                    .iter()
                    .filter_map(rule_start)
                    .find(|s| s.line() as u32 == later.line)
                {
                    let msg = format!("rule '{}' can never match: rule '{}' (line {}) matches everything it does first", later.name, earlier.name, earlier.line);
                    let hint = "move it above the earlier rule, or narrow the earlier rule's match";
                    cx.push(Severity::Warning, at(&start), msg, hint);
                }
                break;
            }
        }
    }
}

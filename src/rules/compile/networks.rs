//! `networks:`: names for sets of networks, each a list of CIDRs and
//! network names (built in or defined in the file), or a map with the
//! list under `include` and the networks taken out of it under `except`.

use super::super::network::{parse_net, NetSet, Part, BUILTIN};
use super::super::schema::RawNetwork;
use super::context::Ctx;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

/// Puts the built-in networks and those of the file into `cx.networks`.
/// A network with errors is still put there with what could be read of
/// it, so that the rules naming it are not refused for it a second time.
pub(super) fn compile_networks(cx: &mut Ctx, raw: &BTreeMap<String, Spanned<RawNetwork>>) {
    for b in BUILTIN {
        if let Some(set) = NetSet::builtin(b.name) {
            cx.networks.insert(b.name.to_string(), set);
        }
    }
    let mut r = Resolver {
        raw,
        visiting: Vec::new(),
    };
    for (name, def) in raw {
        if BUILTIN.iter().any(|b| b.name == name) {
            let names: Vec<&str> = BUILTIN.iter().map(|b| b.name).collect();
            cx.error(
                def,
                format!("network name '{name}' is built in"),
                &format!("pick another name; built-ins are {}", names.join(", ")),
            );
            continue;
        }
        r.resolve(cx, name);
    }
}

struct Resolver<'a> {
    raw: &'a BTreeMap<String, Spanned<RawNetwork>>,
    /// The networks being resolved, outermost first: a name met again
    /// among them names itself.
    visiting: Vec<String>,
}

impl Resolver<'_> {
    /// The network `name` of the file, resolved once; its errors are
    /// reported then.
    fn resolve(&mut self, cx: &mut Ctx, name: &str) -> NetSet {
        if let Some(done) = cx.networks.get(name) {
            return done.clone();
        }
        let Some(def) = self.raw.get(name) else {
            return NetSet {
                label: name.to_string(),
                parts: Vec::new(),
            };
        };
        self.visiting.push(name.to_string());
        let mut parts = Vec::new();
        for item in &def.value.include {
            if let Some(set) = self.item(cx, item) {
                parts.extend(set.parts);
            }
        }
        if def.value.include.is_empty() {
            cx.error(
                def,
                format!("network '{name}' is empty"),
                "list at least one CIDR or network name",
            );
        }
        let mut except = Vec::new();
        for item in def.value.except.iter().flatten() {
            let Some(set) = self.item(cx, item) else {
                continue;
            };
            if set.has_exceptions() {
                cx.error(
                    item,
                    format!(
                        "except: '{}' has exceptions of its own, which cannot be taken out in turn",
                        item.value
                    ),
                    "list the CIDRs to take out, or networks without an except",
                );
                continue;
            }
            except.extend(set.parts.into_iter().map(|p| p.net));
        }
        if def.value.except.as_ref().is_some_and(|e| e.is_empty()) {
            cx.warn(
                def,
                format!("network '{name}': except: [] says nothing"),
                "remove it",
            );
        }
        for p in &mut parts {
            let meets = |e: &ipnet::IpNet| e.contains(&p.net) || p.net.contains(e);
            p.except.extend(except.iter().filter(|e| meets(e)));
        }
        self.visiting.pop();
        let set = NetSet {
            label: name.to_string(),
            parts,
        };
        cx.networks.insert(name.to_string(), set.clone());
        set
    }

    /// One item of a network's list: a CIDR or a network's name.
    fn item(&mut self, cx: &mut Ctx, item: &Spanned<String>) -> Option<NetSet> {
        let v = item.value.trim();
        if let Some(net) = parse_net(v) {
            return Some(NetSet {
                label: v.to_string(),
                parts: vec![Part::whole(net)],
            });
        }
        if let Some(at) = self.visiting.iter().position(|n| n == v) {
            let mut path = self.visiting[at..].to_vec();
            path.push(v.to_string());
            cx.error(
                item,
                format!("network '{v}' includes itself ({})", path.join(" > ")),
                "a network may name only networks that do not name it",
            );
            return None;
        }
        if cx.networks.contains_key(v) || self.raw.contains_key(v) {
            return Some(self.resolve(cx, v));
        }
        if v.starts_with(|c: char| c.is_ascii_digit()) || v.contains(':') {
            cx.error(
                item,
                format!("'{v}' is not a CIDR"),
                "write an address with a prefix length, e.g. 100.64.0.0/24 or 2001:db8:1::/64",
            );
        } else {
            let known: Vec<&str> = BUILTIN
                .iter()
                .map(|b| b.name)
                .chain(self.raw.keys().map(String::as_str))
                .collect();
            cx.error(
                item,
                format!("'{v}' is neither a network name nor a CIDR"),
                &format!("use a CIDR or one of: {}", known.join(", ")),
            );
        }
        None
    }
}

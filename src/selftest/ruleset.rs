//! The host's nftables rule set as `nft -j list ruleset` gives it, and
//! the questions the self-test asks of it: where new TCP connections to a
//! port are sent (redirect, DNAT, TPROXY), for which address families,
//! and which default-drop chains lack the kernel data path's accept line.
//!
//! Only what a rule says about the connection's family, protocol and
//! destination port is evaluated; other conditions (interface names,
//! addresses, conntrack state) are taken to match the clients' traffic,
//! since the self-test cannot know which interface they come in on.

use serde_json::Value;
use std::net::IpAddr;
use std::process::Command;

/// IPv4, IPv6, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Families {
    /// IPv4 packets.
    pub v4: bool,
    /// IPv6 packets.
    pub v6: bool,
}

impl Families {
    /// Both families.
    pub const BOTH: Families = Families { v4: true, v6: true };

    fn of_table(family: &str) -> Families {
        match family {
            "ip" => Families {
                v4: true,
                v6: false,
            },
            "ip6" => Families {
                v4: false,
                v6: true,
            },
            "inet" => Families::BOTH,
            _ => Families::default(),
        }
    }

    fn only(self, v4: bool) -> Families {
        Families {
            v4: self.v4 && v4,
            v6: self.v6 && !v4,
        }
    }

    fn none(self) -> bool {
        !self.v4 && !self.v6
    }

    /// Whether `ip`'s family is among these.
    pub fn has(self, ip: IpAddr) -> bool {
        if ip.is_ipv4() {
            self.v4
        } else {
            self.v6
        }
    }
}

/// What a rule does with the connections it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Divert {
    /// `redirect [to :PORT]`: to the incoming interface's own address.
    Redirect(Option<u16>),
    /// `dnat to ADDR[:PORT]`.
    Dnat(Option<IpAddr>, Option<u16>),
    /// `tproxy to [ADDR][:PORT]`.
    Tproxy(Option<IpAddr>, Option<u16>),
}

impl Divert {
    /// The port the connection arrives on: the one given, or its own.
    pub fn port(&self, own: u16) -> u16 {
        match self {
            Divert::Redirect(p) | Divert::Dnat(_, p) | Divert::Tproxy(_, p) => p.unwrap_or(own),
        }
    }

    /// The address it goes to, when the rule names one.
    pub fn addr(&self) -> Option<IpAddr> {
        match self {
            Divert::Redirect(_) => None,
            Divert::Dnat(a, _) | Divert::Tproxy(a, _) => *a,
        }
    }

    /// Whether it keeps the destination port (what a pinhole needs).
    pub fn keeps_port(&self) -> bool {
        match self {
            Divert::Redirect(p) | Divert::Dnat(_, p) | Divert::Tproxy(_, p) => p.is_none(),
        }
    }
}

/// One rule that sends connections elsewhere: where it is, for which
/// families, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diversion {
    /// `FAMILY TABLE CHAIN`.
    pub at: String,
    /// The families it takes.
    pub families: Families,
    /// What it does.
    pub how: Divert,
}

#[derive(Debug)]
struct Chain {
    family: String,
    table: String,
    name: String,
    hook: Option<String>,
    kind: Option<String>,
    policy: Option<String>,
    rules: Vec<Vec<Value>>,
}

impl Chain {
    fn at(&self) -> String {
        format!("{} {} {}", self.family, self.table, self.name)
    }
}

/// A rule set, as read from nftables.
#[derive(Debug, Default)]
pub struct Ruleset {
    tables: Vec<(String, String)>,
    chains: Vec<Chain>,
    /// Named sets and maps: (family, table, name) and their elements.
    sets: Vec<((String, String, String), Vec<Value>)>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

impl Ruleset {
    /// Reads the host's rule set with `nft -j list ruleset` (needs
    /// CAP_NET_ADMIN).
    pub fn read() -> Result<Ruleset, String> {
        let out = Command::new("nft")
            .args(["-j", "list", "ruleset"])
            .output()
            .map_err(|e| format!("cannot run nft: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "nft -j list ruleset: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ruleset::from_json(&String::from_utf8_lossy(&out.stdout))
    }

    /// Parses what `nft -j list ruleset` prints.
    pub fn from_json(json: &str) -> Result<Ruleset, String> {
        let v: Value = serde_json::from_str(json).map_err(|e| format!("nft's JSON: {e}"))?;
        let items = v
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or("nft's JSON has no \"nftables\" list")?;
        let mut r = Ruleset::default();
        for item in items {
            if let Some(t) = item.get("table") {
                r.tables.push((text(t, "family"), text(t, "name")));
            } else if let Some(c) = item.get("chain") {
                r.chains.push(Chain {
                    family: text(c, "family"),
                    table: text(c, "table"),
                    name: text(c, "name"),
                    hook: c.get("hook").and_then(Value::as_str).map(String::from),
                    kind: c.get("type").and_then(Value::as_str).map(String::from),
                    policy: c.get("policy").and_then(Value::as_str).map(String::from),
                    rules: Vec::new(),
                });
            } else if let Some(s) = item.get("set").or_else(|| item.get("map")) {
                let elems = s
                    .get("elem")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                r.sets.push((
                    (text(s, "family"), text(s, "table"), text(s, "name")),
                    elems,
                ));
            } else if let Some(rule) = item.get("rule") {
                let (f, t, c) = (
                    text(rule, "family"),
                    text(rule, "table"),
                    text(rule, "chain"),
                );
                let expr = rule
                    .get("expr")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if let Some(ch) = r
                    .chains
                    .iter_mut()
                    .find(|ch| ch.family == f && ch.table == t && ch.name == c)
                {
                    ch.rules.push(expr);
                }
            }
        }
        Ok(r)
    }

    /// Whether the table exists.
    pub fn has_table(&self, family: &str, name: &str) -> bool {
        self.tables.iter().any(|(f, n)| f == family && n == name)
    }

    /// The elements of a named set, when it exists.
    pub fn set_elements(&self, family: &str, table: &str, name: &str) -> Option<&[Value]> {
        self.sets
            .iter()
            .find(|((f, t, n), _)| f == family && t == table && n == name)
            .map(|(_, e)| e.as_slice())
    }

    /// The rules that send new TCP connections to every port of
    /// `first..=last` elsewhere: redirect and DNAT in prerouting NAT
    /// chains, TPROXY in prerouting filter chains, and in the chains of
    /// the same tables they may jump to.
    pub fn diversions(&self, first: u16, last: u16) -> Vec<Diversion> {
        let mut out = Vec::new();
        for ch in &self.chains {
            if !self.prerouting_table(&ch.family, &ch.table) {
                continue;
            }
            if ch.hook.is_some() && ch.hook.as_deref() != Some("prerouting") {
                continue;
            }
            for rule in &ch.rules {
                if let Some((families, how)) = self.diverts(ch, rule, first, last) {
                    out.push(Diversion {
                        at: ch.at(),
                        families,
                        how,
                    });
                }
            }
        }
        out
    }

    fn prerouting_table(&self, family: &str, table: &str) -> bool {
        self.chains.iter().any(|c| {
            c.family == family && c.table == table && c.hook.as_deref() == Some("prerouting")
        })
    }

    /// Whether `rule` takes new TCP connections to the whole port range,
    /// and what it does with them.
    fn diverts(
        &self,
        ch: &Chain,
        rule: &[Value],
        first: u16,
        last: u16,
    ) -> Option<(Families, Divert)> {
        let mut families = Families::of_table(&ch.family);
        let mut port_matched = false;
        for e in rule {
            if let Some(m) = e.get("match") {
                let op = m.get("op").and_then(Value::as_str).unwrap_or("==");
                let left = m.get("left")?;
                let right = m.get("right")?;
                let positive = op == "==" || op == "in";
                if let Some(p) = left.get("payload") {
                    let proto = text(p, "protocol");
                    match (proto.as_str(), text(p, "field").as_str()) {
                        ("tcp" | "th", "dport") => {
                            if !positive || !self.covers(ch, right, first, last) {
                                return None;
                            }
                            port_matched = true;
                        }
                        ("tcp" | "th", _) => {}
                        ("ip", _) => families = families.only(true),
                        ("ip6", _) => families = families.only(false),
                        _ => return None,
                    }
                } else if let Some(meta) = left.get("meta") {
                    match text(meta, "key").as_str() {
                        "nfproto" => {
                            let v4 = right.as_str() == Some("ipv4");
                            families = families.only(if positive { v4 } else { !v4 });
                        }
                        "l4proto" if right.as_str() != Some("tcp") || !positive => return None,
                        _ => {}
                    }
                }
            } else if port_matched {
                let how = if let Some(r) = e.get("redirect") {
                    Some(Divert::Redirect(port_of(r)))
                } else if let Some(d) = e.get("dnat") {
                    families = narrow(families, d);
                    Some(Divert::Dnat(addr_of(d), port_of(d)))
                } else if let Some(t) = e.get("tproxy") {
                    families = narrow(families, t);
                    Some(Divert::Tproxy(addr_of(t), port_of(t)))
                } else {
                    None
                };
                if let Some(how) = how {
                    return (!families.none()).then_some((families, how));
                }
            }
        }
        None
    }

    /// Whether a match's right-hand side holds every port of
    /// `first..=last`: a port, a range, an anonymous set or a named one.
    fn covers(&self, ch: &Chain, right: &Value, first: u16, last: u16) -> bool {
        if let Some(name) = right.as_str().and_then(|s| s.strip_prefix('@')) {
            return self
                .set_elements(&ch.family, &ch.table, name)
                .is_some_and(|e| elements_cover(e, first, last));
        }
        if let Some(items) = right.get("set").and_then(Value::as_array) {
            return elements_cover(items, first, last);
        }
        elements_cover(std::slice::from_ref(right), first, last)
    }

    /// The base chains on `hook` that drop by default and hold no rule
    /// accepting `ct mark and mask == mark` (directly, or in a chain they
    /// jump to), as `FAMILY TABLE CHAIN`. `skip_table` is ftpalg's own.
    pub fn drop_chains_without_accept(
        &self,
        hook: &str,
        mark: u32,
        mask: u32,
        skip_table: &str,
    ) -> Vec<String> {
        self.chains
            .iter()
            .filter(|c| c.hook.as_deref() == Some(hook) && c.policy.as_deref() == Some("drop"))
            .filter(|c| c.kind.as_deref() != Some("nat") && c.table != skip_table)
            .filter(|c| !self.chain_accepts(c, mark, mask, 1))
            .map(Chain::at)
            .collect()
    }

    fn chain_accepts(&self, ch: &Chain, mark: u32, mask: u32, depth: u8) -> bool {
        ch.rules.iter().any(|rule| {
            is_accept_line(rule, mark, mask)
                || (depth > 0
                    && jump_target(rule)
                        .and_then(|to| {
                            self.chains.iter().find(|c| {
                                c.family == ch.family && c.table == ch.table && c.name == to
                            })
                        })
                        .is_some_and(|c| self.chain_accepts(c, mark, mask, depth - 1)))
        })
    }
}

fn port_of(v: &Value) -> Option<u16> {
    v.get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
}

fn addr_of(v: &Value) -> Option<IpAddr> {
    v.get("addr").and_then(Value::as_str)?.parse().ok()
}

fn narrow(families: Families, stmt: &Value) -> Families {
    match stmt.get("family").and_then(Value::as_str) {
        Some("ip") => families.only(true),
        Some("ip6") => families.only(false),
        _ => families,
    }
}

/// Whether the ports in `elems` (numbers, ranges, `{"elem": {"val": ..}}`)
/// together hold every port of `first..=last`.
fn elements_cover(elems: &[Value], first: u16, last: u16) -> bool {
    let mut spans: Vec<(u64, u64)> = elems
        .iter()
        .filter_map(|e| {
            let e = e.get("elem").and_then(|x| x.get("val")).unwrap_or(e);
            if let Some(p) = e.as_u64() {
                return Some((p, p));
            }
            let r = e.get("range")?.as_array()?;
            Some((r.first()?.as_u64()?, r.get(1)?.as_u64()?))
        })
        .collect();
    spans.sort_unstable();
    let mut next = u64::from(first);
    for (a, b) in spans {
        if a > next {
            break;
        }
        next = next.max(b + 1);
    }
    next > u64::from(last)
}

/// Whether a rule is `ct mark and MASK == MARK accept` (in any of the
/// forms nft prints it: a prefix `0x46540000/16`, an explicit mask, or
/// the whole mark), with nothing else to narrow it.
fn is_accept_line(rule: &[Value], mark: u32, mask: u32) -> bool {
    let mut mark_ok = false;
    let mut accept = false;
    for e in rule {
        if let Some(m) = e.get("match") {
            if m.get("op").and_then(Value::as_str) != Some("==") {
                return false;
            }
            let (Some(left), Some(right)) = (m.get("left"), m.get("right")) else {
                return false;
            };
            match ct_mark_test(left, right) {
                Some((v, k)) if k == mask && v & k == mark & mask => mark_ok = true,
                _ => return false,
            }
        } else if e.get("accept").is_some() {
            accept = true;
        } else if e.get("counter").is_none() && e.get("log").is_none() {
            return false;
        }
    }
    mark_ok && accept
}

/// `(value, mask)` of a test of the conntrack mark.
fn ct_mark_test(left: &Value, right: &Value) -> Option<(u32, u32)> {
    let is_ct_mark = |v: &Value| v.get("ct").map(|c| text(c, "key")) == Some("mark".into());
    let u32_of = |v: &Value| v.as_u64().and_then(|x| u32::try_from(x).ok());
    if is_ct_mark(left) {
        if let Some(p) = right.get("prefix") {
            let len = p.get("len")?.as_u64()?;
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len.min(32))
            };
            return Some((u32_of(p.get("addr")?)?, mask));
        }
        return Some((u32_of(right)?, u32::MAX));
    }
    let and = left.get("&")?.as_array()?;
    if and.len() == 2 && is_ct_mark(&and[0]) {
        return Some((u32_of(right)?, u32_of(&and[1])?));
    }
    None
}

fn jump_target(rule: &[Value]) -> Option<String> {
    rule.iter().find_map(|e| {
        let j = e.get("jump").or_else(|| e.get("goto"))?;
        Some(text(j, "target"))
    })
}

#[cfg(test)]
#[path = "ruleset_tests.rs"]
mod tests;

//! The compiler's diagnostics, and the checks of single values (durations,
//! port ranges, counts, network names) that every part of the file shares.

use super::super::duration::parse_duration;
use super::super::network::{parse_net, NetSet, Part};
use super::super::ports::{parse_range, PortRange, RangeError};
use super::super::schema::OneOrMany;
use super::super::{Diagnostic, Severity};
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::time::Duration;

pub(super) struct Ctx {
    pub(super) diags: Vec<Diagnostic>,
    pub(super) bad_range: bool,
    pub(super) networks: BTreeMap<String, NetSet>,
    /// The verbs of `extra_commands`, upper case.
    pub(super) extra_commands: Vec<String>,
}

pub(super) fn at(loc: &Location) -> (u32, u32) {
    (loc.line() as u32, loc.column() as u32)
}

impl Ctx {
    pub(super) fn push(
        &mut self,
        severity: Severity,
        loc: (u32, u32),
        message: String,
        hint: &str,
    ) {
        self.diags.push(Diagnostic {
            severity,
            line: loc.0,
            column: loc.1,
            message,
            hint: hint.to_string(),
        });
    }
    pub(super) fn error<T>(&mut self, s: &Spanned<T>, message: String, hint: &str) {
        self.push(Severity::Error, at(&s.referenced), message, hint);
    }
    pub(super) fn warn<T>(&mut self, s: &Spanned<T>, message: String, hint: &str) {
        self.push(Severity::Warning, at(&s.referenced), message, hint);
    }

    pub(super) fn duration(
        &mut self,
        s: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
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

    /// A duration no longer than `max`: a wait the gateway must bound.
    pub(super) fn duration_at_most(
        &mut self,
        s: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
        max: Duration,
    ) -> Duration {
        let d = self.duration(s, key, default);
        match s {
            Some(s) if d > max => {
                self.error(
                    s,
                    format!("{key} must be at most {}s", max.as_secs()),
                    "a data connection that has not come by then will not come",
                );
                default
            }
            _ => d,
        }
    }

    pub(super) fn range(
        &mut self,
        s: &Option<Spanned<String>>,
        key: &str,
        default: PortRange,
    ) -> PortRange {
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
    pub(super) fn count(
        &mut self,
        s: &Option<Spanned<u32>>,
        key: &str,
        default: u32,
        hint: &str,
    ) -> u32 {
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
    pub(super) fn netset(&mut self, s: &Spanned<String>) -> Option<NetSet> {
        let name = s.value.trim();
        if let Some(set) = self.networks.get(name) {
            return Some(set.clone());
        }
        if let Some(net) = parse_net(name) {
            return Some(NetSet {
                label: name.to_string(),
                parts: vec![Part::whole(net)],
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

    pub(super) fn netsets(&mut self, items: &OneOrMany) -> Option<Vec<NetSet>> {
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

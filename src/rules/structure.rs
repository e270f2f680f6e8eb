//! The shape of a rules file checked before it is compiled, so that every
//! misspelt key, wrong type and unknown value is reported in one run.
//!
//! The typed deserializer stops at its first error; this pass reads the file
//! as a plain tree with positions, walks it against [`TOP`] and reports each
//! problem with the nearest known key or value. Entries it reports are then
//! blanked out of the text so the compiler can still check the rest.

use super::{Diagnostic, Severity};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};
use std::fmt;

/// A YAML value with the position of every value and key.
#[derive(Debug)]
enum Value {
    Map(Vec<(Spanned<String>, Spanned<Value>)>),
    Seq(Vec<Spanned<Value>>),
    Str(String),
    Bool,
    Int(i64),
    Other,
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Bool)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Spanned<Value>>()? {
            out.push(v);
        }
        Ok(Value::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<Spanned<KeyText>>()? {
            let v = map.next_value::<Spanned<Value>>()?;
            out.push((Spanned::new(k.value.0, k.referenced, k.defined), v));
        }
        Ok(Value::Map(out))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// A map key as text, whatever scalar type YAML gave it.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Str(s) => Ok(KeyText(s)),
            Value::Int(i) => Ok(KeyText(i.to_string())),
            _ => Ok(KeyText(String::from("?"))),
        }
    }
}

/// What a value in the file must look like.
#[derive(Debug)]
pub(super) enum Shape {
    /// A map with these keys: (name, shape, required).
    Map(&'static [(&'static str, Shape, bool)]),
    /// A map from names the operator picks to values of one shape.
    Named(&'static Shape),
    /// A list of values of one shape.
    List(&'static Shape),
    /// A string, or a list of strings.
    OneOrMany,
    /// Any scalar that reads as text (addresses, durations, names).
    Text,
    /// `true` or `false`.
    Bool,
    /// A whole number from 0 up.
    Count,
    /// One of these words.
    Word(&'static [&'static str]),
}

const SERVER_MODES: Shape = Shape::Word(&["same-as-client", "passive", "active", "auto"]);
const TEXTS: Shape = Shape::List(&Shape::Text);

const LISTENER: Shape = Shape::Map(&[
    ("name", Shape::Text, true),
    ("listen", Shape::Text, true),
    (
        "kind",
        Shape::Word(&["explicit", "user-at-host", "transparent", "reverse"]),
        true,
    ),
    ("upstream", Shape::Text, false),
    ("servers", TEXTS, false),
    (
        "advertise",
        Shape::List(&Shape::Map(&[
            ("clients", Shape::Text, true),
            ("address", Shape::Text, true),
        ])),
        false,
    ),
    ("server_mode", SERVER_MODES, false),
    ("tproxy", Shape::Bool, false),
]);

const RULE: Shape = Shape::Map(&[
    ("name", Shape::Text, false),
    (
        "match",
        Shape::Map(&[
            ("client", Shape::OneOrMany, false),
            ("server", Shape::OneOrMany, false),
            ("user", Shape::OneOrMany, false),
            ("command", Shape::OneOrMany, false),
            ("data_mode", Shape::Text, false),
            ("listener", Shape::OneOrMany, false),
        ]),
        false,
    ),
    ("action", Shape::Word(&["allow", "deny"]), true),
    ("reply", Shape::Text, false),
]);

/// The whole file. Keep in step with the structs in `schema.rs`: a key
/// missing here is reported as unknown, one missing there is refused by the
/// compiler.
pub(super) const TOP: Shape = Shape::Map(&[
    ("listeners", Shape::List(&LISTENER), true),
    ("networks", Shape::Named(&TEXTS), false),
    (
        "data",
        Shape::Map(&[
            ("server_mode", SERVER_MODES, false),
            ("client_ports", Shape::Text, false),
            ("server_ports", Shape::Text, false),
            ("pinhole_timeout", Shape::Text, false),
            ("passive_probe_timeout", Shape::Text, false),
            ("path", Shape::Word(&["relay", "kernel", "auto"]), false),
        ]),
        false,
    ),
    (
        "limits",
        Shape::Map(&[
            ("sessions", Shape::Count, false),
            ("sessions_per_client", Shape::Count, false),
            ("control_idle_timeout", Shape::Text, false),
            ("login_timeout", Shape::Text, false),
            ("transfer_idle_timeout", Shape::Text, false),
            ("connect_timeout", Shape::Text, false),
            ("max_line", Shape::Count, false),
            ("bandwidth_per_session", Shape::Text, false),
            ("control_keepalive", Shape::Text, false),
            ("shutdown_grace", Shape::Text, false),
        ]),
        false,
    ),
    (
        "security",
        Shape::Map(&[
            ("bounce_protection", Shape::Bool, false),
            ("refuse_low_ports", Shape::Bool, false),
            ("check_data_peer", Shape::Bool, false),
            ("trust_passive_address", Shape::Bool, false),
            ("tls", Shape::Word(&["refuse", "passthrough"]), false),
        ]),
        false,
    ),
    ("rules", Shape::List(&RULE), false),
    (
        "metrics",
        Shape::Map(&[
            ("listen", Shape::Text, true),
            ("status_token_file", Shape::Text, false),
        ]),
        false,
    ),
    (
        "run_as",
        Shape::Map(&[("user", Shape::Text, false), ("group", Shape::Text, false)]),
        false,
    ),
]);

/// The outcome of the shape check.
pub(super) struct Checked {
    /// Every problem found, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// The text with each bad entry blanked out (same lines and columns),
    /// for the compiler to check what remains; `None` when nothing can be
    /// compiled (a syntax error, a missing required key).
    pub remains: Option<String>,
}

/// Checks `text` against [`TOP`]. `None` when the file is not YAML at all;
/// the compiler's parser then reports why.
pub(super) fn check(text: &str) -> Option<Checked> {
    let options = serde_saphyr::options! { strict_booleans: true };
    let root: Spanned<Value> = serde_saphyr::from_str_with_options(text, options).ok()?;
    let mut w = Walker {
        diags: Vec::new(),
        blank: Vec::new(),
        missing: false,
    };
    w.walk(&root, &TOP, "the file");
    let remains = (!w.missing).then(|| blank_out(text, &w.blank));
    Some(Checked {
        diagnostics: w.diags,
        remains,
    })
}

struct Walker {
    diags: Vec<Diagnostic>,
    /// Byte ranges of entries to blank out.
    blank: Vec<(usize, usize)>,
    /// A required key is missing or its value unusable: the compiler cannot
    /// run on what remains.
    missing: bool,
}

fn pos(l: &Location) -> (u32, u32) {
    (l.line() as u32, l.column() as u32)
}

/// Where a node starts and ends in the text, in bytes.
fn extent<T>(s: &Spanned<T>) -> Option<(usize, usize)> {
    let span = s.referenced.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    Some((start, start + len))
}

impl Walker {
    fn error(&mut self, at: (u32, u32), message: String, hint: String) {
        self.diags.push(Diagnostic {
            severity: Severity::Error,
            line: at.0,
            column: at.1,
            message,
            hint,
        });
    }

    /// Reports `v` as unusable for `key`; blanks the entry out, or marks the
    /// file as not compilable when the key is required.
    fn bad_entry(&mut self, key: Option<&Spanned<String>>, v: &Spanned<Value>, required: bool) {
        if required {
            self.missing = true;
            return;
        }
        match (key.and_then(extent), extent(v)) {
            (Some((start, _)), Some((_, end))) => self.blank.push((start, end)),
            _ => self.missing = true,
        }
    }

    /// Whether `v` fits `shape`; reports each problem found inside it.
    fn walk(&mut self, v: &Spanned<Value>, shape: &Shape, what: &str) -> bool {
        let at = pos(&v.referenced);
        match (shape, &v.value) {
            (Shape::Map(keys), Value::Map(entries)) => {
                let mut ok = true;
                let mut blanked = 0;
                // Keys offered as the fix for a misspelt one: their absence
                // is that same error, not another.
                let mut suggested: Vec<&str> = Vec::new();
                for (k, val) in entries {
                    match keys.iter().find(|(name, _, _)| *name == k.value) {
                        Some((name, sub, required)) => {
                            if !self.walk(val, sub, name) {
                                ok &= !required;
                                blanked += 1;
                                self.bad_entry(Some(k), val, *required);
                            }
                        }
                        None => {
                            let names: Vec<&str> = keys.iter().map(|(n, _, _)| *n).collect();
                            let hint = match nearest(&k.value, &names) {
                                Some(n) => {
                                    suggested.push(n);
                                    format!("did you mean `{n}`?")
                                }
                                None => format!("{what} takes: {}", names.join(", ")),
                            };
                            self.error(
                                pos(&k.referenced),
                                format!("unknown field `{}` in {what}", k.value),
                                hint,
                            );
                            self.bad_entry(Some(k), val, false);
                            blanked += 1;
                        }
                    }
                }
                // A map left with no entries would read as null, which the
                // compiler refuses for a map: the parent drops it instead.
                if blanked > 0 && blanked == entries.len() {
                    ok = false;
                }
                for (name, _, required) in keys.iter() {
                    if *required && !entries.iter().any(|(k, _)| k.value == *name) {
                        self.missing = true;
                        ok = false;
                        if suggested.contains(name) {
                            continue;
                        }
                        self.error(
                            at,
                            format!("missing field `{name}` in {what}"),
                            "add the key; docs/rules.md says what it takes".into(),
                        );
                    }
                }
                ok
            }
            (Shape::Named(sub), Value::Map(entries)) => {
                let mut ok = true;
                for (k, val) in entries {
                    ok &= self.walk(val, sub, &k.value);
                }
                ok
            }
            (Shape::List(sub), Value::Seq(items)) => {
                let mut ok = true;
                for item in items {
                    ok &= self.walk(item, sub, what);
                }
                if !ok {
                    // One bad item cannot be blanked out of a list without
                    // shifting the others; the list as a whole is dropped.
                    self.bad_entry(None, v, false);
                }
                ok
            }
            (Shape::OneOrMany, Value::Seq(items)) => {
                items.iter().all(|i| self.walk(i, &Shape::Text, what))
            }
            (Shape::OneOrMany | Shape::Text, Value::Str(_) | Value::Int(_)) => true,
            (Shape::Bool, Value::Bool) => true,
            (Shape::Count, Value::Int(i)) if *i >= 0 && *i <= i64::from(u32::MAX) => true,
            (Shape::Word(words), Value::Str(s)) if words.contains(&s.as_str()) => true,
            (Shape::Word(words), Value::Str(s)) => {
                let hint = match nearest(s, words) {
                    Some(n) => format!(
                        "did you mean `{n}`? {what} takes one of: {}",
                        words.join(", ")
                    ),
                    None => format!("{what} takes one of: {}", words.join(", ")),
                };
                self.error(at, format!("{what}: unknown value `{s}`"), hint);
                false
            }
            (shape, _) => {
                let want = match shape {
                    Shape::Map(_) | Shape::Named(_) => "a map of keys",
                    Shape::List(_) => "a list",
                    Shape::OneOrMany => "a string or a list of strings",
                    Shape::Text => "a single value",
                    Shape::Bool => "a boolean (true or false)",
                    Shape::Count => "a whole number",
                    Shape::Word(_) => "a word",
                };
                self.error(
                    at,
                    format!("{what}: invalid value, expected {want}"),
                    "check the indentation and the value's type against docs/rules.md".into(),
                );
                false
            }
        }
    }
}

/// The known name closest to `word`, if one is close enough to be a typo.
pub(super) fn nearest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), *k))
        .filter(|(d, k)| *d <= 2 || strsim::jaro_winkler(word, k) >= 0.9)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// `text` with each byte range replaced by spaces, newlines kept, so every
/// remaining value keeps its line and column.
fn blank_out(text: &str, ranges: &[(usize, usize)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for &(start, end) in ranges {
        let end = end.min(bytes.len());
        for b in bytes.iter_mut().take(end).skip(start) {
            if *b != b'\n' && *b != b'\r' {
                *b = b' ';
            }
        }
    }
    // Blanking whole multi-byte characters keeps the text valid UTF-8 as
    // long as ranges fall on character boundaries, which the parser's
    // offsets do; anything else is replaced rather than trusted.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

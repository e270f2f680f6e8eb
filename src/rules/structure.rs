//! The shape of a rules file checked before it is compiled, so that every
//! misspelt key, wrong type and unknown value is reported in one run.
//!
//! The typed deserializer stops at its first error; this pass reads the file
//! as a plain tree with positions, walks it against [`TOP`] and reports each
//! problem with the nearest known key or value. Entries it reports are then
//! blanked out of the text so the compiler can still check the rest.

use super::keys::{Key, Shape, TOP};
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

/// The outcome of the shape check.
pub(super) struct Checked {
    /// Every problem found, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// The text with each bad entry and list item blanked out (same lines
    /// and columns), for the compiler to check what remains; `None` when
    /// nothing of the file is left to compile.
    pub remains: Option<String>,
}

/// Checks `text` against [`TOP`]. `None` when the file is not YAML at all;
/// the compiler's parser then reports why.
pub(super) fn check(text: &str) -> Option<Checked> {
    let options = serde_saphyr::options! { strict_booleans: true };
    let root: Spanned<Value> = serde_saphyr::from_str_with_options(text, options).ok()?;
    let mut w = Walker {
        text,
        diags: Vec::new(),
        blank: Vec::new(),
    };
    let fit = w.walk(&root, &TOP, "the file");
    let remains = (fit != Fit::Bad).then(|| blank_out(text, &w.blank));
    Some(Checked {
        diagnostics: w.diags,
        remains,
    })
}

/// How a value fits its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    /// As it is.
    Ok,
    /// Once the entries or items reported inside it are blanked out.
    Repaired,
    /// Not at all: whatever holds it must leave it out.
    Bad,
}

struct Walker<'t> {
    text: &'t str,
    diags: Vec<Diagnostic>,
    /// Byte ranges to blank out.
    blank: Vec<(usize, usize)>,
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

/// The longest rejected value echoed in a message.
const ECHO: usize = 40;

impl Walker<'_> {
    fn error(&mut self, at: (u32, u32), message: String, hint: String) {
        self.diags.push(Diagnostic {
            severity: Severity::Error,
            line: at.0,
            column: at.1,
            message,
            hint,
        });
    }

    /// The value as written, on one line and cut short, for a message;
    /// `None` for an empty value.
    fn shown(&self, v: &Spanned<Value>) -> Option<String> {
        let written = self
            .span(v)
            .and_then(|(s, e)| self.text.get(s..e.min(self.text.len())))
            .unwrap_or("")
            .trim();
        let mut line = written.lines().next().unwrap_or("").trim_end().to_string();
        if line.is_empty() {
            return None;
        }
        if line.chars().count() > ECHO {
            line = line.chars().take(ECHO).collect();
            line.push('…');
        } else if written.contains('\n') {
            line.push_str(" …");
        }
        Some(line)
    }

    /// Where `v` starts and ends in the text, in bytes. The parser gives
    /// a collection only its first token: its end is that of its last
    /// member, and in flow style the bracket that closes it.
    fn span(&self, v: &Spanned<Value>) -> Option<(usize, usize)> {
        let (start, end) = extent(v)?;
        let members: Vec<(usize, usize)> = match &v.value {
            Value::Map(entries) => entries
                .iter()
                .flat_map(|(k, val)| [extent(k), self.span(val)])
                .flatten()
                .collect(),
            Value::Seq(items) => items.iter().filter_map(|i| self.span(i)).collect(),
            _ => return Some((start, end)),
        };
        let last = members.iter().map(|m| m.1).max().unwrap_or(end).max(end);
        if !self.is_flow(v) {
            return Some((start, last));
        }
        // Past the last member: white space, a trailing comma, the closer.
        let bytes = self.text.as_bytes();
        let mut i = last;
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n' | b',') {
            i += 1;
        }
        Some(match bytes.get(i) {
            Some(b']' | b'}') => (start, i + 1),
            _ => (start, last),
        })
    }

    /// Whether the collection `v` is written in flow style (`[..]`, `{..}`).
    fn is_flow(&self, v: &Spanned<Value>) -> bool {
        extent(v)
            .and_then(|(s, _)| self.text.as_bytes().get(s))
            .is_some_and(|b| *b == b'[' || *b == b'{')
    }

    /// Blanks out `start..end` of a collection's member, with the comma
    /// that separates it from its neighbours in a flow collection, so that
    /// what remains still parses and every other value keeps its place.
    fn remove(&mut self, start: usize, end: usize, flow: bool) {
        let bytes = self.text.as_bytes();
        let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
        let mut after = end;
        while after < bytes.len() && ws(bytes[after]) {
            after += 1;
        }
        let mut before = start;
        while before > 0 && ws(bytes[before - 1]) {
            before -= 1;
        }
        let prev = before.checked_sub(1).map(|i| bytes[i]);
        let range = if flow && bytes.get(after) == Some(&b',') {
            (start, after + 1)
        } else if flow && prev == Some(b',') {
            (before - 1, end)
        } else {
            (start, end)
        };
        self.blank.push(range);
    }

    /// Leaves the entry `key: value` out.
    fn remove_entry(&mut self, key: &Spanned<String>, v: &Spanned<Value>, flow: bool) {
        if let (Some((start, key_end)), Some((_, end))) = (extent(key), self.span(v)) {
            // An empty value has no extent of its own past the key: the
            // colon goes too.
            let bytes = self.text.as_bytes();
            let mut end = end.max(key_end);
            let mut i = end;
            while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
                i += 1;
            }
            if bytes.get(i) == Some(&b':') {
                end = i + 1;
            }
            self.remove(start, end, flow);
        }
    }

    /// Leaves a list item out: in a block list with its `-`.
    fn remove_item(&mut self, item: &Spanned<Value>, flow: bool) {
        let Some((mut start, end)) = self.span(item) else {
            return;
        };
        if !flow {
            let bytes = self.text.as_bytes();
            let mut i = start;
            while i > 0 && matches!(bytes[i - 1], b' ' | b'\t') {
                i -= 1;
            }
            if i > 0 && bytes[i - 1] == b'-' {
                start = i - 1;
            }
        }
        self.remove(start, end.max(start), flow);
    }

    /// How `v` fits `shape`; reports each problem found inside it and
    /// blanks out the entries and items that do not fit.
    fn walk(&mut self, v: &Spanned<Value>, shape: &Shape, what: &str) -> Fit {
        let at = pos(&v.referenced);
        match (shape, &v.value) {
            (Shape::Map(keys), Value::Map(entries)) => {
                let flow = self.is_flow(v);
                let mut removed = 0;
                let mut repaired = false;
                // Keys offered as the fix for a misspelt one: their absence
                // is that same error, not another.
                let mut suggested: Vec<&str> = Vec::new();
                for (k, val) in entries {
                    match keys.iter().find(|key| key.name == k.value) {
                        Some(key) => match self.walk(val, &key.shape, key.name) {
                            Fit::Ok => {}
                            Fit::Repaired => repaired = true,
                            Fit::Bad => {
                                self.remove_entry(k, val, flow);
                                removed += 1;
                            }
                        },
                        None => {
                            let names: Vec<&str> = keys.iter().map(|k| k.name).collect();
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
                            self.remove_entry(k, val, flow);
                            removed += 1;
                        }
                    }
                }
                for Key { name, required, .. } in keys.iter() {
                    if *required && !entries.iter().any(|(k, _)| k.value == *name) {
                        // The compiler leaves out what lacks it.
                        repaired = true;
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
                members_fit(removed, entries.len(), repaired)
            }
            (Shape::Named(sub), Value::Map(entries)) => {
                let flow = self.is_flow(v);
                let mut removed = 0;
                let mut repaired = false;
                for (k, val) in entries {
                    match self.walk(val, sub, &k.value) {
                        Fit::Ok => {}
                        Fit::Repaired => repaired = true,
                        Fit::Bad => {
                            self.remove_entry(k, val, flow);
                            removed += 1;
                        }
                    }
                }
                members_fit(removed, entries.len(), repaired)
            }
            (Shape::List(sub), Value::Seq(items)) => self.items(v, items, sub, what),
            (Shape::OneOrMany, Value::Seq(items)) => self.items(v, items, &Shape::Text, what),
            (Shape::OneOrMany | Shape::Text, Value::Str(_) | Value::Int(_)) => Fit::Ok,
            (Shape::Bool, Value::Bool) => Fit::Ok,
            (Shape::Count, Value::Int(i)) if *i >= 0 && *i <= i64::from(u32::MAX) => Fit::Ok,
            (Shape::Word(words), Value::Str(s)) if words.contains(&s.as_str()) => Fit::Ok,
            (Shape::Word(words), Value::Str(s)) => {
                let hint = match nearest(s, words) {
                    Some(n) => format!(
                        "did you mean `{n}`? {what} takes one of: {}",
                        words.join(", ")
                    ),
                    None => format!("{what} takes one of: {}", words.join(", ")),
                };
                self.error(at, format!("{what}: unknown value `{s}`"), hint);
                Fit::Bad
            }
            (Shape::Either(alternatives), value)
                if alternatives.iter().any(|s| kind_fits(s, value)) =>
            {
                let fits = alternatives.iter().find(|s| kind_fits(s, value));
                fits.map_or(Fit::Bad, |s| self.walk(v, s, what))
            }
            (shape, _) => {
                let want = wanted(shape);
                let message = match self.shown(v) {
                    Some(shown) => format!("{what}: invalid value `{shown}`, expected {want}"),
                    None => format!("{what}: no value, expected {want}"),
                };
                self.error(
                    at,
                    message,
                    "check the indentation and the value's type against docs/rules.md".into(),
                );
                Fit::Bad
            }
        }
    }

    /// The items of a list, each checked against `sub`; those that do not
    /// fit are left out and the others kept.
    fn items(
        &mut self,
        list: &Spanned<Value>,
        items: &[Spanned<Value>],
        sub: &Shape,
        what: &str,
    ) -> Fit {
        let flow = self.is_flow(list);
        let mut removed = 0;
        let mut repaired = false;
        for item in items {
            match self.walk(item, sub, what) {
                Fit::Ok => {}
                Fit::Repaired => repaired = true,
                Fit::Bad => {
                    self.remove_item(item, flow);
                    removed += 1;
                }
            }
        }
        members_fit(removed, items.len(), repaired)
    }
}

/// What a value of `shape` looks like, for a message.
fn wanted(shape: &Shape) -> String {
    match shape {
        Shape::Map(_) | Shape::Named(_) => "a map of keys".into(),
        Shape::List(_) => "a list".into(),
        Shape::OneOrMany => "a string or a list of strings".into(),
        Shape::Text => "a single value".into(),
        Shape::Bool => "a boolean (true or false)".into(),
        Shape::Count => "a whole number from 0 to 4294967295".into(),
        Shape::Word(_) => "a word".into(),
        Shape::Either(alternatives) => alternatives
            .iter()
            .map(wanted)
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// Whether `v` is of the kind (map, list, scalar) `shape` takes.
fn kind_fits(shape: &Shape, v: &Value) -> bool {
    matches!(
        (shape, v),
        (Shape::Map(_) | Shape::Named(_), Value::Map(_))
            | (Shape::List(_) | Shape::OneOrMany, Value::Seq(_))
            | (
                Shape::OneOrMany | Shape::Text | Shape::Word(_),
                Value::Str(_) | Value::Int(_)
            )
            | (Shape::Bool, Value::Bool)
            | (Shape::Count, Value::Int(_))
    ) || matches!(shape, Shape::Either(a) if a.iter().any(|s| kind_fits(s, v)))
}

/// A collection whose members were left out: gone altogether if all
/// were (a map or list left empty would read as null).
fn members_fit(removed: usize, of: usize, repaired: bool) -> Fit {
    if removed > 0 && removed == of {
        Fit::Bad
    } else if removed > 0 || repaired {
        Fit::Repaired
    } else {
        Fit::Ok
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

//! The table of keys (`keys.rs`) against the typed file and itself: every
//! key it accepts reaches the compiler, once, documented.

use super::super::keys::{paths, Shape, TOP};

/// A YAML value of `shape`, every key of a map given, the `pick`-th
/// alternative of an `Either` (or its last).
fn sample(shape: &Shape, pick: usize, indent: usize) -> String {
    let pad = " ".repeat(indent);
    match shape {
        Shape::Map(keys) => keys
            .iter()
            .map(|k| format!("\n{pad}{}:{}", k.name, sample(&k.shape, pick, indent + 2)))
            .collect(),
        Shape::Named(s) => format!("\n{pad}n:{}", sample(s, pick, indent + 2)),
        Shape::List(s) => {
            let item = sample(s, pick, indent + 2);
            match item.strip_prefix('\n') {
                // A map item: its first key goes after the dash.
                Some(m) => format!("\n{pad}- {}", m.trim_start()),
                None => format!("\n{pad}-{item}"),
            }
        }
        Shape::OneOrMany | Shape::Text => " x".into(),
        Shape::Bool => " true".into(),
        Shape::Count => " 1".into(),
        Shape::Word(words) => format!(" {}", words[0]),
        Shape::Either(a) => sample(&a[pick.min(a.len() - 1)], pick, indent),
    }
}

/// The typed file (`schema.rs`) takes every key of the table with a
/// value of its shape, so no key `check` accepts is refused by the
/// compiler as unknown.
#[test]
fn every_key_reaches_the_typed_file() {
    for pick in 0..2 {
        let text = sample(&TOP, pick, 0);
        let parsed = super::super::compile::parse(&text);
        assert!(parsed.is_ok(), "{parsed:?}\n{text}");
        let shape = super::super::structure::check(&text).unwrap();
        assert!(shape.diagnostics.is_empty(), "{:?}", shape.diagnostics);
    }
}

#[test]
fn every_path_once_and_every_key_documented() {
    let p = paths();
    for (i, x) in p.iter().enumerate() {
        assert!(!p[..i].contains(x), "{x} twice");
    }
    for x in [
        "listeners.advertise.clients",
        "data.kernel.mark",
        "rules.match.command",
        "networks.except",
        "extra_commands",
        "data.path",
    ] {
        assert!(p.iter().any(|y| y == x), "{x} missing from {p:?}");
    }
    fn documented(shape: &Shape) {
        if let Shape::Map(keys) = shape {
            for k in *keys {
                assert!(!k.doc.is_empty(), "{} has no doc", k.name);
                documented(&k.shape);
            }
        }
        match shape {
            Shape::Named(s) | Shape::List(s) => documented(s),
            Shape::Either(a) => a.iter().for_each(documented),
            _ => {}
        }
    }
    documented(&TOP);
}

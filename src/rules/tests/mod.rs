//! The rules' unit tests, one file per idea; the helpers here compile a
//! small valid file with something added and return its diagnostics.

use super::*;

mod explain;
mod kernel;
mod keys;
mod listeners;
mod networks;
mod policy;
mod shape;
mod silent;
mod values;

const BASE: &str = "listeners:\n  - name: a\n    listen: 127.0.0.1:2121\n    kind: explicit\n    upstream: 198.51.100.10:21\n";

/// Compiles BASE plus `extra` and returns the diagnostics as
/// (line, column, severity, message).
fn diags(extra: &str) -> Vec<(u32, u32, Severity, String)> {
    let text = format!("{BASE}{extra}");
    from_str(&text)
        .diagnostics
        .into_iter()
        .map(|d| (d.line, d.column, d.severity, d.message))
        .collect()
}

fn one_error(extra: &str) -> (u32, u32, String) {
    let d = diags(extra);
    let errors: Vec<_> = d.iter().filter(|x| x.2 == Severity::Error).collect();
    assert_eq!(errors.len(), 1, "{d:?}");
    (errors[0].0, errors[0].1, errors[0].3.clone())
}

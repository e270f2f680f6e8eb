//! `ftpalg-rules(5)`, written from the table of keys `ftpalg check` walks
//! ([`super::keys`]), the built-in networks and the known verbs, so that
//! the manual lists every key `check` accepts and no other.

use super::compile::kind_name;
use super::keys::{Key, Shape, READ_BY, TOP};
use super::network::BUILTIN;
use super::verbs::KNOWN;
use std::fmt::Write;

const DESCRIPTION: &str = "One YAML file says where `ftpalg`(8) listens, how it finds the FTP server, which ports it opens for data, its limits, its security switches, its access rules, the account it runs as and where it serves metrics. `ftpalg run` and `ftpalg check` read /etc/ftpalg/rules.yaml unless given `--rules FILE`.";

const CHECK: &str = "`ftpalg check --rules FILE` reports every error and warning of the file in one run, as FILE:LINE:COLUMN: error|warning: message, with a hint; a misspelt key or value is answered with the nearest known one and the rejected value is echoed. Besides the shape of each key below, it refuses what would silently do nothing: a verb ftpalg does not know, an empty match list, two rules of one name, a listener key its kind does not read, two sockets on one address and port, a run_as account this host does not have. `--explain` prints the effective policy in plain words. Every key but listeners is optional; the defaults are safe.";

const RELOAD: &str = "SIGHUP re-reads the file. A valid file applies to new sessions and new transfers; an invalid one is refused and the old rules stay in force. The kernel path keeps the table and mark it started with until a restart.";

const EXAMPLE: &str = r#"listeners:
  - name: proxy
    listen: 0.0.0.0:21
    kind: user-at-host
    servers: [routable]
data:
  server_mode: auto
rules:
  - name: read-only
    match: { command: [write] }
    action: deny
    reply: "550 This gateway is read-only."
run_as:
  user: ftpalg"#;

/// The page, in roff.
pub fn manual() -> String {
    let mut o = String::new();
    o.push_str(".\\\" Written from the rules' schema (src/rules/keys.rs) by `make man`.\n");
    o.push_str(".TH FTPALG-RULES 5 \"\" \"ftpalg\" \"File Formats Manual\"\n");
    o.push_str(
        ".SH NAME\nftpalg-rules \\- the rules file of the ftpalg FTP application-layer gateway\n",
    );
    o.push_str(".SH SYNOPSIS\n.I /etc/ftpalg/rules.yaml\n");
    let _ = writeln!(
        o,
        ".SH DESCRIPTION\n{}\n.PP\n{}",
        text(DESCRIPTION),
        text(CHECK)
    );
    let Shape::Map(sections) = &TOP else {
        return o;
    };
    for section in *sections {
        let _ = writeln!(o, ".SH {}", section.name.to_uppercase());
        let _ = writeln!(
            o,
            "\\fB{}\\fR{}: {}",
            section.name,
            if section.required { " (required)" } else { "" },
            text(section.doc)
        );
        entries(&mut o, &section.shape, section.name, "");
        match section.name {
            "networks" => builtin_networks(&mut o),
            "extra_commands" => {
                let _ = writeln!(o, ".PP\nThe verbs ftpalg knows: {}.", KNOWN.join(", "));
            }
            _ => {}
        }
    }
    let _ = writeln!(o, ".SH RELOAD\n{}", text(RELOAD));
    let _ = writeln!(o, ".SH EXAMPLE\n.nf\n{}\n.fi", escape(EXAMPLE));
    o.push_str(".SH SEE ALSO\n\\fBftpalg\\fR(8), \\fBftpalg-check\\fR(8), \\fBnft\\fR(8)\n");
    o
}

/// One `.TP` entry per key of `shape`'s maps, nested keys as `a.b`.
fn entries(o: &mut String, shape: &Shape, section: &str, prefix: &str) {
    match shape {
        Shape::Map(keys) => {
            for k in *keys {
                entry(o, k, section, prefix);
                entries(o, &k.shape, section, &format!("{prefix}{}.", k.name));
            }
        }
        Shape::List(s) | Shape::Named(s) => entries(o, s, section, prefix),
        Shape::Either(alternatives) => {
            for s in *alternatives {
                entries(o, s, section, prefix);
            }
        }
        _ => {}
    }
}

fn entry(o: &mut String, k: &Key, section: &str, prefix: &str) {
    let mut head = format!("\\fB{}{}\\fR", escape(prefix), escape(k.name));
    if k.required {
        head.push_str(" (required)");
    } else if !k.default.is_empty() {
        let _ = write!(head, " (default \\fB{}\\fR)", escape(k.default));
    }
    let mut body = text(k.doc);
    if let Shape::Word(words) = &k.shape {
        let _ = write!(body, " One of: {}.", words.join(", "));
    }
    if section == "listeners" && prefix.is_empty() {
        if let Some((_, kinds, _)) = READ_BY.iter().find(|(name, _, _)| *name == k.name) {
            let names: Vec<&str> = kinds.iter().map(|k| kind_name(*k)).collect();
            let _ = write!(
                body,
                " Read by {} listeners only; refused for the others.",
                names.join(" and ")
            );
        }
    }
    let _ = writeln!(o, ".TP\n{head}\n{body}");
}

fn builtin_networks(o: &mut String) {
    o.push_str(".PP\nBuilt-in network names, which a file may not redefine:\n");
    for b in BUILTIN {
        let _ = writeln!(o, ".TP\n\\fB{}\\fR\n{}", b.name, text(b.about));
    }
}

/// `s` escaped for roff, with `code` set in bold.
fn text(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "\\fB{}\\fR", escape(part).replace('-', "\\-"));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

/// `s` with roff's escape character escaped, and no line that roff would
/// read as a request.
fn escape(s: &str) -> String {
    s.replace('\\', "\\e")
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

//! The man pages and completions generated from the clap definitions.

#[path = "../examples/gen-docs.rs"]
mod gen;

use std::process::Command;

/// Generated once per test process: the tests run in parallel threads,
/// and one writing the files while another reads them made the reader see
/// a file cut short.
fn out() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("ftpalg-docs-{}", std::process::id()));
        gen::write_all(&d).expect("writes");
        d
    })
    .clone()
}

#[test]
fn man_pages_name_every_subcommand_and_option() {
    let d = out();
    let main = std::fs::read_to_string(d.join("man8/ftpalg.8")).unwrap();
    assert!(
        main.starts_with(".ie") || main.contains(".TH ftpalg 8"),
        "{main}"
    );
    for sub in ["run", "check"] {
        assert!(main.contains(sub), "ftpalg.8 lacks {sub}");
        let page = std::fs::read_to_string(d.join(format!("man8/ftpalg-{sub}.8"))).unwrap();
        assert!(page.contains(&format!(".TH ftpalg-{sub} 8")), "{page}");
    }
    // Every subcommand ftpalg(8) lists has its page.
    let listed: Vec<&str> = main
        .lines()
        .filter_map(|l| l.strip_prefix("ftpalg\\-")?.strip_suffix("(8)"))
        .collect();
    assert!(listed.len() >= 3, "{listed:?}");
    for sub in listed {
        assert!(
            d.join(format!("man8/ftpalg-{sub}.8")).exists(),
            "ftpalg.8 lists ftpalg-{sub}(8), which was not generated"
        );
    }
    let run = std::fs::read_to_string(d.join("man8/ftpalg-run.8")).unwrap();
    for flag in ["rules", "user", "group"] {
        assert!(
            run.contains(&format!("\\-\\-{flag}")),
            "ftpalg-run.8 lacks --{flag}"
        );
    }
    let check = std::fs::read_to_string(d.join("man8/ftpalg-check.8")).unwrap();
    assert!(check.contains("\\-\\-explain"), "{check}");
    let rules = std::fs::read_to_string(d.join("man5/ftpalg-rules.5")).unwrap();
    assert!(rules.contains(".TH FTPALG-RULES 5"));
}

#[test]
fn man_pages_render_without_warnings() {
    let d = out();
    for p in [
        "man8/ftpalg.8",
        "man8/ftpalg-run.8",
        "man8/ftpalg-check.8",
        "man5/ftpalg-rules.5",
    ] {
        let Ok(o) = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(d.join(p))
            .output()
        else {
            eprintln!("groff not installed: rendering not checked");
            return;
        };
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && err.trim().is_empty(), "{p}: {err}");
    }
}

#[test]
fn completions_for_three_shells_know_the_subcommands() {
    let d = out();
    for (f, flag) in [
        ("ftpalg.bash", "--"),
        ("_ftpalg", "--"),
        ("ftpalg.fish", "-l "),
    ] {
        let text = std::fs::read_to_string(d.join("completions").join(f)).unwrap();
        let words = [
            "run".to_string(),
            "check".to_string(),
            format!("{flag}rules"),
            format!("{flag}explain"),
            format!("{flag}user"),
        ];
        for word in words {
            assert!(text.contains(&word), "{f} lacks {word}");
        }
    }
}

/// A key's path without its section (`data.kernel.mark` is
/// `kernel.mark` in DATA), and the section.
fn split(path: &str) -> (&str, &str) {
    path.split_once('.').unwrap_or((path, ""))
}

/// ftpalg-rules(5) is written from the table of keys `ftpalg check`
/// walks: every key it accepts is on the page, in its section.
#[test]
fn ftpalg_rules_5_lists_every_key_check_accepts() {
    let page = std::fs::read_to_string(out().join("man5/ftpalg-rules.5")).unwrap();
    let paths = ftpalg::rules::key_paths();
    assert!(paths.len() > 50, "{paths:?}");
    for path in &paths {
        let (section, rel) = split(path);
        let heading = format!("\n.SH {}\n", section.to_uppercase());
        let at = page
            .find(&heading)
            .unwrap_or_else(|| panic!("no section for {path}"));
        if rel.is_empty() {
            continue;
        }
        // In its own section: before the next one.
        let body = &page[at + heading.len()..];
        let body = &body[..body.find("\n.SH ").unwrap_or(body.len())];
        assert!(
            body.contains(&format!(".TP\n\\fB{rel}\\fR")),
            "ftpalg-rules(5) lacks {path}"
        );
    }
    for b in ftpalg::rules::BUILTIN {
        assert!(
            page.contains(&format!(".TP\n\\fB{}\\fR\n", b.name)),
            "lacks network {}",
            b.name
        );
    }
    assert!(page.contains("STOR, STOU"), "the known verbs");
}

/// docs/rules.md names every key too (the manual is generated; the
/// reference is written by hand and must keep up).
#[test]
fn docs_rules_md_names_every_key() {
    let md =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/rules.md")).unwrap();
    let named = |s: &str| md.contains(&format!("`{s}`"));
    let missing: Vec<String> = ftpalg::rules::key_paths()
        .into_iter()
        .filter(|path| {
            let (section, rel) = split(path);
            let last = path.rsplit('.').next().unwrap_or(path);
            !(named(section) && (rel.is_empty() || named(rel) || named(last)))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/rules.md does not name {missing:?}"
    );
}

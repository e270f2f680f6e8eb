//! The `ftpalg` command.

use anyhow::{Context, Result};
use clap::Parser;
use ftpalg::cli::{Cli, Command, ReportFormat};
use std::path::PathBuf;
use std::process::ExitCode;

fn check(path: &PathBuf, explain: bool) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let loaded = ftpalg::rules::from_str(&text);
    let shown = path.display().to_string();
    if !loaded.diagnostics.is_empty() {
        eprintln!("{}", ftpalg::rules::render(&shown, &loaded.diagnostics));
    }
    match loaded.rules {
        Some(r) => {
            println!(
                "{shown}: ok ({} listener(s), {} rule(s))",
                r.listeners.len(),
                r.rules.len()
            );
            if explain {
                print!("{}", ftpalg::rules::explain(&r));
            }
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::from(1)),
    }
}

fn diagnose(
    format: ReportFormat,
    svg: Option<PathBuf>,
    live: Option<String>,
    seconds: u64,
    max_packets: u64,
    captures: Vec<PathBuf>,
) -> Result<ExitCode> {
    let mut d = ftpalg::diagnose::Diagnoser::new();
    if let Some(iface) = live {
        let index = d.begin_capture(&format!("live:{iface}"));
        let seen = ftpalg::packet::live::capture(
            &iface,
            std::time::Duration::from_secs(seconds),
            max_packets,
            |p| d.packet(index, p),
        )?;
        d.end_capture();
        eprintln!("captured {seen} packets on {iface}");
    }
    for path in &captures {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        d.add_capture(&path.display().to_string(), std::io::BufReader::new(file))?;
    }
    let report = d.report();
    let mut text = match format {
        ReportFormat::Text => report.to_text(),
        ReportFormat::Json => report.to_json(),
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        // A reader that stopped early (`| head`) is no error of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("cannot write the report")?,
    }
    if let Some(path) = svg {
        std::fs::write(&path, ftpalg::diagnose::svg::render(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if report.has_problems() {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn selftest(
    path: &std::path::Path,
    servers: &[String],
    user: String,
    password: String,
    timeout: u64,
) -> Result<ExitCode> {
    let (rules, _) = ftpalg::rules::load(path)?;
    let servers = servers
        .iter()
        .map(|s| ftpalg::selftest::parse_server(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let opts = ftpalg::selftest::Options {
        servers,
        user,
        password,
        timeout: std::time::Duration::from_secs(timeout.max(1)),
    };
    let report = ftpalg::selftest::run(&rules, &opts);
    print!("{}", report.to_text());
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The error and its causes in one line of plain words, a cause left out
/// when the message above it already says it.
fn fatal(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let words = ftpalg::proxy::plain::without_os_error(&cause.to_string());
        if !text.to_lowercase().contains(&words.to_lowercase()) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&words);
        }
    }
    text
}

fn run(rules: PathBuf, user: Option<String>, group: Option<String>) -> Result<ExitCode> {
    let (r, warnings) = ftpalg::rules::load(&rules)?;
    for w in &warnings {
        tracing::warn!(file = %rules.display(), "{w}");
    }
    // Before the runtime starts its threads: see ftpalg::privilege.
    let outcome = ftpalg::privilege::drop_for(&r, user.as_deref(), group.as_deref())?;
    tracing::info!(privileges = %outcome, "privileges");
    // Capabilities are per thread and a thread starts with its maker's: the
    // threads that need CAP_NET_ADMIN start now, then this one drops it, so
    // that none of the runtime's threads, started after, ever holds it.
    let privileged = ftpalg::proxy::Privileged::start(&r)?;
    if ftpalg::privilege::drop_from_this_thread(caps::Capability::CAP_NET_ADMIN)? {
        match privileged.threads() {
            t if t.is_empty() => tracing::info!("CAP_NET_ADMIN dropped: nothing needs it"),
            t => {
                tracing::info!(threads = %t.join(", "), "CAP_NET_ADMIN kept by these threads only")
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(ftpalg::proxy::run(rules, r, privileged))?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { rules, explain } => check(&rules, explain),
        Command::Selftest {
            rules,
            server,
            user,
            password,
            timeout,
        } => selftest(&rules, &server, user, password, timeout),
        Command::Diagnose {
            format,
            svg,
            live,
            seconds,
            max_packets,
            captures,
        } => diagnose(format, svg, live, seconds, max_packets, captures),
        Command::Run { rules, user, group } => {
            ftpalg::logging::init(cli.log_format, cli.log_target);
            // Once the logs are set up, even a fatal error is a log line,
            // in the format (and at the priority) of every other.
            match run(rules, user, group) {
                Ok(code) => Ok(code),
                Err(e) => {
                    tracing::error!(error = %fatal(&e), "cannot run");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

//! The `ftpalg` command.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// ftpalg: an FTP application-layer gateway for NAT.
///
/// Rewrites the addresses in PORT/EPRT/227/229, converts between active and
/// passive mode, and opens exactly the data pinholes each session needs,
/// under rules written in YAML.
#[derive(Parser, Debug)]
#[command(name = "ftpalg", version, about, long_about)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway. SIGHUP reloads the rules; SIGTERM drains and stops.
    Run {
        /// The rules file.
        #[arg(long, short, default_value = "rules/default.yaml")]
        rules: PathBuf,
    },
    /// Validate a rules file: exit 0 if it can be used, 1 if not.
    Check {
        /// The rules file.
        #[arg(long, short, default_value = "rules/default.yaml")]
        rules: PathBuf,
        /// Also print the effective policy in plain words.
        #[arg(long)]
        explain: bool,
    },
    /// Explain from captures (or live) why FTP through NAT failed and what
    /// to change. Exit 0: every session ok (or recovered); 3: a session
    /// failed or could not be read; 1: a capture could not be read.
    Diagnose {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
        /// Also draw a timeline per session into this SVG file.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Capture live on this interface instead of reading files.
        #[arg(long, conflicts_with = "captures")]
        live: Option<String>,
        /// How long to capture live.
        #[arg(long, default_value_t = 30, requires = "live")]
        seconds: u64,
        /// Most packets to capture live.
        #[arg(long, default_value_t = 1_000_000, requires = "live")]
        max_packets: u64,
        /// pcap or pcapng files; two from both sides of a NAT are paired.
        #[arg(required_unless_present = "live")]
        captures: Vec<PathBuf>,
    },
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum ReportFormat {
    /// For a person.
    Text,
    /// One JSON document.
    Json,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FTPALG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

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

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { rules, explain } => check(&rules, explain),
        Command::Diagnose {
            format,
            svg,
            live,
            seconds,
            max_packets,
            captures,
        } => diagnose(format, svg, live, seconds, max_packets, captures),
        Command::Run { rules } => {
            init_logs(cli.log_format);
            let (r, warnings) = ftpalg::rules::load(&rules)?;
            for w in &warnings {
                tracing::warn!(file = %rules.display(), "{w}");
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(ftpalg::proxy::run(rules, r))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

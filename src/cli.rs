//! The `ftpalg` command line, in the library so that the man page and the
//! shell completions are generated from the same definitions the binary
//! parses (see `examples/gen-docs.rs`).

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Where an installed ftpalg finds its rules (`make install`, the package
/// and the systemd unit put them there): the default of `--rules`, never
/// a path relative to the directory ftpalg was started in.
pub const DEFAULT_RULES: &str = "/etc/ftpalg/rules.yaml";

/// ftpalg: an FTP application-layer gateway for NAT.
///
/// Rewrites the addresses in PORT/EPRT/227/229, converts between active and
/// passive mode, and opens exactly the data pinholes each session needs,
/// under rules written in YAML.
#[derive(Parser, Debug)]
#[command(name = "ftpalg", version, about, long_about)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// Where log lines go. `auto`: to stderr, each line led by its syslog
    /// priority (`<4>` for a warning) when stderr is systemd's journal
    /// (JOURNAL_STREAM names it), so that `journalctl -p warning` filters
    /// by level; plain stderr otherwise. `journald`: to the journal's
    /// socket, with the priority and every field as a journal field
    /// (FTPALG_SESSION, FTPALG_RESULT, ...; MESSAGE is the event's name
    /// only); stderr if the socket cannot be reached. `stderr`: plain
    /// stderr, no priority prefix.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    pub log_target: LogTarget,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where log lines go (see `--log-target`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    /// stderr, with syslog priority prefixes when it is the journal.
    Auto,
    /// The journal's native protocol, fields as journal fields.
    Journald,
    /// stderr, never prefixed.
    Stderr,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway. SIGHUP reloads the rules; SIGTERM drains and stops.
    ///
    /// Started as root, ftpalg keeps only the capabilities its rules need
    /// (CAP_NET_BIND_SERVICE for a port below 1024, CAP_NET_ADMIN for
    /// TPROXY or the kernel data path, and that on the threads that need
    /// it only) and runs as the user given by --user or the rules' run_as.
    /// Started as another user, it runs as it is.
    Run {
        /// The rules file (`make run` gives rules/default.yaml).
        #[arg(long, short, default_value = DEFAULT_RULES)]
        rules: PathBuf,
        /// Run as this user (name or uid) once started as root; overrides
        /// the rules' run_as.user.
        #[arg(long)]
        user: Option<String>,
        /// Run as this group (name or gid); the user's primary group if
        /// not given.
        #[arg(long)]
        group: Option<String>,
    },
    /// Validate a rules file: exit 0 if it can be used, 1 if not.
    ///
    /// Every error and warning of the file is printed in one run, as
    /// FILE:LINE:COLUMN: error|warning: message, with a hint.
    Check {
        /// The rules file.
        #[arg(long, short, default_value = DEFAULT_RULES)]
        rules: PathBuf,
        /// Also print the effective policy in plain words.
        #[arg(long)]
        explain: bool,
    },
    /// Check that the gateway running on this host does its job for the
    /// rules given: exit 0 if every check passed, 1 if one failed.
    ///
    /// Run on the gateway as root. It checks that each listener is bound;
    /// that nftables sends the clients' FTP to the transparent listeners
    /// (tcp/21 and client_ports, per address family, or TPROXY), and with
    /// the kernel data path that ftpalg's table is there and every
    /// default-drop forward and input chain has the accept line; and that a
    /// login and a listing in passive and in active mode pass through each
    /// listener it can reach (a transparent one through a temporary table of
    /// its own, for its own sockets only: inet ftpalg_selftest). Prints one
    /// PASS, FAIL or SKIP line per check.
    Selftest {
        /// The rules file the gateway runs with.
        #[arg(long, short, default_value = "rules/default.yaml")]
        rules: PathBuf,
        /// A server to reach through a transparent or user-at-host listener
        /// (`HOST`, `HOST:PORT` or `[IPV6]:PORT`); give one of each family to test
        /// both.
        #[arg(long, value_name = "HOST[:PORT]")]
        server: Vec<String>,
        /// The FTP user to log in as.
        #[arg(long, default_value = "anonymous")]
        user: String,
        /// Its password.
        #[arg(long, default_value = "ftpalg-selftest@")]
        password: String,
        /// Seconds each step may take.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
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
/// How `diagnose` writes its report.
pub enum ReportFormat {
    /// For a person.
    Text,
    /// One JSON document.
    Json,
}

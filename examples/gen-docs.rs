//! Writes the man pages and shell completions from the command line's clap
//! definitions (`ftpalg::cli`), so they cannot drift from what the binary
//! parses: `cargo run --example gen-docs -- OUTDIR` (what `make man` does)
//! writes OUTDIR/man8/ftpalg.8, one ftpalg-SUBCOMMAND.8 per subcommand,
//! OUTDIR/man5/ftpalg-rules.5 (from the rules' schema, the table of keys
//! `ftpalg check` walks: `ftpalg::rules::manual`) and
//! OUTDIR/completions/{ftpalg.bash,_ftpalg,ftpalg.fish}.

use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

/// What the generated ftpalg(8) says beyond the options.
const MORE: &str = r#".SH SIGNALS
.TP
\fBSIGHUP\fR
re-reads the rules file; a file with errors is refused and the old rules stay in force.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
stop accepting, tell idle sessions 421, let running transfers finish for up to the rules' \fBlimits.shutdown_grace\fR (by default the pinhole timeout, at least 30 s), reset those still running, then exit. Under systemd the unit's stop timeout is extended while transfers run.
.SH PRIVILEGES
Started as root, \fBftpalg run\fR keeps only the capabilities its rules need
(CAP_NET_BIND_SERVICE for a port below 1024, CAP_NET_ADMIN for a TPROXY listener
or the kernel data path),
drops every other one from all its capability sets including the bounding set,
sets no_new_privs, and runs as the user given by \fB--user\fR or the rules' \fBrun_as\fR.
Started as another user (systemd's \fBUser=\fR with \fBAmbientCapabilities=\fR) it runs as it is.
Either way CAP_NET_ADMIN stays only on the thread that owns ftpalg's nftables
table and the one that makes IP_TRANSPARENT sockets; every other thread holds it
in none of its sets (under systemd this needs \fBSystemCallFilter=capset\fR).
.SH METRICS AND STATUS
With \fBmetrics: { listen: ADDR:PORT }\fR in the rules, \fBGET /metrics\fR
answers Prometheus text, \fBGET /healthz\fR \fBok\fR, and \fBGET /status\fR
lists live sessions and running transfers (client, server, user, modes,
bytes so far, age), behind a bearer token when the rules give
\fBmetrics.status_token_file\fR; see \fBftpalg-rules\fR(5).
.SH FILES
.TP
\fI/etc/ftpalg/rules.yaml\fR
the rules, see \fBftpalg-rules\fR(5).
.TP
\fI/usr/lib/systemd/system/ftpalg.service\fR
the systemd unit.
.TP
\fI/usr/share/doc/ftpalg/nftables/\fR
nftables snippets for transparent and TPROXY deployments.
.SH ENVIRONMENT
.TP
\fBFTPALG_LOG\fR
log filter, e.g. \fBinfo\fR (default), \fBdebug\fR, \fBftpalg::proxy=debug\fR.
.TP
\fBJOURNAL_STREAM\fR
set by systemd; when it names stderr, \fB--log-target auto\fR starts each line with its syslog priority.
.SH EXIT STATUS
\fBcheck\fR exits 0 for a usable file and 1 otherwise; \fBrun\fR exits 0 after a clean stop, non-zero when it cannot start.
.SH SEE ALSO
\fBftpalg-rules\fR(5), \fBftpalg-run\fR(8), \fBftpalg-check\fR(8), \fBsystemd.exec\fR(5), \fBnft\fR(8)
"#;

/// Writes every page and completion under `out`.
pub fn write_all(out: &Path) -> std::io::Result<()> {
    let man8 = out.join("man8");
    let man5 = out.join("man5");
    let comp = out.join("completions");
    for d in [&man8, &man5, &comp] {
        std::fs::create_dir_all(d)?;
    }
    let mut cmd = ftpalg::cli::Cli::command();
    // Built, the command has its `help` subcommand too, which ftpalg(8)
    // lists like the others.
    cmd.build();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Manager's Manual")
        .render(&mut page)?;
    page.extend_from_slice(MORE.as_bytes());
    std::fs::write(man8.join("ftpalg.8"), page)?;
    for sub in cmd.get_subcommands() {
        let name = format!("ftpalg-{}", sub.get_name());
        let mut page = Vec::new();
        clap_mangen::Man::new(
            sub.clone()
                .name(&*Box::leak(name.clone().into_boxed_str()))
                .bin_name(format!("ftpalg {}", sub.get_name())),
        )
        .section("8")
        .manual("System Manager's Manual")
        .render(&mut page)?;
        writeln!(
            page,
            ".SH SEE ALSO\n\\fBftpalg\\fR(8), \\fBftpalg-rules\\fR(5)"
        )?;
        std::fs::write(man8.join(format!("{name}.8")), page)?;
    }
    std::fs::write(man5.join("ftpalg-rules.5"), ftpalg::rules::manual())?;
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, "ftpalg.bash"),
        (Shell::Zsh, "_ftpalg"),
        (Shell::Fish, "ftpalg.fish"),
    ] {
        let mut f = std::fs::File::create(comp.join(file))?;
        clap_complete::generate(shell, &mut ftpalg::cli::Cli::command(), "ftpalg", &mut f);
    }
    Ok(())
}

#[allow(dead_code)]
fn main() -> std::io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "target/docs".into());
    write_all(&out)?;
    println!("{}", out.display());
    Ok(())
}

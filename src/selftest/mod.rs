//! `ftpalg selftest`: is the gateway running on this host doing its job
//! for the rules given? Run on the gateway, as root, it checks
//!
//! - that each listener of the rules is bound (`/proc/net/tcp{,6}`);
//! - what nftables must do for them ([`ruleset`]): a transparent
//!   listener's redirect of tcp/21 and of `client_ports`, per address
//!   family (an IPv6 redirect with no IPv6 listener is the classic way to
//!   break IPv6 FTP), a TPROXY listener's rules, and with the kernel data
//!   path ftpalg's table and the accept line in every default-drop
//!   `forward` and `input` chain;
//! - that a transfer passes: through each listener it can reach, a login
//!   to the server and a directory listing in passive and in active mode.
//!   A transparent listener is reached through a table of the self-test's
//!   own, for its own sockets only (`divert`). Data connections the
//!   kernel would forward cannot be made from the gateway itself (the
//!   kernel takes them as they arrive from the network), so with the
//!   kernel data path only the login is tried.
//!
//! Each check says PASS, FAIL or SKIP with the reason.

mod client;
mod divert;
mod listening;
pub mod ruleset;

use crate::dataplane::kernel::KernelConfig;
use crate::rules::{DataPath, Kind, Listener, Rules};
use client::Client;
use ruleset::{Divert as Via, Families, Ruleset};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// What the self-test is told beyond the rules.
#[derive(Debug, Clone)]
pub struct Options {
    /// Servers to reach through listeners that do not name one
    /// (transparent, `user-at-host`): the first of each family is used.
    pub servers: Vec<SocketAddr>,
    /// The FTP user to log in as.
    pub user: String,
    /// Its password.
    pub password: String,
    /// The deadline of every step.
    pub timeout: Duration,
}

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// What was checked is in place.
    Pass,
    /// It is not: the gateway, or its firewall, does not do its job.
    Fail,
    /// Not checked, with the reason.
    Skip,
}

/// One check.
#[derive(Debug, Clone)]
pub struct Check {
    /// Its result.
    pub outcome: Outcome,
    /// What was checked.
    pub what: String,
    /// What was found, and what to do about a failure.
    pub detail: String,
}

/// Every check, in the order run.
#[derive(Debug, Default)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, outcome: Outcome, what: impl Into<String>, detail: impl Into<String>) {
        self.checks.push(Check {
            outcome,
            what: what.into(),
            detail: detail.into(),
        });
    }

    /// No check failed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Fail)
    }

    /// One line per check, then the counts.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let count = |o| self.checks.iter().filter(|c| c.outcome == o).count();
        for c in &self.checks {
            let tag = match c.outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "SKIP",
            };
            let _ = writeln!(out, "{tag} {}: {}", c.what, c.detail);
        }
        let _ = writeln!(
            out,
            "selftest: {} passed, {} failed, {} skipped",
            count(Outcome::Pass),
            count(Outcome::Fail),
            count(Outcome::Skip)
        );
        out
    }
}

/// Reads `HOST`, `HOST:PORT` or `[V6]:PORT` (port 21 when not given).
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 21));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let with_port = if s.contains(':') {
        s.to_string()
    } else {
        format!("{s}:21")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("{s}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s}: no address"))
}

/// The kernel data path's settings for `rules`: its table and the mark
/// its accept line names.
fn kernel_config(rules: &Rules) -> KernelConfig {
    rules.data.kernel.config()
}

/// Whether the rules need anything of nftables.
fn needs_nftables(rules: &Rules) -> bool {
    rules.data.path != DataPath::Relay
        || rules.listeners.iter().any(|l| l.kind == Kind::Transparent)
}

/// Runs every check against this host: its sockets, its nftables (read
/// with `nft`, when the rules need it) and the gateway.
pub fn run(rules: &Rules, opts: &Options) -> Report {
    let ruleset = needs_nftables(rules).then(Ruleset::read);
    run_with(rules, opts, ruleset, &listening::sockets())
}

/// [`run`] with the rule set and the listening sockets given.
pub fn run_with(
    rules: &Rules,
    opts: &Options,
    ruleset: Option<Result<Ruleset, String>>,
    listening: &[SocketAddr],
) -> Report {
    let mut report = Report::default();
    for l in &rules.listeners {
        if listening.contains(&l.listen) {
            report.push(
                Outcome::Pass,
                format!("listener {}", l.name),
                format!("{} is listening", l.listen),
            );
        } else {
            report.push(
                Outcome::Fail,
                format!("listener {}", l.name),
                format!(
                    "nothing listens on {}: is ftpalg running with these rules?",
                    l.listen
                ),
            );
        }
    }
    let kernel_on = match ruleset {
        Some(Ok(rs)) => nftables(rules, &rs, &mut report),
        Some(Err(e)) => {
            report.push(
                Outcome::Fail,
                "nftables",
                format!("cannot read the rule set ({e}); the self-test needs root and nft"),
            );
            rules.data.path == DataPath::Kernel
        }
        None => false,
    };
    for l in &rules.listeners {
        transfer(rules, l, opts, kernel_on, &mut report);
    }
    report
}

/// The nftables checks; says whether the kernel data path is on.
fn nftables(rules: &Rules, rs: &Ruleset, report: &mut Report) -> bool {
    let redirected: Vec<&Listener> = rules
        .listeners
        .iter()
        .filter(|l| l.kind == Kind::Transparent && !l.tproxy)
        .collect();
    if !redirected.is_empty() {
        redirects(rules, &redirected, rs, report);
    }
    for l in rules.listeners.iter().filter(|l| l.tproxy) {
        tproxy(rules, l, rs, report);
    }
    if rules.data.path == DataPath::Relay {
        return false;
    }
    let k = kernel_config(rules);
    let what = format!("kernel data path: table inet {}", k.table);
    if !rs.has_table("inet", &k.table) {
        if rules.data.path == DataPath::Kernel {
            report.push(
                Outcome::Fail,
                what,
                "not there: is ftpalg running? (its table goes when it stops)",
            );
            return false;
        }
        report.push(Outcome::Skip, what, "not there: with data.path auto ftpalg relays every transfer (it could not open its table: CAP_NET_ADMIN?)");
        return false;
    }
    report.push(Outcome::Pass, what, "opened by the running gateway");
    let line = k.accept_rule();
    for hook in ["forward", "input"] {
        let what = format!("accept line ({hook})");
        let missing = rs.drop_chains_without_accept(hook, k.mark, k.mark_mask, &k.table);
        if missing.is_empty() {
            report.push(
                Outcome::Pass,
                what,
                format!("every {hook} chain that drops by default has `{line}`, or none drops"),
            );
        } else {
            report.push(
                Outcome::Fail,
                what,
                format!("{} drop(s) by default without `{line}`: ftpalg's kernel-forwarded transfers are dropped; add that line (docs/nftables.md, \"The operator's accept line\")", missing.join(", ")),
            );
        }
    }
    true
}

fn family_name(v4: bool) -> &'static str {
    if v4 {
        "IPv4"
    } else {
        "IPv6"
    }
}

fn is_v4(ip: IpAddr) -> bool {
    ip.to_canonical().is_ipv4()
}

/// The redirect (or DNAT) of tcp/21 and of `client_ports`, per family,
/// to the transparent listeners.
fn redirects(rules: &Rules, listeners: &[&Listener], rs: &Ruleset, report: &mut Report) {
    let ports = rules.data.client_ports;
    let control: Vec<_> = rs
        .diversions(21, 21)
        .into_iter()
        .filter(|d| !matches!(d.how, Via::Tproxy(..)))
        .collect();
    let data: Vec<_> = rs
        .diversions(ports.first, ports.last)
        .into_iter()
        .filter(|d| !matches!(d.how, Via::Tproxy(..)) && d.how.keeps_port())
        .collect();
    for v4 in [true, false] {
        let fam = family_name(v4);
        let fam_has = |f: Families| if v4 { f.v4 } else { f.v6 };
        let ours: Vec<&&Listener> = listeners
            .iter()
            .filter(|l| is_v4(l.listen.ip()) == v4)
            .collect();
        let what = format!("nftables: {fam} tcp/21");
        let Some(d) = control.iter().find(|d| fam_has(d.families)) else {
            if let Some(l) = ours.first() {
                report.push(Outcome::Fail, what, format!("no nat prerouting rule sends {fam} FTP control connections to {} (listener {}): load docs/nftables-transparent.nft, whose set `intercept` must hold 21 (the fail-open drop-in empties it while ftpalg stops)", l.listen, l.name));
            }
            continue;
        };
        let port = d.how.port(21);
        let taker = ours.iter().find(|l| {
            l.listen.port() == port
                && d.how
                    .addr()
                    .is_none_or(|a| a == l.listen.ip() || l.listen.ip().is_unspecified())
        });
        match taker {
            Some(l) => report.push(Outcome::Pass, what, format!("sent to port {port} by {}, where listener {} takes it", d.at, l.name)),
            None => report.push(
                Outcome::Fail,
                what,
                format!("sent to port {port} by {}, but no transparent listener takes {fam} there: {fam} clients' FTP is refused. Add an {fam} listener on port {port}, or exclude {fam} from the rule (`meta nfproto {}`)", d.at, if v4 { "ipv6" } else { "ipv4" }),
            ),
        }
        if ours.is_empty() {
            continue;
        }
        let what = format!(
            "nftables: {fam} client_ports {}-{}",
            ports.first, ports.last
        );
        match data.iter().find(|d| fam_has(d.families)) {
            Some(d) => report.push(Outcome::Pass, what, format!("passive data connections are sent to their pinholes by {}", d.at)),
            None => report.push(Outcome::Fail, what, format!("no nat prerouting rule sends {fam} connections to these ports to the gateway, keeping the port: passive transfers through ftpalg fail")),
        }
    }
}

/// A TPROXY listener's rules: tcp/21 and `client_ports` to it.
fn tproxy(rules: &Rules, l: &Listener, rs: &Ruleset, report: &mut Report) {
    let v4 = is_v4(l.listen.ip());
    let fam = family_name(v4);
    let fits = |d: &ruleset::Diversion| {
        matches!(d.how, Via::Tproxy(..))
            && (if v4 { d.families.v4 } else { d.families.v6 })
            && d.how
                .addr()
                .is_none_or(|a| a == l.listen.ip() || l.listen.ip().is_unspecified())
    };
    let what = format!("nftables: tproxy {fam} tcp/21 to {}", l.name);
    match rs.diversions(21, 21).iter().find(|d| fits(d) && d.how.port(21) == l.listen.port()) {
        Some(d) => report.push(Outcome::Pass, what, format!("by {}", d.at)),
        None => report.push(Outcome::Fail, what, format!("no tproxy rule sends {fam} tcp/21 to {}: load docs/nftables-tproxy.nft and its policy routing", l.listen)),
    }
    let p = rules.data.client_ports;
    let what = format!("nftables: tproxy {fam} client_ports {}-{}", p.first, p.last);
    match rs.diversions(p.first, p.last).iter().find(|d| fits(d) && d.how.keeps_port()) {
        Some(d) => report.push(Outcome::Pass, what, format!("by {}", d.at)),
        None => report.push(Outcome::Fail, what, "no tproxy rule sends these ports to their pinholes: passive transfers through ftpalg fail"),
    }
}

/// Where the self-test dials to reach `l`: a wildcard listener on the
/// loopback of its family.
fn dial(l: &Listener) -> SocketAddr {
    let ip = match l.listen.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, l.listen.port())
}

fn user_at(user: &str, server: SocketAddr) -> String {
    match server {
        SocketAddr::V4(a) => format!("{user}@{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("{user}@[{}]:{}", a.ip(), a.port()),
    }
}

/// A login and, on the relay, a listing in each mode through `l`.
fn transfer(rules: &Rules, l: &Listener, opts: &Options, kernel_on: bool, report: &mut Report) {
    let what = format!("transfer via {}", l.name);
    let same_family = |s: &&SocketAddr| is_v4(s.ip()) == is_v4(l.listen.ip());
    let (server, to, user, divert) = match l.kind {
        Kind::Explicit | Kind::Reverse => match l.upstream {
            Some(up) => (up, dial(l), opts.user.clone(), None),
            None => return report.push(Outcome::Skip, what, "no upstream"),
        },
        Kind::UserAtHost => match opts.servers.first() {
            Some(&s) => (s, dial(l), user_at(&opts.user, s), None),
            None => return report.push(Outcome::Skip, what, "give --server HOST[:PORT] to test a transfer through it"),
        },
        Kind::Transparent if l.tproxy => {
            return report.push(Outcome::Skip, what, "a TPROXY listener takes only connections arriving from the network; its rules are checked above")
        }
        Kind::Transparent => match opts.servers.iter().find(same_family) {
            Some(&s) => match divert::Divert::add(l.listen, s.port(), rules.data.client_ports) {
                Ok(d) => (s, s, opts.user.clone(), Some(d)),
                Err(e) => return report.push(Outcome::Fail, what, format!("cannot add the self-test's table inet ftpalg_selftest: {e}")),
            },
            None => {
                let fam = family_name(is_v4(l.listen.ip()));
                return report.push(Outcome::Skip, what, format!("give --server with an {fam} server to test a transfer through it"));
            }
        },
    };
    let mark = divert.as_ref().map(|_| divert::MARK);
    let result = (|| -> std::io::Result<String> {
        let mut c = Client::connect(to, mark, opts.timeout)?;
        c.login(&user, &opts.password)?;
        if kernel_on {
            c.quit();
            return Ok(String::new());
        }
        let passive = c.list_passive()?;
        let active = c.list_active()?;
        c.quit();
        Ok(format!(
            "LIST of {passive} bytes in passive mode, {active} in active mode"
        ))
    })();
    drop(divert);
    let what = if kernel_on {
        format!("login via {}", l.name)
    } else {
        what
    };
    match result {
        Ok(_) if kernel_on => {
            report.push(
                Outcome::Pass,
                what,
                format!("{server} as {user} through {}", l.listen),
            );
            report.push(Outcome::Skip, format!("data via {}", l.name), "the kernel data path forwards data connections as they arrive from the network; from the gateway itself they cannot pass its pinholes (watch `nft list table inet ftpalg_data` while a client transfers)");
        }
        Ok(listed) => report.push(
            Outcome::Pass,
            what,
            format!("{server} as {user} through {}: {listed}", l.listen),
        ),
        Err(e) => report.push(
            Outcome::Fail,
            what,
            format!("{server} as {user} through {}: {e}", l.listen),
        ),
    }
}

//! From what was seen to what went wrong: one finding per problem (and per
//! transfer that worked), with the packets that show it, an explanation in
//! plain words, and the fix.

use serde::Serialize;

use super::control::{is_private, Session};
use super::model::{DataConn, Mode, Negotiation, Side, Stamp};

/// The kinds of finding; their names are stable for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// PORT/EPRT carries a private or CGNAT address the server cannot use.
    ActiveAddressNotTranslated,
    /// The client's connection to the passive port got no answer or a reset.
    PassiveDataBlocked,
    /// The server's connection to the PORT/EPRT address got no answer or a reset.
    ActiveDataBlocked,
    /// The 227 names an address other than the server's control address.
    PassiveAddressUnroutable,
    /// AUTH TLS accepted: the rest of the session cannot be read.
    ControlEncrypted,
    /// EPSV/EPRT refused.
    ExtendedModeRefused,
    /// The control connection died while a transfer ran.
    ControlLostDuringTransfer,
    /// PORT/EPRT naming a third host.
    BounceAttempt,
    /// A transfer that worked.
    TransferOk,
}

impl Kind {
    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ActiveAddressNotTranslated => "active-address-not-translated",
            Kind::PassiveDataBlocked => "passive-data-blocked",
            Kind::ActiveDataBlocked => "active-data-blocked",
            Kind::PassiveAddressUnroutable => "passive-address-unroutable",
            Kind::ControlEncrypted => "control-encrypted",
            Kind::ExtendedModeRefused => "extended-mode-refused",
            Kind::ControlLostDuringTransfer => "control-lost-during-transfer",
            Kind::BounceAttempt => "bounce-attempt",
            Kind::TransferOk => "transfer-ok",
        }
    }

    /// Whether the finding is a problem (everything but `transfer-ok`).
    pub fn is_problem(self) -> bool {
        self != Kind::TransferOk
    }
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What kind of problem.
    pub kind: Kind,
    /// The packets that show it, by frame number in the session's capture.
    pub packets: Vec<u64>,
    /// The times of those packets, in seconds since the capture's start.
    pub times: Vec<f64>,
    /// What happened, in plain words.
    pub explanation: String,
    /// What to change.
    pub fix: String,
}

fn finding(
    kind: Kind,
    stamps: &[Option<crate::diagnose::model::Stamp>],
    explanation: String,
    fix: &str,
) -> Finding {
    let mut stamps: Vec<Stamp> = stamps.iter().flatten().copied().collect();
    stamps.sort_by_key(|s| s.packet);
    stamps.dedup_by_key(|s| s.packet);
    Finding {
        kind,
        packets: stamps.iter().map(|s| s.packet).collect(),
        times: stamps
            .iter()
            .map(|s| (s.time * 1e6).round() / 1e6)
            .collect(),
        explanation,
        fix: fix.to_string(),
    }
}

const FIX_NOT_TRANSLATED: &str = "Use passive mode (curl's default; lftp `set ftp:passive-mode on`; Python ftplib `set_pasv(True)`). On a gateway you control, either run ftpalg (rules/cgnat-gateway.yaml rewrites PORT/EPRT and relays the data), or load the kernel's FTP helper in nftables: `ct helper ftp-standard { type \"ftp\" protocol tcp; }` and `tcp dport 21 ct helper set \"ftp-standard\"` in a prerouting chain, plus `ct state related accept` in forward.";
const FIX_PASSIVE_BLOCKED: &str = "On the server: fix its passive range (vsftpd `pasv_min_port`/`pasv_max_port`, proftpd `PassivePorts`, pure-ftpd `-p`) and open that range in its firewall (nftables: `tcp dport 30000-30999 accept`), or load the FTP conntrack helper on the server's firewall so it opens each announced port. If you cannot change the server: run ftpalg on your gateway with `server_mode: auto` (rules/cgnat-gateway.yaml); it falls back to active mode towards the server and still speaks passive to the client.";
const FIX_ACTIVE_BLOCKED: &str = "Let the server's connection back in: on a gateway with the kernel helper, accept the helper's expectations in the forward chain (`ct state established,related accept`); on a host firewall, accept the data port. Behind carrier-grade NAT nothing can reach the client: use passive mode, or run ftpalg on your gateway, which relays active-mode data itself.";
const FIX_UNROUTABLE: &str = "Make the server advertise its public address (vsftpd `pasv_address=`, proftpd `MasqueradeAddress`, pure-ftpd `-P`, pyftpdlib `--nat-address`), or let the client ignore the address in the 227 (curl does by default, `--ftp-skip-pasv-ip`; lftp `set ftp:ignore-pasv-address yes`), or use EPSV, which carries no address. ftpalg replaces the 227's address with the control connection's.";
const FIX_ENCRYPTED: &str = "No ALG (the kernel helper, ftpalg) and no capture can read or rewrite an encrypted control connection: the data connections must work without one. Open the server's passive range in its firewall and use passive mode (PROT P with EPSV). To see what fails, read the client's verbose log (curl -v, lftp `debug`), or capture once without TLS where policy allows.";
const FIX_EXTENDED: &str = "Nothing to fix if the client fell back and the transfer worked. To save the round trip, tell the client not to try it (curl `--disable-epsv`/`--disable-eprt`, lftp `set ftp:prefer-epsv no`); better, upgrade the server or the middlebox that refuses EPSV/EPRT: IPv6 needs them.";
const FIX_LOST: &str = "A NAT or firewall between client and server forgot the control connection while it sat idle during the transfer. Raise the gateway's idle timeout for established TCP above the longest transfer (nftables `ct timeout` policy, or `net.netfilter.nf_conntrack_tcp_timeout_established`), or enable TCP keepalives on the control connection (curl `--keepalive-time 30`). ftpalg on the gateway keeps the session alive while a transfer runs.";
const FIX_BOUNCE: &str = "PORT/EPRT named a host that is not the client: an FTP bounce (RFC 2577), used to scan or attack third parties through the server. A well-configured server refuses it (vsftpd `port_promiscuous=NO`, the default). If it was not deliberate, find out what sent it; ftpalg refuses it at the gateway.";

const FIX_PASSIVE_BLOCKED_HANDLED: &str = "Nothing to do for the client: the gateway between the captures, which rewrites the data commands as ftpalg does, fell back to active mode towards the server and the transfer worked. To spare the wait before that fallback (ftpalg's `passive_probe_timeout`, once per server every ten minutes), fix the server's passive range (vsftpd `pasv_min_port`/`pasv_max_port`, proftpd `PassivePorts`, pure-ftpd `-p`) and open that range in its firewall (nftables: `tcp dport 30000-30999 accept`).";
const FIX_PASSIVE_BLOCKED_GATEWAY: &str = "On the server: fix its passive range (vsftpd `pasv_min_port`/`pasv_max_port`, proftpd `PassivePorts`, pure-ftpd `-p`) and open that range in its firewall (nftables: `tcp dport 30000-30999 accept`), or load the FTP conntrack helper on the server's firewall so it opens each announced port. If you cannot change the server: the gateway between the captures rewrites the data commands as ftpalg does; with `server_mode: auto` ftpalg falls back to active mode towards the server and still speaks passive to the client.";
const FIX_ACTIVE_BLOCKED_GATEWAY: &str = "Let the connection in where it is dropped or refused. The gateway between the captures rewrites the data commands as ftpalg does: a server connecting back reaches that gateway, whose firewall must accept connections to its `server_ports` (docs/deploy/cgnat-gateway.md), and a connection to the client crosses whatever is in front of the client (use passive mode there). If the server's passive ports are open, `server_mode: passive` or `auto` on ftpalg avoids connections from the server altogether.";
const FIX_UNROUTABLE_HANDLED: &str = "Nothing to do for the client: the gateway between the captures, which rewrites the data commands as ftpalg does, gives the client an address that works. For clients that reach the server another way, make the server advertise its public address (vsftpd `pasv_address=`, proftpd `MasqueradeAddress`, pure-ftpd `-P`, pyftpdlib `--nat-address`).";
const FIX_LOST_GATEWAY: &str = "A NAT or firewall between client and server forgot the control connection while it sat idle during the transfer. Raise the idle timeout for established TCP of the NAT that forgot it above the longest transfer (nftables `ct timeout` policy, or `net.netfilter.nf_conntrack_tcp_timeout_established`). The gateway between the captures rewrites the data commands as ftpalg does: its `limits.control_keepalive`, below that timeout, keeps both control connections alive through the transfer.";

/// The fix for a finding in a session that went through a gateway which
/// rewrites the data commands (ftpalg, seen from both sides): advice to
/// run one is already followed, and a problem it got round needs nothing
/// from the client. `recovered` says a later transfer in that capture
/// worked. `None` keeps the finding's own fix.
pub(super) fn fix_behind_gateway(kind: Kind, recovered: bool) -> Option<&'static str> {
    match kind {
        Kind::PassiveDataBlocked if recovered => Some(FIX_PASSIVE_BLOCKED_HANDLED),
        Kind::PassiveDataBlocked => Some(FIX_PASSIVE_BLOCKED_GATEWAY),
        Kind::ActiveDataBlocked => Some(FIX_ACTIVE_BLOCKED_GATEWAY),
        Kind::PassiveAddressUnroutable => Some(FIX_UNROUTABLE_HANDLED),
        Kind::ControlLostDuringTransfer => Some(FIX_LOST_GATEWAY),
        // A gateway that rewrites PORT/EPRT leaves no private address in
        // them; the others give no advice about a gateway.
        Kind::ActiveAddressNotTranslated
        | Kind::ControlEncrypted
        | Kind::ExtendedModeRefused
        | Kind::BounceAttempt
        | Kind::TransferOk => None,
    }
}

/// `PORT 1,2,3,4,5,6` or `EPSV`.
fn label(n: &Negotiation) -> String {
    if n.argument.is_empty() {
        n.command.clone()
    } else {
        format!("{} {}", n.command, n.argument)
    }
}

/// A reply's text without its final full stop, to end a sentence with.
fn said(text: &str) -> &str {
    text.strip_suffix('.').unwrap_or(text)
}

fn code(n: &Negotiation) -> Option<u16> {
    n.reply.as_ref().map(|r| r.code)
}

fn describe_data(d: &DataConn) -> String {
    if let Some(r) = d.reset.filter(|_| d.answered.is_none()) {
        let who = if r.by == Side::Server {
            "a reset"
        } else {
            "a reset from the connecting end"
        };
        return format!(
            "{} -> {}: {} SYN(s), answered with {}",
            d.from,
            d.to,
            d.syns.max(1),
            who
        );
    }
    if !d.established() {
        return format!(
            "{} -> {}: {} SYN(s), no answer",
            d.from,
            d.to,
            d.syns.max(1)
        );
    }
    format!("{} -> {}: {} bytes", d.from, d.to, d.bytes())
}

/// Findings for one session, in order of their first packet.
pub fn session_findings(s: &Session, data: &[DataConn]) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(tls) = s.tls {
        out.push(finding(
            Kind::ControlEncrypted,
            &[Some(tls)],
            format!(
                "The server accepted AUTH (234) at packet {}: from there on the control connection is TLS. Neither this tool nor any ALG can see the PORT/PASV exchanges after it.",
                tls.packet
            ),
            FIX_ENCRYPTED,
        ));
    }
    let server_ip = s.server.ip();
    let client_ip = s.client.ip();
    // A transfer whose final reply the client never got did not work,
    // whatever the server said.
    let lost = control_lost(s, data);
    let lost_index = lost.as_ref().map(|(i, _)| *i);
    for (i, n) in s.negotiations.iter().enumerate() {
        let d = n.data.and_then(|d| data.get(d));
        let refused = code(n).is_some_and(|c| c >= 400);
        let result_code = n.result.as_ref().map(|r| r.code);
        let failed_transfer = result_code.is_some_and(|c| c == 425 || c == 426);
        let ok_transfer = result_code.is_some_and(|c| (200..300).contains(&c));
        let next = s.negotiations.get(i + 1);
        let reply_at = n.reply.as_ref().map(|r| r.at);
        let result_at = n.result.as_ref().map(|r| r.at);
        let reply_text = n
            .reply
            .as_ref()
            .map(|r| said(&r.text).to_string())
            .unwrap_or_default();
        match n.mode {
            Mode::Active => {
                let Some(addr) = n.address else { continue };
                let private = is_private(addr.ip());
                // An address of the other family is the same dual-stack client,
                // not a third host.
                let same_family = addr.is_ipv4() == client_ip.is_ipv4();
                if !private && same_family && addr.ip() != client_ip && !addr.ip().is_unspecified()
                {
                    let answer = if refused {
                        format!("the server refused it ({reply_text})")
                    } else if n.reply.is_some() {
                        format!("the server accepted it ({reply_text})")
                    } else {
                        "no reply was captured".to_string()
                    };
                    out.push(finding(
                        Kind::BounceAttempt,
                        &[Some(n.at), reply_at],
                        format!(
                            "{} names {}, which is neither the client ({}) nor a private address a NAT failed to translate: {}.",
                            label(n), addr, client_ip, answer
                        ),
                        FIX_BOUNCE,
                    ));
                    continue;
                }
                // Seen inside the NAT, a private address is the client's
                // own; only a refusal shows that nothing translated it (a
                // server that accepts it probably got it translated).
                // Outside, an address other than the client's is proof.
                let not_translated =
                    private && !is_private(server_ip) && (addr.ip() != client_ip || refused);
                let blocked = d.is_some_and(|d| !d.established());
                if not_translated
                    && (refused
                        || blocked
                        || failed_transfer
                        || (n.reply.is_some() && d.is_none() && n.transfer.is_some()))
                {
                    let what = if refused {
                        format!("The server refused it: {reply_text}.")
                    } else if let Some(d) = d.filter(|d| !d.established()) {
                        format!(
                            "The server accepted it, but its connection went nowhere ({}).",
                            describe_data(d)
                        )
                    } else {
                        "The server accepted it, but no data connection came.".to_string()
                    };
                    let seen_as = if addr.ip() == client_ip {
                        "This capture was taken before the NAT: the address is the client's own."
                            .to_string()
                    } else {
                        format!("The server sees the client as {client_ip}: the NAT changed the packets' address but not the one inside the command.")
                    };
                    out.push(finding(
                        Kind::ActiveAddressNotTranslated,
                        &[Some(n.at), reply_at, d.map(|d| d.first), result_at],
                        format!(
                            "{} asks the server {} to connect to {}, a private or carrier-grade NAT address it cannot reach. {} {}",
                            label(n), s.server, addr, seen_as, what
                        ),
                        FIX_NOT_TRANSLATED,
                    ));
                    continue;
                }
                if refused {
                    if n.command == "EPRT" && matches!(code(n), Some(500 | 501 | 502 | 522)) {
                        out.push(extended_refused(n, next));
                    }
                    continue;
                }
                if let Some(d) = d {
                    if !d.established() {
                        out.push(finding(
                            Kind::ActiveDataBlocked,
                            &[Some(n.at), reply_at, Some(d.first), d.reset.map(|r| r.at), result_at],
                            format!(
                                "The server accepted {} and connected back to {}, but {}. Something between them (the client's gateway or firewall) drops or refuses connections to the client.",
                                label(n), addr, describe_data(d)
                            ),
                            FIX_ACTIVE_BLOCKED,
                        ));
                        continue;
                    }
                } else if failed_transfer {
                    out.push(finding(
                        Kind::ActiveDataBlocked,
                        &[Some(n.at), reply_at, n.transfer_at, result_at],
                        format!(
                            "The server accepted {}, but its connection to {} never arrived here, and it answered {}: it could not connect.{}",
                            label(n),
                            addr,
                            n.result.as_ref().map(|r| said(&r.text)).unwrap_or(""),
                            if private && addr.ip() == client_ip {
                                " Seen from inside the NAT, this capture cannot tell whether a helper translated the address (the server accepted it, so probably) and the connection back was dropped; a capture outside the NAT shows which."
                            } else {
                                ""
                            }
                        ),
                        FIX_ACTIVE_BLOCKED,
                    ));
                    continue;
                }
            }
            Mode::Passive => {
                if refused {
                    if matches!(n.command.as_str(), "EPSV" | "LPSV")
                        && matches!(code(n), Some(500 | 501 | 502 | 522))
                    {
                        out.push(extended_refused(n, next));
                    }
                    continue;
                }
                let Some(addr) = n.address else { continue };
                let unroutable = addr.ip() != server_ip;
                if unroutable {
                    let why = if addr.ip().is_unspecified() {
                        "the zero address"
                    } else if is_private(addr.ip()) {
                        "a private address"
                    } else {
                        "another address"
                    };
                    let outcome = match d {
                        Some(d) if d.to.ip() == server_ip && d.established() => {
                            " The client ignored it and connected to the control address, so this transfer worked; a client that trusts the 227 would fail.".to_string()
                        }
                        Some(d) => format!(" The client's connection: {}.", describe_data(d)),
                        None => " No connection to it was captured.".to_string(),
                    };
                    out.push(finding(
                        Kind::PassiveAddressUnroutable,
                        &[Some(n.at), reply_at, d.map(|d| d.first)],
                        format!(
                            "The server answered {} with \"{}\": {} ({}), not its own control address {}.{}",
                            n.command, reply_text, why, addr.ip(), server_ip, outcome
                        ),
                        FIX_UNROUTABLE,
                    ));
                }
                let blocked = match d {
                    Some(d) => !d.established(),
                    None => failed_transfer && !unroutable,
                };
                if blocked && !(unroutable && d.is_some_and(|d| d.to.ip() != server_ip)) {
                    let how = match d {
                        Some(d) => describe_data(d),
                        None => "no connection reached the capture point".to_string(),
                    };
                    out.push(finding(
                        Kind::PassiveDataBlocked,
                        &[reply_at, d.map(|d| d.first), d.and_then(|d| d.reset.map(|r| r.at)), result_at],
                        format!(
                            "After \"{}\" the client connected to the server's passive port {}: {}. The server's firewall (or one in front of it) lets port {} in but not its passive ports.",
                            reply_text, addr.port(), how, s.server.port()
                        ),
                        FIX_PASSIVE_BLOCKED,
                    ));
                    continue;
                }
            }
        }
        if ok_transfer && d.is_none_or(|d| d.established()) && lost_index != Some(i) {
            let bytes = d
                .map(|d| format!(", {} bytes", d.bytes()))
                .unwrap_or_default();
            out.push(finding(
                Kind::TransferOk,
                &[Some(n.at), reply_at, d.map(|d| d.first), result_at],
                format!(
                    "{} via {}: {} connected to {}{}; the server answered {}.",
                    n.transfer.as_deref().unwrap_or("transfer"),
                    label(n),
                    d.map(|d| d.from.to_string())
                        .unwrap_or_else(|| "the data connection".into()),
                    d.map(|d| d.to.to_string())
                        .unwrap_or_else(|| n.address.map(|a| a.to_string()).unwrap_or_default()),
                    bytes,
                    n.result.as_ref().map(|r| said(&r.text)).unwrap_or("")
                ),
                "Nothing to change.",
            ));
        }
    }
    if let Some((_, f)) = lost {
        out.push(f);
    }
    out.sort_by_key(|f| (f.packets.first().copied().unwrap_or(0), f.kind));
    out
}

fn extended_refused(n: &Negotiation, next: Option<&Negotiation>) -> Finding {
    let then = match next {
        Some(m) => format!(" The client then sent {}.", label(m)),
        None => " The client sent no other data command.".to_string(),
    };
    finding(
        Kind::ExtendedModeRefused,
        &[
            Some(n.at),
            n.reply.as_ref().map(|r| r.at),
            next.map(|m| m.at),
        ],
        format!(
            "The server refused {}: {}.{}",
            n.command,
            n.reply.as_ref().map(|r| said(&r.text)).unwrap_or(""),
            then
        ),
        FIX_EXTENDED,
    )
}

/// A transfer started (1xx) and then the control connection died: reset
/// (or never answered) with no final reply, or its final reply, after the
/// connection sat idle through the transfer, met a reset from the client's
/// side (the NAT had forgotten the mapping). Commands after the transfer
/// mean the session went on, so nothing was lost.
fn control_lost(s: &Session, data: &[DataConn]) -> Option<(usize, Finding)> {
    let (index, n) = s
        .negotiations
        .iter()
        .enumerate()
        .rev()
        .find(|(_, n)| n.started.is_some())?;
    let started = n.started.as_ref()?.at;
    if s.transcript
        .iter()
        .any(|l| l.from == Side::Client && l.at.time > started.time)
    {
        return None;
    }
    let d = n.data.and_then(|d| data.get(d));
    let data_end = d.map(|d| d.fin.map(|f| f.at).unwrap_or(d.last));
    let (end, how, idle) = match (&n.result, s.reset) {
        (None, Some(r)) => (
            r.at,
            format!(
                "the control connection was reset (by the {}) at packet {} without the transfer's final reply",
                if r.by == Side::Client { "client's side" } else { "server's side" },
                r.at.packet
            ),
            r.at.time - started.time,
        ),
        (None, None) if s.fin.is_none() && data_end.is_some_and(|e| s.last.time - e.time >= 1.0) => (
            s.last,
            "the transfer's final reply never came".to_string(),
            s.last.time - started.time,
        ),
        (Some(res), Some(r))
            if r.by == Side::Client
                && r.at.time >= res.at.time
                && r.at.time - res.at.time < 1.0
                && res.at.time - started.time >= 1.0 =>
        {
            (
                r.at,
                format!(
                    "the server's final reply ({}) was answered with a reset from the client's side at packet {}",
                    said(&res.text),
                    r.at.packet
                ),
                res.at.time - started.time,
            )
        }
        _ => return None,
    };
    let bytes = d
        .map(|d| format!(" ({} bytes moved on the data connection)", d.bytes()))
        .unwrap_or_default();
    Some((index, finding(
        Kind::ControlLostDuringTransfer,
        &[Some(started), d.map(|d| d.first), data_end, n.result.as_ref().map(|r| r.at), Some(end)],
        format!(
            "{} started at packet {}{}; the control connection then carried nothing for {:.1} s, and {}. A NAT or firewall on the way forgot the idle control connection while the data flowed.",
            n.transfer.as_deref().unwrap_or("The transfer"),
            started.packet,
            bytes,
            idle,
            how
        ),
        FIX_LOST,
    )))
}

//! Pairs one session seen in two captures (the two sides of a NAT), says
//! what the NAT, or a helper on it, changed, and makes the two sightings
//! one session of the report.

use super::findings;
use super::model::{Mode, Negotiation};
use super::report::{NatPair, SessionReport};

/// Largest difference in start time for two sightings of one session.
const MAX_SKEW: f64 = 5.0;

fn commands(s: &SessionReport) -> Vec<&str> {
    s.transcript
        .iter()
        .filter(|l| l.from == super::model::Side::Client)
        .map(|l| l.text.split(' ').next().unwrap_or(""))
        // A gateway (ftpalg) may change the data commands themselves.
        .filter(|v| !matches!(*v, "PORT" | "EPRT" | "LPRT" | "PASV" | "EPSV" | "LPSV"))
        .take(8)
        .collect()
}

/// The data connection of a session's `k`th negotiation: the report keeps
/// them in negotiation order, for negotiations that have one.
fn data_for(s: &SessionReport, k: usize) -> Option<&super::model::DataConn> {
    s.negotiations.get(k)?.data?;
    let before = s.negotiations[..k]
        .iter()
        .filter(|n| n.data.is_some())
        .count();
    s.data.get(before)
}

/// How bad a verdict is, for the verdict of a session seen twice.
fn severity(verdict: &str) -> u8 {
    match verdict {
        "ok" => 0,
        "recovered" => 1,
        "unreadable" => 2,
        _ => 3,
    }
}

/// Whether something between the two sightings rewrote the data commands
/// themselves, as an FTP gateway (ftpalg) does: a NAT, with or without
/// the kernel's helper, changes at most the addresses inside them, never
/// a verb (`EPSV` sent on as `PASV`) nor the mode a transfer used
/// (passive on one side, active on the other).
fn gateway_between(a: &SessionReport, b: &SessionReport) -> bool {
    let verbs_differ = a
        .negotiations
        .iter()
        .zip(&b.negotiations)
        .any(|(na, nb)| na.command != nb.command);
    let mode_of = |s: &SessionReport, t: &str| -> Option<Mode> {
        s.negotiations
            .iter()
            .find(|n| n.transfer.as_deref() == Some(t))
            .map(|n| n.mode)
    };
    let modes_differ = a
        .negotiations
        .iter()
        .filter_map(|n: &Negotiation| n.transfer.as_deref())
        .any(|t| matches!((mode_of(a, t), mode_of(b, t)), (Some(x), Some(y)) if x != y));
    verbs_differ || modes_differ
}

/// Rewrites the fixes of `s`'s findings for a session that went through
/// a gateway rewriting the data commands: advice to run one is already
/// followed.
fn refit(s: &mut SessionReport) {
    let recovered = s.verdict == "recovered";
    for f in &mut s.findings {
        if let Some(fix) = findings::fix_behind_gateway(f.kind, recovered) {
            f.fix = fix.to_string();
        }
    }
}

/// Makes each session seen in two captures one session of the report:
/// the sighting from the client's side (the one with a private client
/// address, else the first given) with the other in its `nat`, and the
/// worse of the two verdicts.
pub fn pair_sessions(sessions: Vec<SessionReport>) -> Vec<SessionReport> {
    let n = sessions.len();
    let mut taken = vec![false; n];
    let mut pairs = Vec::new();
    // Candidates share the server's address; index by it so that many
    // sessions do not make pairing quadratic.
    let mut by_server: std::collections::HashMap<String, Vec<usize>> =
        std::collections::HashMap::new();
    for (i, s) in sessions.iter().enumerate() {
        by_server.entry(s.server.clone()).or_default().push(i);
    }
    // One capture can hold both legs (tcpdump -i any on the gateway): a
    // client on a private address inside, one on a public address outside.
    let private: Vec<bool> = sessions
        .iter()
        .map(|s| {
            s.client
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|a| super::control::is_private(a.ip()))
        })
        .collect();
    for i in 0..n {
        if taken[i] {
            continue;
        }
        let Some(candidates) = by_server.get(&sessions[i].server) else {
            continue;
        };
        let best = candidates
            .iter()
            .copied()
            .filter(|&j| j != i && !taken[j])
            .filter(|&j| sessions[j].capture != sessions[i].capture || private[i] != private[j])
            .filter(|&j| (sessions[j].abs_start - sessions[i].abs_start).abs() < MAX_SKEW)
            .filter(|&j| commands(&sessions[j]) == commands(&sessions[i]))
            .min_by(|&a, &b| {
                let da = (sessions[a].abs_start - sessions[i].abs_start).abs();
                let db = (sessions[b].abs_start - sessions[i].abs_start).abs();
                da.total_cmp(&db)
            });
        let Some(j) = best else { continue };
        taken[i] = true;
        taken[j] = true;
        // The client's side first: its address is the client's own.
        let (p, o) = if private[j] && !private[i] {
            (j, i)
        } else {
            (i, j)
        };
        pairs.push((p, o, changes(&sessions[p], &sessions[o])));
    }
    let mut slots: Vec<Option<SessionReport>> = sessions.into_iter().map(Some).collect();
    let mut merged: Vec<Option<SessionReport>> = (0..n).map(|_| None).collect();
    for (p, o, changes) in pairs {
        let (Some(mut a), Some(mut b)) = (slots[p].take(), slots[o].take()) else {
            continue;
        };
        if gateway_between(&a, &b) {
            refit(&mut a);
            refit(&mut b);
        }
        let verdict = if severity(&b.verdict) > severity(&a.verdict) {
            b.verdict.clone()
        } else {
            a.verdict.clone()
        };
        a.nat = Some(NatPair {
            capture: b.capture.clone(),
            client: b.client.clone(),
            changes,
            leg: Box::new(b),
        });
        a.verdict = verdict;
        merged[p.min(o)] = Some(a);
    }
    merged
        .into_iter()
        .zip(slots)
        .filter_map(|(m, s)| m.or(s))
        .collect()
}

/// What changed between `a`, seen on the client's side, and `b`.
fn changes(a: &SessionReport, b: &SessionReport) -> Vec<String> {
    let mut changes = Vec::new();
    if a.client != b.client {
        changes.push(format!(
            "the client {} appears as {} in {}",
            a.client, b.client, b.capture
        ));
    } else {
        changes.push(
            "the client's address is the same in both: no address translation between them"
                .to_string(),
        );
    }
    for (na, nb) in a.negotiations.iter().zip(&b.negotiations) {
        let label = |n: &super::model::Negotiation| match n.reply.as_ref() {
            Some(r) if n.mode == super::model::Mode::Passive => r.text.clone(),
            _ => format!("{} {}", n.command, n.argument),
        };
        let (la, lb) = (label(na), label(nb));
        if la != lb {
            changes.push(format!(
                "\"{la}\" in {} became \"{lb}\" in {}",
                a.capture, b.capture
            ));
        } else if na.mode == super::model::Mode::Active && a.client != b.client {
            changes.push(format!(
                "\"{la}\" went through unchanged: nothing translated the address inside it"
            ));
        }
    }
    // The data connections: a transfer's connection is the one its
    // transfer command used on each side (a gateway such as ftpalg may
    // have put other negotiations in between); connections without a
    // transfer pair by position, when the commands agree.
    let mut used = vec![false; b.negotiations.len()];
    for (k, na) in a.negotiations.iter().enumerate() {
        let Some(da) = data_for(a, k) else { continue };
        let m = b.negotiations.iter().enumerate().position(|(m, nb)| {
            !used[m]
                && data_for(b, m).is_some()
                && match (&na.transfer, &nb.transfer) {
                    (Some(ta), Some(tb)) => ta == tb,
                    (None, None) => m == k && na.command == nb.command,
                    _ => false,
                }
        });
        let Some(m) = m else { continue };
        used[m] = true;
        if let Some(db) = data_for(b, m) {
            if (da.from, da.to) != (db.from, db.to) {
                changes.push(format!(
                    "the data connection {} -> {} appears as {} -> {}",
                    da.from, da.to, db.from, db.to
                ));
            }
        }
    }
    changes
}

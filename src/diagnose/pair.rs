//! Pairs one session seen in two captures (the two sides of a NAT) and
//! says what the NAT, or a helper on it, changed.

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

/// Fills in `nat` for sessions found in two different captures.
pub fn pair_sessions(sessions: &mut [SessionReport]) {
    let n = sessions.len();
    let mut taken = vec![false; n];
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
        let (a, b) = (&sessions[i], &sessions[j]);
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
        let pa = NatPair {
            capture: b.capture.clone(),
            client: b.client.clone(),
            changes: changes.clone(),
        };
        let pb = NatPair {
            capture: a.capture.clone(),
            client: a.client.clone(),
            changes,
        };
        sessions[i].nat = Some(pa);
        sessions[j].nat = Some(pb);
    }
}

//! The label values known before anything happens, so that every series of
//! a closed set is at zero from the first scrape: an alert on
//! `rate(ftpalg_transfers_total{result="failed"}[5m])` has data before the
//! first failure, and a dashboard has no gap before the first event.
//!
//! Values that are open (a denial by a rule is `rule:NAME`, one per rule
//! name) appear with their first event; `docs/metrics.md` says which.

use super::{DirectionLabels, ReasonLabels, ResultLabels, SideLabels, Telemetry, TransferLabels};
use crate::ftp::session::{ClientMode, Denial, ServerMode};
use crate::proxy::admission::Limit;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// `result` of a transfer: its class (`events/transfer.rs`).
pub(super) const TRANSFER_RESULTS: [&str; 5] = super::TransferEnd::RESULTS;
/// `path` of a transfer: through ftpalg, or forwarded by its nftables
/// pinholes.
pub(super) const PATHS: [&str; 2] = ["relay", "kernel"];
/// `direction` of the bytes counter.
pub(super) const DIRECTIONS: [&str; 2] = ["up", "down"];
/// `side` of a relay pinhole a stranger reached.
pub(super) const SIDES: [&str; 2] = ["client", "server"];
/// `result` of a reload.
pub(super) const RELOAD_RESULTS: [&str; 2] = ["ok", "refused"];

/// Refusals the driver makes itself, before the engine sees a line (see
/// `proxy/control.rs`).
const DRIVER_DENIALS: [&str; 2] = ["self-destination", "server-not-allowed"];

/// Every client data command.
const CLIENT_MODES: [ClientMode; 6] = [
    ClientMode::Pasv,
    ClientMode::Epsv,
    ClientMode::Lpsv,
    ClientMode::Port,
    ClientMode::Eprt,
    ClientMode::Lprt,
];

/// Every mode towards the server.
const SERVER_MODES: [ServerMode; 2] = [ServerMode::Passive, ServerMode::Active];

/// The engine's refusals of a fixed class: every [`Denial`] but `Rule`.
fn engine_denials() -> [Denial; 8] {
    [
        Denial::Bounce,
        Denial::LowPort,
        Denial::LineTooLong,
        Denial::Syntax,
        Denial::Tls,
        Denial::Pipeline,
        Denial::Protocol,
        Denial::Telnet,
    ]
}

/// Does nothing; it stops compiling when the engine gains a refusal or a
/// data mode, so that the lists above are brought up to date with it.
#[allow(dead_code)]
fn lists_are_complete(d: &Denial, c: ClientMode, s: ServerMode) {
    match d {
        Denial::Bounce
        | Denial::LowPort
        | Denial::LineTooLong
        | Denial::Syntax
        | Denial::Tls
        | Denial::Pipeline
        | Denial::Protocol
        | Denial::Telnet
        // Open: one value per rule name.
        | Denial::Rule(_) => {}
    }
    match c {
        ClientMode::Pasv
        | ClientMode::Epsv
        | ClientMode::Lpsv
        | ClientMode::Port
        | ClientMode::Eprt
        | ClientMode::Lprt => {}
    }
    match s {
        ServerMode::Passive | ServerMode::Active => {}
    }
}

/// Every `reason` of a denial known in advance.
pub(super) fn denial_reasons() -> Vec<String> {
    engine_denials()
        .iter()
        .map(Denial::to_string)
        .chain(DRIVER_DENIALS.iter().map(|r| r.to_string()))
        .chain([Limit::Global, Limit::PerClient].map(|l| l.reason().to_string()))
        .collect()
}

/// Creates the series `labels` of `family`, at zero.
fn zero<L>(family: &Family<L, Counter>, labels: L)
where
    L: Clone + std::hash::Hash + Eq,
{
    // The guard only holds the family's lock: let it go at once.
    let _ = family.get_or_create(&labels);
}

/// Creates every series of a closed label set, at zero.
pub(super) fn preset(t: &Telemetry) {
    for result in TRANSFER_RESULTS {
        for client_mode in CLIENT_MODES {
            for server_mode in SERVER_MODES {
                for path in PATHS {
                    zero(
                        &t.transfers,
                        TransferLabels {
                            result: result.into(),
                            client_mode: client_mode.as_str().into(),
                            server_mode: server_mode.as_str().into(),
                            path: path.into(),
                        },
                    );
                }
            }
        }
    }
    for direction in DIRECTIONS {
        zero(
            &t.bytes,
            DirectionLabels {
                direction: direction.into(),
            },
        );
    }
    for reason in denial_reasons() {
        zero(&t.denials, ReasonLabels { reason });
    }
    for why in crate::proxy::plain::UpstreamFailure::ALL {
        zero(
            &t.upstream_failures,
            ReasonLabels {
                reason: why.as_str().into(),
            },
        );
    }
    for side in SIDES {
        zero(&t.strangers, SideLabels { side: side.into() });
    }
    for result in RELOAD_RESULTS {
        zero(
            &t.reloads,
            ResultLabels {
                result: result.into(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_closed_series_is_there_at_zero_before_any_event() {
        let text = Telemetry::new().encode();
        let samples = |name: &str| -> Vec<&str> {
            text.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .collect()
        };
        let transfers = samples("ftpalg_transfers_total");
        assert_eq!(transfers.len(), 5 * 6 * 2 * 2, "{text}");
        assert!(transfers.iter().all(|l| l.ends_with(" 0")), "{text}");
        assert!(transfers.contains(
            &"ftpalg_transfers_total{result=\"failed\",client_mode=\"EPSV\",server_mode=\"active\",path=\"relay\"} 0"
        ));
        for reason in denial_reasons() {
            let line = format!("ftpalg_denials_total{{reason=\"{reason}\"}} 0");
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(samples("ftpalg_denials_total")
            .iter()
            .all(|l| !l.contains("rule:")));
        for (name, n) in [
            ("ftpalg_transfer_bytes_total", 2),
            ("ftpalg_pinhole_strangers_total", 2),
            ("ftpalg_reloads_total", 2),
            ("ftpalg_upstream_failures_total", 4),
        ] {
            assert_eq!(samples(name).len(), n, "{name}:\n{text}");
        }
    }
}

//! Reports from the driver that come late, twice, or for the wrong side
//! never disturb a live channel (found by the session model).

use super::*;

fn releases(acts: &[Action]) -> Vec<DataId> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Reset {
                id,
                why: Cancel::Released,
            } => Some(*id),
            _ => None,
        })
        .collect()
}

#[test]
fn a_report_for_the_wrong_side_does_not_release_the_setup() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.client("PASV");
    h.server("227 (198,51,100,10,4,1)");
    h.acts();
    // The server side is being connected; a stray client-side report.
    h.prepared(1, Side::Client, "100.64.0.1:5001");
    assert_eq!(releases(&h.acts()), vec![]);
    h.prepared(1, Side::Server, "198.51.100.1:5000");
    h.prepared(1, Side::Client, "100.64.0.1:5001");
    assert!(h.acts().iter().any(|a| matches!(a, Action::Start { .. })));
}

#[test]
fn a_duplicate_report_does_not_release_a_started_channel() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.pasv_prepared();
    h.prepared(1, Side::Client, "100.64.0.1:5001");
    h.failed(1, Side::Server, "late");
    assert_eq!(releases(&h.acts()), vec![]);
    h.client("RETR f");
    assert!(h
        .acts()
        .iter()
        .any(|a| matches!(a, Action::Transfer { id: DataId(1), .. })));
}

#[test]
fn a_report_for_an_id_never_issued_is_ignored() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.prepared(7, Side::Client, "100.64.0.1:5001");
    assert_eq!(h.acts(), vec![]);
}

#[test]
fn a_late_report_for_a_released_channel_leaves_it_released() {
    // The setup failed while the driver was still preparing the other
    // side: the channel is reset once; the driver, which no longer holds
    // it, closes what it prepared late itself.
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.client("PASV");
    h.server("227 (198,51,100,10,4,1)");
    h.failed(1, Side::Server, "refused");
    assert_eq!(releases(&h.acts()), vec![DataId(1)]);
    h.prepared(1, Side::Server, "198.51.100.1:5000");
    assert_eq!(h.acts(), vec![]);
}

#[test]
fn a_late_report_for_a_channel_no_longer_wanted_resets_it() {
    // A channel the session has no use for any more but the driver still
    // holds (here: taken by a transfer, then reported prepared again) is
    // closed.
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.pasv_prepared();
    h.client("RETR f");
    h.acts();
    h.prepared(1, Side::Client, "100.64.0.1:5001");
    assert_eq!(releases(&h.acts()), vec![DataId(1)]);
}

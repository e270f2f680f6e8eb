//! ABOR in every state of a transfer, a data connection cut early, and a
//! server that stays silent afterwards.

use super::*;
use crate::ftp::framer::{DM, IAC, IP};
use std::time::Duration;

const CUT_AFTER: Duration = Duration::from_secs(2);

/// Sets up channel 1 for `mode` (PASV or PORT from the client, the server
/// side as the policy says) and answers it; returns with the channel ready.
fn ready(mode: ServerDataMode, client_active: bool) -> Rig {
    let mut h = Rig::new(allow_all(mode));
    if client_active {
        h.client("PORT 100,64,0,2,200,10");
    } else {
        h.client("PASV");
    }
    let acts = h.acts();
    if acts.contains(&to_server("PASV")) {
        h.server("227 Entering Passive Mode (198,51,100,10,195,80).");
        h.acts();
        h.prepared(1, Side::Server, "198.51.100.1:33000");
    } else {
        h.prepared(1, Side::Server, "198.51.100.1:33000");
        let acts = h.acts();
        assert!(
            acts.contains(&to_server("PORT 198,51,100,1,128,232")),
            "{acts:?}"
        );
        h.server("200 PORT ok");
    }
    h.acts();
    h.prepared(1, Side::Client, "100.64.0.1:40001");
    let acts = h.acts();
    assert!(
        acts.iter().any(|a| matches!(a, Action::Start { .. })),
        "{acts:?}"
    );
    h
}

fn every_mode() -> Vec<(ServerDataMode, bool)> {
    let mut all = Vec::new();
    for mode in [
        ServerDataMode::SameAsClient,
        ServerDataMode::Passive,
        ServerDataMode::Active,
    ] {
        for active in [false, true] {
            all.push((mode, active));
        }
    }
    all
}

fn cut(id: u64) -> Action {
    Action::Cut { id: DataId(id) }
}

/// Whether the session's next deadline is the reply deadline of a cut
/// armed now.
fn reply_deadline_armed(h: &Rig) -> bool {
    h.s.poll_timeout() == Some(h.now + CUT_AFTER)
}

const ABORTED: &str = "426 Connection closed; transfer aborted.";

#[test]
fn abor_mid_transfer_cuts_the_channel_before_it_is_forwarded_in_every_mode() {
    for (mode, active) in every_mode() {
        for verb in ["RETR f", "STOR f"] {
            let mut h = ready(mode, active);
            h.client(verb);
            h.acts();
            h.server("150 Opening");
            h.acts();
            h.client("ABOR");
            assert_eq!(
                h.acts(),
                vec![cut(1), to_server("ABOR")],
                "{mode:?} active={active} {verb}"
            );
            assert!(reply_deadline_armed(&h), "{mode:?} active={active} {verb}");
            // The server's answers pass at once: nothing is held behind
            // data, and the channel cut is not released again.
            h.server("426 Transfer aborted");
            assert_eq!(h.acts(), vec![to_client("426 Transfer aborted")]);
            h.server("226 ABOR successful");
            assert_eq!(h.acts(), vec![to_client("226 ABOR successful")]);
        }
    }
}

#[test]
fn abor_after_the_server_finished_releases_the_held_reply_as_426() {
    let mut h = ready(ServerDataMode::SameAsClient, false);
    h.client("RETR f");
    h.acts();
    h.server("150 Opening");
    h.server("226 Done");
    assert_eq!(h.acts(), vec![to_client("150 Opening")], "226 held");
    h.client("ABOR");
    // The server has answered the transfer: no deadline, just the cut,
    // which settles the held 226 as failed: the data never arrived.
    assert_eq!(
        h.acts(),
        vec![cut(1), to_client(ABORTED), to_server("ABOR")]
    );
    assert!(!reply_deadline_armed(&h));
    h.server("225 No transfer to abort");
    assert_eq!(h.acts(), vec![to_client("225 No transfer to abort")]);
}

#[test]
fn abor_after_delivery_or_without_a_transfer_cuts_nothing() {
    // After the 226 was delivered.
    let mut h = ready(ServerDataMode::SameAsClient, false);
    h.client("RETR f");
    h.server("226 Done");
    h.acts();
    h.delivered(1, Ok(()));
    assert_eq!(h.acts(), vec![to_client("226 Done")]);
    h.client("ABOR");
    assert_eq!(h.acts(), vec![to_server("ABOR")]);

    // A channel set up but not used yet is released, not cut.
    let mut h = ready(ServerDataMode::SameAsClient, false);
    h.client("ABOR");
    assert_eq!(
        h.acts(),
        vec![reset(1, Cancel::Released), to_server("ABOR")]
    );
    h.server("225 No transfer");
    assert_eq!(h.acts(), vec![to_client("225 No transfer")]);

    // No data channel at all.
    let mut h = Rig::new(allow_all(ServerDataMode::SameAsClient));
    h.client("ABOR");
    assert_eq!(h.acts(), vec![to_server("ABOR")]);
}

#[test]
fn abor_with_the_telnet_synch_is_cut_and_forwarded_with_the_synch() {
    let mut r = Rig::new(AllowAll::default());
    r.bytes(b"PASV\r\n");
    r.server("227 Entering Passive Mode (198,51,100,10,195,80).");
    r.prepared(1, Side::Server, "198.51.100.1:33000");
    r.prepared(1, Side::Client, "100.64.0.1:40001");
    r.bytes(b"RETR f\r\n");
    r.drain();
    // The DM sent as urgent data and kept inline, and the DM lost.
    for synch in [&[IAC, IP, IAC, DM][..], &[IAC, IP, IAC][..]] {
        r.bytes(&[synch, b"ABOR\r\n"].concat());
        let acts = r.drain();
        let wire = wire_to_server(&acts);
        assert_eq!(wire, [&[IAC, IP, IAC, DM][..], b"ABOR\r\n"].concat());
        r.server("226 ok");
        r.drain();
    }
    // The first ABOR cut the transfer; nothing was left to cut for the
    // second.
}

#[test]
fn a_cut_download_the_server_stays_silent_about_is_answered_426_once() {
    for (mode, active) in every_mode() {
        let mut h = ready(mode, active);
        h.client("RETR f");
        h.server("150 Opening");
        h.acts();
        // The client closed its data connection early; the relay failed.
        h.ended(1, Err("reset by the client"));
        assert_eq!(h.acts(), vec![]);
        assert!(reply_deadline_armed(&h));
        h.later(CUT_AFTER - Duration::from_millis(1));
        assert_eq!(h.acts(), vec![], "not yet");
        h.later(Duration::from_millis(1));
        assert_eq!(h.acts(), vec![to_client(ABORTED)]);
        // The server's late answer is not a second reply to RETR.
        h.server("426 Failure writing network stream.");
        assert_eq!(h.acts(), vec![]);
        h.client("NOOP");
        h.server("200 NOOP ok");
        assert_eq!(h.acts(), vec![to_server("NOOP"), to_client("200 NOOP ok")]);
    }
}

#[test]
fn a_deadline_after_the_server_answered_changes_nothing() {
    let mut h = ready(ServerDataMode::SameAsClient, false);
    h.client("RETR f");
    h.acts();
    h.ended(1, Err("reset"));
    assert!(reply_deadline_armed(&h));
    h.server("426 Connection closed");
    h.acts();
    h.later(CUT_AFTER);
    assert_eq!(h.acts(), vec![]);
    // A report after the channel ended, well or not, arms nothing.
    h.ended(1, Ok(()));
    h.ended(1, Err("late"));
    assert!(!reply_deadline_armed(&h));
    assert_eq!(h.acts(), vec![]);
}

#[test]
fn a_deadline_during_a_multi_line_reply_waits_for_its_end() {
    let mut h = ready(ServerDataMode::SameAsClient, false);
    h.client("RETR f");
    h.ended(1, Err("reset"));
    h.server("426-Transfer aborted");
    h.acts();
    h.later(CUT_AFTER);
    assert_eq!(h.acts(), vec![]);
    h.server("426 end");
    assert_eq!(h.acts(), vec![to_client("426 end")]);
}

#[test]
fn rest_passes_through_before_every_transfer_command() {
    for verb in ["RETR f", "STOR f", "APPE f"] {
        let mut h = ready(ServerDataMode::SameAsClient, false);
        // REST before PASV is the usual order; here after it, as curl does.
        h.client("REST 1048576");
        assert_eq!(h.acts(), vec![to_server("REST 1048576")]);
        h.server("350 Restarting at 1048576");
        assert_eq!(h.acts(), vec![to_client("350 Restarting at 1048576")]);
        h.client(verb);
        let acts = h.acts();
        assert!(
            acts.iter().any(|a| matches!(a, Action::Transfer { .. })),
            "{verb}: {acts:?}"
        );
    }
}

#[test]
fn a_second_preliminary_after_abor_ends_the_cut_transfer() {
    let mut h = ready(ServerDataMode::SameAsClient, true);
    h.client("RETR f");
    h.acts();
    h.server("150-Connecting to port 41631");
    h.server("150 40960.0 kbytes to download");
    assert_eq!(
        h.acts(),
        vec![
            to_client("150-Connecting to port 41631"),
            to_client("150 40960.0 kbytes to download")
        ]
    );
    h.client("ABOR");
    h.acts();
    // pure-ftpd's end of a transfer cut by ABOR, then ABOR's only reply.
    h.server("150 0.010 seconds (measured here), 1235.33 Mbytes per second");
    assert_eq!(h.acts(), vec![to_client(ABORTED)]);
    h.server("226 Since you see this ABOR must've succeeded");
    assert_eq!(
        h.acts(),
        vec![to_client("226 Since you see this ABOR must've succeeded")]
    );
    // Replies are matched to their commands again: the 227 is the
    // engine's own.
    h.client("PASV");
    assert_eq!(h.acts(), vec![to_server("PASV")]);
    h.server("227 Entering Passive Mode (198,51,100,10,195,81).");
    let acts = h.acts();
    assert!(
        acts.iter().any(|a| matches!(a, Action::Prepare { .. })),
        "{acts:?}"
    );
}

#[test]
fn a_second_preliminary_without_abor_passes() {
    let mut h = ready(ServerDataMode::SameAsClient, false);
    h.client("RETR f");
    h.acts();
    h.server("150 Opening");
    h.server("125 Still going");
    assert_eq!(
        h.acts(),
        vec![to_client("150 Opening"), to_client("125 Still going")]
    );
    h.server("226 Done");
    assert_eq!(h.acts(), vec![]);
    h.delivered(1, Ok(()));
    assert_eq!(h.acts(), vec![to_client("226 Done")]);
}

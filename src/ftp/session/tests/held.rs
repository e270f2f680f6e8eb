//! Replies held behind a data channel, settled from the driver's reports
//! (`226` or `426`), and the session's bound on its channels: one in
//! preparation, one running, a delivered one retired.

use super::*;
use crate::ftp::refusal::Refusal;
use std::time::Duration;

const ABORTED: &str = "426 Connection closed; transfer aborted.";

/// A download on channel 1 whose server has sent `150`.
fn downloading() -> Rig {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.pasv_prepared();
    h.client("RETR f");
    h.server("150 Opening");
    h.acts();
    h
}

fn failed_event(acts: &[Action]) -> Option<(String, String)> {
    acts.iter().find_map(|a| match a {
        Action::Event(Event::DataPathFailed { reason, held, .. }) => {
            Some((reason.clone(), held.clone()))
        }
        _ => None,
    })
}

#[test]
fn what_the_client_is_sent_after_a_held_reply_waits_behind_it() {
    let mut h = downloading();
    h.server("226 Done");
    h.client("NOOP");
    h.server("200 NOOP ok");
    assert_eq!(h.acts(), vec![to_server("NOOP")]);
    assert!(h.s.holding());
    assert_eq!(h.s.held_bytes(), b"226 Done\r\n200 NOOP ok\r\n".len());
    h.delivered(1, Ok(()));
    assert_eq!(
        h.acts(),
        vec![to_client("226 Done"), to_client("200 NOOP ok")]
    );
    assert!(!h.s.holding());
}

#[test]
fn a_relay_that_failed_to_deliver_turns_the_held_226_into_426() {
    let mut h = downloading();
    h.server("226-Statistics");
    h.server(" 1000 bytes");
    h.server("226 Done");
    h.acts();
    h.delivered(1, Err("stalled"));
    let all = h.drain();
    assert_eq!(
        failed_event(&all),
        Some(("stalled".into(), "226 Done".into()))
    );
    assert_eq!(h.acts(), vec![]);
    let sent: Vec<&Action> = all
        .iter()
        .filter(|a| matches!(a, Action::ToClient(_)))
        .collect();
    assert_eq!(sent, vec![&to_client(ABORTED)], "one final reply, no 226");
}

#[test]
fn a_reply_that_comes_after_its_failed_relay_is_426() {
    let mut h = downloading();
    h.ended(1, Err("no connection in time"));
    h.server("226 Done");
    assert_eq!(h.acts(), vec![to_client(ABORTED)]);
    // After a relay that ended well it passes.
    let mut h = downloading();
    h.delivered(1, Ok(()));
    h.ended(1, Ok(()));
    h.server("226 Done");
    assert_eq!(h.acts(), vec![to_client("226 Done")]);
}

#[test]
fn a_reply_held_when_the_server_closes_goes_before_the_421() {
    let mut h = downloading();
    h.server("226 Done");
    h.s.end(CloseReason::ServerClosed);
    assert_eq!(h.acts(), vec![Action::Close]);
    assert!(h.s.holding(), "the session waits for the data");
    h.delivered(1, Ok(()));
    assert_eq!(
        h.acts(),
        vec![
            to_client("226 Done"),
            to_client("421 The server closed the control connection.")
        ]
    );
    assert!(!h.s.holding());
}

#[test]
fn an_evicted_session_gets_what_it_was_owed_as_it_stands() {
    let mut h = downloading();
    h.server("226 Done");
    h.s.end(CloseReason::Evicted);
    assert_eq!(
        h.acts(),
        vec![
            to_client("226 Done"),
            Action::ToClient(Refusal::Evicted.reply()),
            Action::Close
        ]
    );
}

#[test]
fn at_the_end_of_the_grace_every_channel_is_reset_and_the_transfer_fails() {
    let mut h = downloading();
    h.server("226 Done");
    h.s.end(CloseReason::GraceOver);
    assert_eq!(
        h.acts(),
        vec![
            reset(1, Cancel::Shutdown),
            to_client(ABORTED),
            to_client("421 The gateway is shutting down."),
            Action::Close
        ]
    );
}

#[test]
fn a_new_channel_supersedes_the_running_one() {
    // A channel set up for no transfer yet is released by the next request.
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.pasv_prepared();
    h.client("PASV");
    assert_eq!(
        h.acts(),
        vec![reset(1, Cancel::Released), to_server("PASV")]
    );
    // Of the channels still delivering transfers the server reported
    // complete, only the newest is left to finish when another starts.
    let mut h = downloading();
    h.server("226 Done");
    for id in [2, 3] {
        h.client("PASV");
        h.server(format!("227 (198,51,100,10,4,{id})"));
        h.prepared(id, Side::Server, "198.51.100.1:5002");
        h.prepared(id, Side::Client, "100.64.0.1:5003");
        if id == 2 {
            h.client("RETR g");
            h.server("150 Opening");
            h.server("226 Done");
        }
    }
    let acts = h.acts();
    let at = |a: &Action| acts.iter().position(|b| b == a);
    let started = at(&start(3, ClientMode::Pasv, ServerMode::Passive));
    assert!(at(&reset(1, Cancel::Superseded)) < started, "{acts:?}");
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, Action::Reset { id: DataId(2), .. })),
        "{acts:?}"
    );
    // The first transfer's 226 waited for data that never arrived; the
    // second's goes once delivered.
    assert!(acts.contains(&to_client(ABORTED)), "{acts:?}");
    h.delivered(2, Ok(()));
    assert_eq!(h.acts().first(), Some(&to_client("226 Done")));
}

#[test]
fn a_delivered_channel_is_retired_when_the_next_starts_or_after_its_linger() {
    // Delivered and answered: retired as complete when the next starts.
    let mut h = downloading();
    h.delivered(1, Ok(()));
    h.server("226 Done");
    h.client("PASV");
    h.server("227 (198,51,100,10,4,2)");
    h.prepared(2, Side::Server, "198.51.100.1:5002");
    h.prepared(2, Side::Client, "100.64.0.1:5003");
    let acts = h.acts();
    let retire = Action::Retire {
        id: DataId(1),
        why: Retire::Superseded,
    };
    let at = |a: &Action| acts.iter().position(|b| b == a);
    assert!(
        at(&retire) < at(&start(2, ClientMode::Pasv, ServerMode::Passive)),
        "{acts:?}"
    );
    // With no successor, its linger retires it.
    let mut h = downloading();
    h.delivered(1, Ok(()));
    h.server("226 Done");
    h.acts();
    h.later(Duration::from_secs(3) - Duration::from_millis(1));
    assert_eq!(h.acts(), vec![]);
    h.later(Duration::from_millis(1));
    assert_eq!(
        h.acts(),
        vec![Action::Retire {
            id: DataId(1),
            why: Retire::Lingered
        }]
    );
}

#[test]
fn a_channel_still_delivering_a_complete_transfer_is_left_to_finish() {
    // The client sends its next data command before it has read the last
    // file: the server said the transfer is complete, so it is not cut.
    let mut h = downloading();
    h.server("226 Done");
    h.client("PASV");
    h.server("227 (198,51,100,10,4,2)");
    h.prepared(2, Side::Server, "198.51.100.1:5002");
    h.prepared(2, Side::Client, "100.64.0.1:5003");
    let acts = h.acts();
    assert!(
        !acts.iter().any(
            |a| matches!(a, Action::Reset { id, .. } | Action::Retire { id, .. } if *id == DataId(1))
        ),
        "{acts:?}"
    );
    assert!(h.s.holding(), "its 226 still waits");
    h.delivered(1, Ok(()));
    let acts = h.acts();
    assert_eq!(acts.first(), Some(&to_client("226 Done")), "{acts:?}");
}

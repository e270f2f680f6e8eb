//! The session's own deadlines, timed by a clock the test moves: the login
//! deadline, the control idle timeout (never while a transfer runs) and
//! the rules' newer values after a reload.

use super::*;
use crate::ftp::refusal::Refusal;
use std::time::Duration;

const LOGIN: Duration = Duration::from_secs(30);
const IDLE: Duration = Duration::from_secs(10);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn session() -> Rig {
    let mut cfg = config();
    cfg.timeouts = Timeouts {
        login: LOGIN,
        control_idle: IDLE,
    };
    Rig::with(cfg, allow_all(ServerDataMode::Passive))
}

fn logged_in() -> Rig {
    let mut h = session();
    h.client("USER u");
    h.server("331 Password");
    h.client("PASS p");
    h.server("230 Welcome");
    assert!(h.s.logged_in());
    h.acts();
    h
}

fn idle_close() -> Vec<Action> {
    vec![
        to_client("421 Idle timeout; closing control connection."),
        Action::Close,
    ]
}

fn login_close() -> Vec<Action> {
    vec![
        Action::ToClient(Refusal::LoginTimeout.reply()),
        Action::Close,
    ]
}

#[test]
fn a_session_that_does_not_log_in_in_time_is_closed() {
    let mut h = session();
    assert_eq!(h.s.poll_timeout(), Some(Time::ZERO + IDLE));
    // Talking without logging in does not move the login deadline.
    for _ in 0..29 {
        h.later(secs(1));
        h.client("NOOP");
        h.server("200 ok");
    }
    h.acts();
    h.later(secs(1) - Duration::from_millis(1));
    assert_eq!(h.acts(), vec![]);
    h.later(Duration::from_millis(1));
    let all = h.drain();
    assert!(all.contains(&Action::Event(Event::LoginTimeout)), "{all:?}");
    let acts: Vec<Action> = all
        .into_iter()
        .filter(|a| !matches!(a, Action::Event(_)))
        .collect();
    assert_eq!(acts, login_close());
    assert_eq!(h.s.phase(), &Phase::Closed);
    assert_eq!(h.s.poll_timeout(), None, "nothing more is timed");
}

#[test]
fn a_logged_in_session_has_no_login_deadline() {
    let mut h = logged_in();
    for _ in 0..10 {
        h.later(secs(5));
        h.client("NOOP");
        h.server("200 ok");
    }
    assert_eq!(h.acts().len(), 20, "every NOOP forwarded and answered");
    assert_eq!(h.s.phase(), &Phase::Open);
}

#[test]
fn tls_passed_through_ends_the_deadlines_of_the_dialogue() {
    let mut h = Rig::new(AllowAll {
        server_mode: ServerDataMode::Passive,
        tls: TlsPolicy::Passthrough,
    });
    h.client("AUTH TLS");
    h.server("234 Proceed");
    h.acts();
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn a_silent_session_is_closed_at_the_idle_timeout() {
    let mut h = logged_in();
    h.later(IDLE - secs(1));
    assert_eq!(h.acts(), vec![]);
    // Anything the driver hears starts the timeout again.
    h.client("NOOP");
    h.acts();
    h.later(IDLE - secs(1));
    assert_eq!(h.acts(), vec![]);
    h.later(secs(1));
    let all = h.drain();
    assert!(all.contains(&Action::Event(Event::IdleTimeout)), "{all:?}");
    assert_eq!(h.acts(), vec![]);
    let acts: Vec<Action> = all
        .into_iter()
        .filter(|a| !matches!(a, Action::Event(_)))
        .collect();
    assert_eq!(acts, idle_close());
}

#[test]
fn the_idle_timeout_waits_for_a_running_transfer() {
    let mut h = logged_in();
    h.pasv_prepared();
    h.client("RETR f");
    h.server("150 Opening");
    h.acts();
    // A transfer slower than the idle timeout: the control connection is
    // silent throughout.
    for _ in 0..5 {
        h.later(IDLE);
        assert_eq!(h.acts(), vec![]);
    }
    h.delivered(1, Ok(()));
    h.server("226 Done");
    h.ended(1, Ok(()));
    assert_eq!(h.acts(), vec![to_client("226 Done")]);
    h.later(IDLE);
    assert_eq!(h.acts(), idle_close());
}

#[test]
fn the_idle_timeout_resets_a_channel_still_in_preparation() {
    let mut h = logged_in();
    h.client("PASV");
    h.server("227 (198,51,100,10,4,1)");
    h.acts();
    h.later(IDLE);
    let mut expected = vec![reset(1, Cancel::IdleTimeout)];
    expected.extend(idle_close());
    assert_eq!(h.acts(), expected);
}

#[test]
fn newer_timeouts_apply_to_the_deadlines_running() {
    let mut h = session();
    h.later(secs(2));
    h.s.set_timeouts(Timeouts {
        login: secs(3),
        control_idle: IDLE,
    });
    assert_eq!(h.s.poll_timeout(), Some(Time::ZERO + secs(3)));
    h.later(secs(1));
    assert_eq!(h.acts(), login_close());
}

#[test]
fn the_session_ends_for_the_driver_with_its_421() {
    let mut h = logged_in();
    h.s.end(CloseReason::Shutdown);
    assert_eq!(
        h.acts(),
        vec![
            to_client("421 The gateway is shutting down."),
            Action::Close
        ]
    );
    h.s.end(CloseReason::ServerClosed);
    assert_eq!(h.acts(), vec![], "closed already: no second 421");
}

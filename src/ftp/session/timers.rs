//! The session's deadlines: the login deadline, the control idle timeout
//! and the deadlines of replies to transfers whose data was cut. The
//! engine reads no clock: the driver says what time it is whenever it
//! hands the session something ([`Session::heard`]) and when the earliest
//! deadline passes ([`Session::handle_timeout`]), after quinn-proto's
//! `poll_timeout`/`handle_timeout`.
//!
//! [`Session::heard`]: super::Session::heard
//! [`Session::handle_timeout`]: super::Session::handle_timeout

use super::action::DataId;
use std::collections::BTreeMap;
use std::ops::Add;
use std::time::Duration;

/// A point in a session's life: the time since it started, as its driver
/// measures it. The driver turns its clock's readings into these and the
/// deadlines the engine names back into its clock's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(Duration);

impl Time {
    /// The session's start.
    pub const ZERO: Time = Time(Duration::ZERO);

    /// `elapsed` after the session's start.
    pub fn from_start(elapsed: Duration) -> Time {
        Time(elapsed)
    }

    /// How long after the session's start.
    pub fn since_start(self) -> Duration {
        self.0
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d))
    }
}

/// The timeouts the rules set for a session; the driver passes them on
/// again after a reload, and the engine applies them to the deadlines
/// running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The session must log in this long after it started
    /// (`limits.login_timeout`).
    pub login: Duration,
    /// Neither peer may stay silent this long while no transfer runs
    /// (`limits.control_idle_timeout`).
    pub control_idle: Duration,
}

impl Default for Timeouts {
    /// The rules' defaults.
    fn default() -> Timeouts {
        Timeouts {
            login: Duration::from_secs(30),
            control_idle: Duration::from_secs(900),
        }
    }
}

/// Which deadlines passed at one call of `handle_timeout`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Fired {
    pub(super) login: bool,
    pub(super) idle: bool,
    /// Channels whose cut transfer the server has not answered in time.
    pub(super) replies: Vec<DataId>,
}

/// The deadlines.
#[derive(Debug)]
pub(super) struct Timers {
    timeouts: Timeouts,
    /// The driver's last report of the time.
    now: Time,
    /// When the driver last handed the session something: the idle
    /// timeout counts from here, once the driver listens at all (a session
    /// whose server is still being connected is not idle).
    heard: Option<Time>,
    /// The login deadline no longer applies (logged in, or the login can
    /// no longer be seen, as after AUTH TLS passes through).
    login_met: bool,
    /// Reply deadlines, by channel.
    replies: BTreeMap<DataId, Time>,
}

impl Timers {
    pub(super) fn new(timeouts: Timeouts) -> Timers {
        Timers {
            timeouts,
            now: Time::ZERO,
            heard: None,
            login_met: false,
            replies: BTreeMap::new(),
        }
    }

    pub(super) fn set(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
    }

    /// The time as the driver last said it.
    pub(super) fn now(&self) -> Time {
        self.now
    }

    /// The driver handed the session something at `now`: the idle timeout
    /// starts again.
    pub(super) fn heard(&mut self, now: Time) {
        self.now = self.now.max(now);
        self.heard = Some(self.now);
    }

    pub(super) fn login_met(&mut self) {
        self.login_met = true;
    }

    /// The server must answer the transfer on channel `id` within `after`
    /// from now; an earlier deadline for it stays.
    pub(super) fn reply_within(&mut self, id: DataId, after: Duration) {
        let at = self.now + after;
        self.replies
            .entry(id)
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }

    /// The session is over (closed, or copying TLS blindly): no deadline
    /// of the dialogue applies.
    pub(super) fn stop(&mut self) {
        self.login_met = true;
        self.replies.clear();
    }

    fn login_at(&self) -> Option<Time> {
        (!self.login_met).then(|| Time::ZERO + self.timeouts.login)
    }

    fn idle_at(&self) -> Option<Time> {
        Some(self.heard? + self.timeouts.control_idle)
    }

    /// The earliest deadline; the idle timeout only while `idle` applies.
    pub(super) fn next(&self, idle: bool) -> Option<Time> {
        let replies = self.replies.values().min().copied();
        let idle = self.idle_at().filter(|_| idle);
        [self.login_at(), idle, replies].into_iter().flatten().min()
    }

    /// Takes the deadlines passed at `now`; the idle timeout only while
    /// `idle` applies.
    pub(super) fn expire(&mut self, now: Time, idle: bool) -> Fired {
        self.now = self.now.max(now);
        let now = self.now;
        let login = self.login_at().is_some_and(|t| t <= now);
        if login {
            self.login_met = true;
        }
        let replies: Vec<DataId> = self
            .replies
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &replies {
            self.replies.remove(id);
        }
        Fired {
            login,
            idle: idle && self.idle_at().is_some_and(|t| t <= now),
            replies,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Time {
        Time::from_start(Duration::from_millis(ms))
    }

    fn timers(login: u64, idle: u64) -> Timers {
        Timers::new(Timeouts {
            login: Duration::from_millis(login),
            control_idle: Duration::from_millis(idle),
        })
    }

    #[test]
    fn nothing_is_idle_before_the_driver_listens() {
        let mut t = timers(60_000, 1_000);
        assert_eq!(t.next(true), Some(at(60_000)));
        assert!(!t.expire(at(5_000), true).idle);
        t.heard(at(5_000));
        assert_eq!(t.next(true), Some(at(6_000)));
    }

    #[test]
    fn the_login_deadline_counts_from_the_start_whatever_is_heard() {
        let mut t = timers(500, 10_000);
        t.heard(Time::ZERO);
        assert_eq!(t.next(true), Some(at(500)));
        t.heard(at(400));
        assert_eq!(t.next(true), Some(at(500)), "talking does not move it");
        assert_eq!(t.expire(at(499), true), Fired::default());
        let fired = t.expire(at(500), true);
        assert!(fired.login && !fired.idle);
        assert_eq!(t.expire(at(600), true), Fired::default(), "fires once");
        assert_eq!(t.next(true), Some(at(10_400)));
    }

    #[test]
    fn a_login_ends_the_login_deadline() {
        let mut t = timers(500, 10_000);
        t.heard(Time::ZERO);
        t.login_met();
        assert_eq!(t.next(true), Some(at(10_000)));
        assert!(!t.expire(at(600), true).login);
    }

    #[test]
    fn the_idle_timeout_counts_from_the_last_thing_heard() {
        let mut t = timers(60_000, 1_000);
        t.login_met();
        t.heard(at(700));
        assert_eq!(t.next(true), Some(at(1_700)));
        assert_eq!(t.next(false), None, "not while it does not apply");
        assert!(!t.expire(at(1_699), true).idle);
        assert!(t.expire(at(1_700), true).idle);
        assert!(!t.expire(at(1_700), false).idle);
    }

    #[test]
    fn a_reload_applies_to_the_deadlines_running() {
        let mut t = timers(30_000, 900_000);
        t.heard(Time::ZERO);
        t.set(Timeouts {
            login: Duration::from_millis(500),
            control_idle: Duration::from_millis(800),
        });
        assert_eq!(t.next(true), Some(at(500)));
        t.login_met();
        assert_eq!(t.next(true), Some(at(800)));
    }

    #[test]
    fn a_reply_deadline_keeps_its_earliest_time_and_fires_once() {
        let mut t = timers(60_000, 60_000);
        t.login_met();
        t.heard(at(100));
        t.reply_within(DataId(3), Duration::from_millis(2_000));
        t.heard(at(900));
        t.reply_within(DataId(3), Duration::from_millis(2_000));
        assert_eq!(t.next(true), Some(at(2_100)));
        assert_eq!(t.expire(at(2_099), true).replies, vec![]);
        assert_eq!(t.expire(at(2_100), true).replies, vec![DataId(3)]);
        assert_eq!(t.expire(at(5_000), true).replies, vec![]);
    }

    #[test]
    fn a_stopped_session_has_no_dialogue_deadlines() {
        let mut t = timers(500, 60_000);
        t.reply_within(DataId(1), Duration::from_millis(100));
        t.stop();
        assert_eq!(t.next(false), None);
        assert_eq!(t.expire(at(100_000), false), Fired::default());
    }

    #[test]
    fn the_clock_never_runs_back() {
        let mut t = timers(60_000, 1_000);
        t.login_met();
        t.heard(at(5_000));
        t.heard(at(4_000));
        assert_eq!(t.now(), at(5_000));
        assert_eq!(t.next(true), Some(at(6_000)));
    }
}

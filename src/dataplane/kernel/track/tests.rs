//! The bookkeeping of pinholes and connections, step by step, without a
//! kernel.

use super::*;
use crate::dataplane::{GatewayAddr, PeerIp, ServerAddr, SourceNat};

const DIALER: &str = "100.64.0.2:33000";
const GW: &str = "100.64.0.1:40000";

fn flow(timeout: Duration) -> PinholeFlow {
    PinholeFlow::passive(
        PeerIp::new("100.64.0.2".parse().unwrap()),
        GatewayAddr::new(GW.parse().unwrap()),
        ServerAddr::new("198.51.100.2:5000".parse().unwrap()),
        Some(SourceNat::new("198.51.100.1".parse().unwrap())),
        timeout,
    )
}

fn entry(src: &str, state: TcpState, bytes: Option<u64>) -> Entry {
    Entry {
        src: src.parse().unwrap(),
        dst: GW.parse().unwrap(),
        state,
        counted: bytes.is_some(),
        mark: 0x4654_0000,
        counts: ByteCounts {
            from_dialer: 100,
            to_dialer: bytes.unwrap_or(0),
            packets_from_dialer: 1,
            packets_to_dialer: 2,
        },
    }
}

fn table(idle: Option<Duration>) -> (Flows, PinholeId, Instant) {
    let mut f = Flows::default();
    let id = PinholeId(1);
    let fl = flow(Duration::from_secs(5));
    let t = Instant::now();
    let terms = Terms {
        idle,
        ..Terms::default()
    };
    f.insert(id, fl, Elements::of(&fl), t, terms);
    (f, id, t)
}

#[test]
fn the_first_connection_is_learned_and_any_other_is_a_stray() {
    let (mut f, id, _) = table(None);
    let e = entry(DIALER, TcpState::Other, None);
    assert_eq!(f.arrive(&e), Arrival::Learned(id));
    assert_eq!(f.arrive(&e), Arrival::Known);
    // The same peer from another port: the pinhole is spent.
    assert_eq!(
        f.arrive(&entry("100.64.0.2:33001", TcpState::Other, None)),
        Arrival::Stray
    );
    // Another host: not the expected peer.
    assert_eq!(
        f.arrive(&entry("100.64.0.3:33000", TcpState::Other, None)),
        Arrival::Stray
    );
    assert!(f
        .expired(Instant::now() + Duration::from_secs(60))
        .is_empty());
}

#[test]
fn established_then_closed_finishes_with_the_last_counts() {
    let (mut f, id, t) = table(None);
    f.arrive(&entry(DIALER, TcpState::Other, None));
    let s = f.update(id, &entry(DIALER, TcpState::Established, None), t);
    assert_eq!(
        s.events,
        vec![FlowEvent::Established {
            dialer: DIALER.parse().unwrap()
        }]
    );
    let later = t + Duration::from_secs(1);
    let s = f.update(id, &entry(DIALER, TcpState::Closed, Some(500)), later);
    assert!(s.closed && s.events.is_empty());
    assert!(matches!(
        f.finish(id),
        Some(FlowEvent::Finished { counts, duration }) if counts.to_dialer == 500 && duration == Duration::from_secs(1)
    ));
    let l = f.remove(id).unwrap();
    assert_eq!(l.dialer, Some(DIALER.parse().unwrap()));
    assert!(f.is_empty() && f.holder_of(GW.parse().unwrap()).is_none());
}

#[test]
fn a_refused_connection_fails_and_an_unused_pinhole_expires() {
    let (mut f, id, t) = table(None);
    f.arrive(&entry(DIALER, TcpState::Other, None));
    let s = f.update(id, &entry(DIALER, TcpState::Reset, Some(0)), t);
    assert!(s.closed);
    assert_eq!(
        f.finish(id),
        Some(FlowEvent::Failed(FailReason::NotEstablished))
    );

    let (f, id, t) = table(None);
    assert!(f.expired(t).is_empty());
    assert_eq!(f.expired(t + Duration::from_secs(5)), vec![id]);
}

#[test]
fn an_idle_transfer_is_due_for_a_cut_and_a_moving_one_is_not() {
    let idle = Duration::from_secs(4);
    let (mut f, id, t) = table(Some(idle));
    f.arrive(&entry(DIALER, TcpState::Other, None));
    f.update(id, &entry(DIALER, TcpState::Established, Some(10)), t);
    assert!(f.due_checks(t, 10).is_empty());
    let t1 = t + Duration::from_secs(1);
    assert_eq!(f.due_checks(t1, 10), vec![id]);
    // Bytes moved: not idle, checked again later.
    f.update(id, &entry(DIALER, TcpState::Established, Some(20)), t1);
    assert!(!f.checked(id, t1));
    let t5 = t1 + idle;
    assert_eq!(f.due_checks(t5, 10), vec![id]);
    // Nothing moved for the whole bound: cut.
    f.update(id, &entry(DIALER, TcpState::Established, Some(20)), t5);
    assert!(f.checked(id, t5));
}

#[test]
fn a_withdrawn_pinhole_frees_its_address_but_its_connection_is_followed() {
    let (mut f, id, t) = table(None);
    f.arrive(&entry(DIALER, TcpState::Other, None));
    assert!(f.withdraw(id).is_some());
    assert!(f.withdraw(id).is_none(), "elements go once");
    assert_eq!(f.holder_of(GW.parse().unwrap()), None);
    let e = entry(DIALER, TcpState::Established, None);
    assert_eq!(f.of_conn(&e), Some(id));
    assert_eq!(f.update(id, &e, t).events.len(), 1);
}

#[test]
fn a_sessions_pinholes_are_indexed_until_let_go_or_forgotten() {
    let mut f = Flows::default();
    let t = Instant::now();
    let held = |session, channel| Terms {
        owner: Some(Owner { session, channel }),
        ..Terms::default()
    };
    for (n, (session, channel)) in [(1, 1), (1, 2), (2, 1), (1, 3)].into_iter().enumerate() {
        let fl = PinholeFlow::relay(
            PeerIp::new("100.64.0.2".parse().unwrap()),
            GatewayAddr::new(SocketAddr::new(
                "100.64.0.1".parse().unwrap(),
                40000 + n as u16,
            )),
            Duration::from_secs(5),
        );
        f.insert(
            PinholeId(n as u64),
            fl,
            Elements::of(&fl),
            t,
            held(session, channel),
        );
    }
    assert_eq!(
        f.of_session(1),
        vec![PinholeId(0), PinholeId(1), PinholeId(3)]
    );
    f.detach(PinholeId(0));
    f.remove(PinholeId(3));
    assert_eq!(f.of_session(1), vec![PinholeId(1)]);
    assert_eq!(f.of_session(2), vec![PinholeId(2)]);
    f.remove(PinholeId(1));
    assert!(f.of_session(1).is_empty());
    assert_eq!(f.clear().len(), 2);
    assert!(f.of_session(2).is_empty(), "cleared with the table");
}

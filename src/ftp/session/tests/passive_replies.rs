//! The server's passive replies as real servers send them: the address
//! replaced, multi-line, and forms the codec cannot read.

use super::*;

#[test]
fn passive_reply_address_is_replaced_by_the_control_address() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.client("PASV");
    h.acts();
    h.server("227 Entering Passive Mode (10,0,0,5,4,1)");
    let all = h.drain();
    assert!(all.contains(&Action::Event(Event::PassiveAddressIgnored {
        advertised: "10.0.0.5".parse().unwrap(),
        used: "198.51.100.10".parse().unwrap()
    })));
    assert!(all.contains(&prepare(
        1,
        Side::Server,
        Endpoint::Connect {
            to: sa("198.51.100.10:1025"),
            within: ConnectDeadline::Connect,
        }
    )));
}

#[test]
fn multi_line_227_is_understood() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.client("PASV");
    h.acts();
    h.server("227-Entering Passive Mode");
    assert_eq!(h.acts(), vec![]);
    h.server("227-(198,51,100,10,4,2)");
    h.server("227 OK");
    assert_eq!(
        h.acts(),
        vec![prepare(
            1,
            Side::Server,
            Endpoint::Connect {
                to: sa("198.51.100.10:1026"),
                within: ConnectDeadline::Connect,
            }
        )]
    );
}

#[test]
fn unparsable_227_fails_the_setup_with_a_reply_not_a_panic() {
    let mut h = Rig::new(allow_all(ServerDataMode::Passive));
    h.client("PASV");
    h.acts();
    h.server("227 Entering Passive Mode, somewhere");
    let all = h.drain();
    assert!(all
        .iter()
        .any(|a| matches!(a, Action::Event(Event::Unparsed { .. }))));
    assert!(all
        .iter()
        .any(|a| matches!(a, Action::ToClient(b) if b.starts_with(b"425 "))));
    assert!(!h.s.busy());
}

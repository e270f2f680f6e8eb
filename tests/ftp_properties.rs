//! Property tests of the sans-IO core: codecs round-trip, the framer never
//! panics or buffers past its cap, and the session engine keeps its
//! invariants under any interleaving of client lines, server lines and
//! driver outcomes (see `session_model`).

mod session_model;

use ftpalg::ftp::codec::*;
use ftpalg::ftp::framer::{encode_line, Frame, LineFramer};
use ftpalg::ftp::session::{AllowAll, ServerDataMode, Session, SessionConfig, TlsPolicy, Upstream};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

fn v4() -> impl Strategy<Value = SocketAddrV4> {
    (any::<[u8; 4]>(), 1u16..).prop_map(|(o, p)| SocketAddrV4::new(Ipv4Addr::from(o), p))
}

fn any_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        v4().prop_map(SocketAddr::V4),
        (any::<[u8; 16]>(), 1u16..)
            .prop_map(|(o, p)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), p)),
    ]
}

proptest! {
    #[test]
    fn port_round_trips(a in v4()) {
        prop_assert_eq!(parse_port(encode_port(a).as_bytes()), Ok(a));
    }

    #[test]
    fn reply_227_round_trips(a in v4(), prefix in "[A-Za-z =(]{0,30}", suffix in "[).]{0,3}") {
        let text = format!("{prefix}{}{suffix}", encode_port(a));
        let found = find_227(text.as_bytes());
        // A prefix that ends in a digit-free text never changes the tuple found.
        prop_assert_eq!(found.map(|f| f.addr), Ok(a));
    }

    #[test]
    fn eprt_round_trips(a in any_addr()) {
        let parsed = parse_eprt(encode_eprt(a).as_bytes()).unwrap();
        prop_assert_eq!(parsed, a);
    }

    #[test]
    fn eprt_any_delimiter(a in any_addr(), d in prop::sample::select(b"!#$%&'*+-/;<=>?@^_`|~".to_vec())) {
        let text = encode_eprt(a).replace('|', &char::from(d).to_string());
        prop_assert_eq!(parse_eprt(text.as_bytes()), Ok(a));
    }

    #[test]
    fn reply_229_round_trips(p in 1u16..) {
        prop_assert_eq!(find_229(encode_229(p).as_bytes()).map(|e| e.port), Ok(p));
    }

    #[test]
    fn lprt_round_trips(a in any_addr()) {
        prop_assert_eq!(parse_lprt(encode_lprt(a).as_bytes()), Ok(a));
        let reply = format!("Entering Long Passive Mode ({})", encode_lprt(a));
        prop_assert_eq!(find_228(reply.as_bytes()), Ok(a));
    }

    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_port(&bytes);
        let _ = parse_eprt(&bytes);
        let _ = parse_lprt(&bytes);
        let _ = find_227(&bytes);
        let _ = find_228(&bytes);
        let _ = find_229(&bytes);
    }

    #[test]
    fn octets_over_255_are_rejected(a in v4(), idx in 0usize..6, big in 256u32..1000) {
        let mut fields: Vec<String> = encode_port(a).split(',').map(String::from).collect();
        fields[idx] = big.to_string();
        let text = fields.join(",");
        prop_assert!(parse_port(text.as_bytes()).is_err());
        prop_assert!(find_227(text.as_bytes()).is_err());
    }

    #[test]
    fn framer_never_buffers_past_cap(
        data in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(255u8), any::<u8>()], 0..4000),
        cuts in prop::collection::vec(0usize..4000, 0..20),
        cap in 4usize..300,
    ) {
        let mut framer = LineFramer::new(cap);
        let mut out = Vec::new();
        let mut cuts = cuts;
        cuts.push(data.len());
        cuts.sort_unstable();
        let mut at = 0;
        for c in cuts {
            let c = c.min(data.len());
            if c < at { continue; }
            framer.push(&data[at..c], &mut out);
            prop_assert!(framer.buffered() < cap);
            at = c;
        }
        for f in &out {
            match f {
                Frame::Line(l) => prop_assert!(l.raw.len() < cap),
                Frame::TooLong { prefix } => prop_assert!(prefix.len() < cap),
            }
        }
    }

    #[test]
    fn framer_split_points_do_not_matter(
        lines in prop::collection::vec("[ -~]{0,40}", 0..10),
        cut in 0usize..500,
    ) {
        let stream: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect();
        let cut = cut.min(stream.len());
        let run = |parts: &[&[u8]]| {
            let mut f = LineFramer::new(64);
            let mut out = Vec::new();
            for p in parts { f.push(p, &mut out); }
            out
        };
        let whole = run(&[&stream]);
        let split = run(&[&stream[..cut], &stream[cut..]]);
        prop_assert_eq!(&whole, &split);
        let got: Vec<Vec<u8>> = whole.into_iter().map(|f| match f { Frame::Line(l) => l.raw, Frame::TooLong { prefix } => prefix }).collect();
        let want: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn session_survives_arbitrary_lines(
        client in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 0..20),
        server in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 0..20),
    ) {
        let cfg = SessionConfig::new("100.64.0.2:40000".parse().unwrap(), Upstream::Fixed("198.51.100.10:21".parse().unwrap()));
        let policy = AllowAll { server_mode: ServerDataMode::Auto, tls: TlsPolicy::Refuse };
        let mut s = Session::new(cfg);
        let mut f = LineFramer::new(128);
        let mut frames = Vec::new();
        for (c, sv) in client.iter().zip(server.iter()) {
            frames.clear();
            f.push(c, &mut frames);
            f.push(b"\n", &mut frames);
            for fr in frames.drain(..) { s.on_client(fr, &policy); }
            s.on_server(Frame::Line(ftpalg::ftp::framer::Line::new(sv.clone())), &policy);
            while s.poll_action().is_some() {}
        }
    }

    #[test]
    fn checked_lines_re_encode_to_themselves(
        data in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(255u8), Just(244u8), Just(242u8), Just(251u8), any::<u8>()], 0..400),
    ) {
        let mut out = Vec::new();
        LineFramer::new(512).push(&data, &mut out);
        for f in out {
            let Frame::Line(l) = f else { continue };
            let Ok(c) = l.decode() else { continue };
            let wire = encode_line(&c.text, c.synch);
            let mut again = Vec::new();
            LineFramer::new(1024).push(&wire, &mut again);
            prop_assert_eq!(again.len(), 1);
            let Frame::Line(l2) = &again[0] else { panic!() };
            prop_assert_eq!(l2.decode(), Ok(c));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random scripts of client lines, server replies and driver outcomes
    /// (prepared, failed, late, duplicate, stale) against the invariants in
    /// `session_model`.
    #[test]
    fn session_keeps_its_invariants(script in prop::collection::vec(any::<u8>(), 0..600)) {
        session_model::run(&script);
    }

    /// The same with scripts biased towards the data-setup steps.
    #[test]
    fn session_keeps_its_invariants_in_data_setup(
        steps in prop::collection::vec((prop::sample::select(vec![0u8, 3, 6, 8, 9]), any::<[u8; 4]>()), 0..150),
        head in any::<[u8; 5]>(),
    ) {
        let mut script = head.to_vec();
        for (op, args) in steps {
            script.push(op);
            script.extend_from_slice(&args);
        }
        session_model::run(&script);
    }
}

/// Replays a script from MODEL_SCRIPT (comma-separated bytes) with tracing.
#[test]
#[ignore]
fn replay_model_script() {
    let s = std::env::var("MODEL_SCRIPT").unwrap_or_default();
    let bytes: Vec<u8> = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
    session_model::run(&bytes);
}

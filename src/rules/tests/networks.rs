//! Networks: the built-in `routable`, networks that name other networks,
//! and `except`.

use super::*;

fn listener_reach(servers: &str, networks: &str) -> Listener {
    let text = format!(
        "listeners:\n  - name: t\n    listen: 100.64.0.1:2100\n    kind: transparent\n    servers: {servers}\n{networks}"
    );
    let l = from_str(&text);
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    l.rules.unwrap().listeners.remove(0)
}

/// The first address past a network: outside the lab's ranges and every
/// other special one, computed rather than named.
fn after(cidr: &str) -> IpAddr {
    let net: ipnet::IpNet = cidr.parse().unwrap();
    match net.broadcast() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    }
}

#[test]
fn routable_servers_leave_out_the_lab_and_every_special_range() {
    let l = listener_reach("[routable]", "");
    for ip in [
        "198.51.100.10",
        "203.0.113.10",
        "100.64.0.2",
        "127.0.0.1",
        "2001:db8::10",
        "fd00::1",
    ] {
        assert!(!l.may_reach(ip.parse().unwrap()), "{ip}");
    }
    assert!(l.may_reach(after("100.64.0.0/10")));
    assert!(l.may_reach(after("2001:db8::/32")));
}

#[test]
fn a_network_may_name_others_and_take_networks_out() {
    let l = listener_reach(
        "[lab]",
        "networks:\n  lab: [routable, servers]\n  servers:\n    include: [198.51.100.0/24, 203.0.113.0/24]\n    except: [198.51.100.128/25, private]\n",
    );
    assert!(l.may_reach("198.51.100.10".parse().unwrap()));
    assert!(!l.may_reach("198.51.100.200".parse().unwrap()));
    assert!(l.may_reach("203.0.113.10".parse().unwrap()));
    assert!(l.may_reach(after("100.64.0.0/10")));
    assert!(!l.may_reach("100.64.0.2".parse().unwrap()));
}

#[test]
fn network_definitions_with_errors() {
    let e = |networks: &str| -> Vec<(u32, u32, String)> {
        from_str(&format!("{BASE}networks:\n{networks}"))
            .diagnostics
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| (d.line, d.column, d.message))
            .collect()
    };
    assert_eq!(
        e("  a: [b]\n  b: [c]\n  c: [a]\n"),
        vec![(9, 7, "network 'a' includes itself (a > b > c > a)".into())]
    );
    assert_eq!(
        e("  a: [198.51.100.0/24, elsewhere]\n"),
        vec![(
            7,
            24,
            "'elsewhere' is neither a network name nor a CIDR".into()
        )]
    );
    assert_eq!(
        e("  a:\n    include: [any]\n    except: [routable]\n"),
        vec![(
            9,
            14,
            "except: 'routable' has exceptions of its own, which cannot be taken out in turn"
                .into()
        )]
    );
    assert_eq!(
        e("  a:\n    include: []\n"),
        vec![(8, 5, "network 'a' is empty".into())]
    );
    let got = e("  a: { includ: [any] }\n  b: 7\n");
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].2.contains("unknown field `includ`"), "{got:?}");
    assert_eq!(
        got[1].2,
        "b: invalid value `7`, expected a list or a map of keys"
    );
    let got = e("  routable: [198.51.100.0/24]\n");
    assert_eq!(got[0].2, "network name 'routable' is built in");
}

#[test]
fn shadowing_knows_what_routable_leaves_out() {
    let rules = |second: &str| {
        diags(&format!(
            "rules:\n  - match: {{ server: routable }}\n    action: deny\n  - match: {{ server: {second} }}\n    action: deny\n"
        ))
    };
    assert_eq!(rules("198.51.100.0/24"), vec![]);
    let d = rules("routable");
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].3.contains("can never match"), "{d:?}");
}

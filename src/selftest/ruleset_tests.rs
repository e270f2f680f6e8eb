use super::*;
use serde_json::json;

/// The namespace lab's gateway as `nft -j list ruleset` printed it:
/// docs/nftables-transparent.nft and docs/nftables-fail-open.nft, the
/// lab's masquerade, forward and input chains that drop by default with
/// the accept line, ftpalg's own table, and docs/nftables-tproxy.nft.
const LAB: &str = include_str!("../../tests/selftest/nft-lab.json");

const MARK: u32 = 0x4654_0000;
const MASK: u32 = 0xffff_0000;

/// The lab's rule set with `edit` applied to its JSON items.
fn lab_with(edit: impl FnOnce(&mut Vec<Value>)) -> Ruleset {
    let mut v: Value = serde_json::from_str(LAB).unwrap();
    edit(v["nftables"].as_array_mut().unwrap());
    Ruleset::from_json(&v.to_string()).unwrap()
}

fn is_rule_in(item: &Value, table: &str, chain: &str) -> bool {
    item["rule"]["table"] == table && item["rule"]["chain"] == chain
}

#[test]
fn the_lab_redirects_port_21_for_both_families_and_tproxies_it_for_ipv4() {
    let r = Ruleset::from_json(LAB).unwrap();
    let d = r.diversions(21, 21);
    assert_eq!(
        d,
        vec![
            Diversion {
                at: "inet ftpalg prerouting".into(),
                families: Families::BOTH,
                how: Divert::Redirect(Some(2100)),
            },
            Diversion {
                at: "inet ftpalg_tproxy prerouting".into(),
                families: Families {
                    v4: true,
                    v6: false
                },
                how: Divert::Tproxy(Some("100.64.0.1".parse().unwrap()), Some(2100)),
            },
        ]
    );
    // The fail-open chain gives port 21 a helper, which diverts nothing.
    assert!(d.iter().all(|x| x.at != "inet ftpalg bypass"));
}

#[test]
fn the_client_ports_are_redirected_keeping_their_port() {
    let r = Ruleset::from_json(LAB).unwrap();
    let d = r.diversions(40000, 40999);
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d.iter().all(|x| x.how.keeps_port()), "{d:?}");
    // A range wider than the rule's is not covered.
    assert!(r.diversions(39999, 40999).is_empty());
    assert!(r.diversions(40000, 41000).is_empty());
}

#[test]
fn an_emptied_intercept_set_diverts_nothing() {
    // What the fail-open drop-in leaves while ftpalg is stopped.
    let r = lab_with(|items| {
        for i in items.iter_mut() {
            if i["set"]["name"] == "intercept" {
                i["set"].as_object_mut().unwrap().remove("elem");
            }
            if i.get("table").is_some_and(|t| t["name"] == "ftpalg_tproxy") {
                *i = json!({});
            }
        }
        items.retain(|i| !is_rule_in(i, "ftpalg_tproxy", "prerouting"));
    });
    assert!(r.diversions(21, 21).is_empty());
    assert_eq!(r.diversions(40000, 40999).len(), 1);
}

#[test]
fn a_family_narrows_a_rule() {
    let rules = |cond: Value| {
        json!({"nftables": [
            {"table": {"family": "inet", "name": "t"}},
            {"chain": {"family": "inet", "table": "t", "name": "p", "type": "nat", "hook": "prerouting", "policy": "accept"}},
            {"rule": {"family": "inet", "table": "t", "chain": "p", "expr": [
                cond,
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"set": [20, {"range": [21, 22]}]}}},
                {"redirect": {"port": 2100}}
            ]}}
        ]})
        .to_string()
    };
    let fam =
        |cond: Value| Ruleset::from_json(&rules(cond)).unwrap().diversions(21, 21)[0].families;
    let nfproto = |op: &str, v: &str| json!({"match": {"op": op, "left": {"meta": {"key": "nfproto"}}, "right": v}});
    let v4 = Families {
        v4: true,
        v6: false,
    };
    let v6 = Families {
        v4: false,
        v6: true,
    };
    assert_eq!(fam(nfproto("==", "ipv4")), v4);
    assert_eq!(fam(nfproto("!=", "ipv4")), v6);
    assert_eq!(fam(nfproto("==", "ipv6")), v6);
    let saddr = json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "2001:db8:1::2"}});
    assert_eq!(fam(saddr), v6);
    let iif = json!({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lan"}});
    assert_eq!(fam(iif), Families::BOTH);
    // A rule for another protocol, or one excluding the port, diverts
    // nothing of tcp/21.
    let udp = json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "udp"}});
    assert!(Ruleset::from_json(&rules(udp))
        .unwrap()
        .diversions(21, 21)
        .is_empty());
}

#[test]
fn the_lab_forward_and_input_chains_hold_the_accept_line() {
    let r = Ruleset::from_json(LAB).unwrap();
    for hook in ["forward", "input"] {
        assert!(
            r.drop_chains_without_accept(hook, MARK, MASK, "ftpalg_data")
                .is_empty(),
            "{hook}"
        );
    }
    // Another mark is not accepted.
    assert_eq!(
        r.drop_chains_without_accept("forward", 0x1234_0000, MASK, "ftpalg_data"),
        vec!["inet lab_forward forward".to_string()]
    );
    assert!(r.has_table("inet", "ftpalg_data"));
}

#[test]
fn a_drop_chain_without_the_accept_line_is_named() {
    let r = lab_with(|items| {
        items.retain(|i| {
            !(is_rule_in(i, "lab_forward", "forward")
                && i["rule"]["expr"][0]["match"]["left"]["ct"].is_object())
        })
    });
    assert_eq!(
        r.drop_chains_without_accept("forward", MARK, MASK, "ftpalg_data"),
        vec!["inet lab_forward forward".to_string()]
    );
    assert!(r
        .drop_chains_without_accept("input", MARK, MASK, "ftpalg_data")
        .is_empty());
}

#[test]
fn the_accept_line_in_any_form_and_behind_a_jump_counts() {
    let with = |rules: Vec<Value>| {
        let mut items = vec![
            json!({"table": {"family": "ip", "name": "f"}}),
            json!({"chain": {"family": "ip", "table": "f", "name": "fw", "type": "filter", "hook": "forward", "policy": "drop"}}),
            json!({"chain": {"family": "ip", "table": "f", "name": "ok"}}),
        ];
        items.extend(rules);
        Ruleset::from_json(&json!({ "nftables": items }).to_string())
            .unwrap()
            .drop_chains_without_accept("forward", MARK, MASK, "ftpalg_data")
            .is_empty()
    };
    let rule = |chain: &str, expr: Value| json!({"rule": {"family": "ip", "table": "f", "chain": chain, "expr": expr}});
    let masked = json!([
        {"match": {"op": "==", "left": {"&": [{"ct": {"key": "mark"}}, MASK]}, "right": MARK}},
        {"counter": {"packets": 0, "bytes": 0}},
        {"accept": null}
    ]);
    assert!(with(vec![rule("fw", masked.clone())]));
    assert!(with(vec![
        rule("fw", json!([{"jump": {"target": "ok"}}])),
        rule("ok", masked)
    ]));
    // Narrowed by an interface, it does not let every pinhole through.
    let narrowed = json!([
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lan"}},
        {"match": {"op": "==", "left": {"ct": {"key": "mark"}}, "right": {"prefix": {"addr": MARK, "len": 16}}}},
        {"accept": null}
    ]);
    assert!(!with(vec![rule("fw", narrowed)]));
    // The whole mark, unmasked, is another test.
    let whole = json!([
        {"match": {"op": "==", "left": {"ct": {"key": "mark"}}, "right": MARK}},
        {"accept": null}
    ]);
    assert!(!with(vec![rule("fw", whole)]));
    assert!(!with(vec![]));
}

#[test]
fn elements_cover_ranges_joined_end_to_end() {
    let e = [
        json!({"range": [40000, 40499]}),
        json!({"elem": {"val": {"range": [40500, 40999]}}}),
    ];
    assert!(elements_cover(&e, 40000, 40999));
    assert!(!elements_cover(&e[..1], 40000, 40999));
    assert!(elements_cover(&[json!(21)], 21, 21));
    assert!(!elements_cover(&[json!(22)], 21, 21));
}

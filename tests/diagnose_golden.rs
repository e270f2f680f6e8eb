//! `ftpalg diagnose` on captures recorded in the namespace lab
//! (tests/captures/record.sh): the findings each failure class must
//! produce, and the full text and JSON reports against golden files.
//! `UPDATE_GOLDEN=1 cargo test --test diagnose_golden` rewrites them.

mod diagnose_util;

use diagnose_util::{diagnose_files, kinds, leg_kinds, verdicts};

/// Compares with (or, on request, rewrites) a golden file.
fn golden(name: &str, actual: &str) {
    let path = format!("tests/captures/{name}");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{path} differs at line {}:\nexpected: {:?}\nactual:   {:?}",
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

/// Diagnoses both legs of a case, checks the golden outputs, returns the
/// report.
fn case(name: &str) -> ftpalg::diagnose::Report {
    let report = diagnose_files(&[
        &format!("{name}.inside.pcap"),
        &format!("{name}.outside.pcap"),
    ]);
    golden(&format!("{name}.txt"), &report.to_text());
    golden(&format!("{name}.json"), &report.to_json());
    report
}

#[test]
fn seed_case_passive_ports_closed() {
    let r = case("passive-21-only");
    // curl tries EPSV, then (a new session) PASV; each seen on both sides.
    assert_eq!(kinds(&r), vec![vec!["passive-data-blocked"]; 2]);
    assert_eq!(leg_kinds(&r), vec![vec!["passive-data-blocked"]; 2]);
    assert_eq!(verdicts(&r), ["failed"; 2]);
    let f = &r.sessions[0].findings[0];
    assert!(f.explanation.contains("no answer"), "{}", f.explanation);
    assert!(f.fix.contains("pasv_min_port"));
    // The NAT pairs the legs.
    let nat = r.sessions[0].nat.as_ref().unwrap();
    assert!(nat.client.starts_with("198.51.100.1:"), "{nat:?}");
}

#[test]
fn active_without_helper_not_translated() {
    let r = case("active-no-helper");
    let both = vec!["active-address-not-translated"; 2];
    assert_eq!(kinds(&r), vec![both.clone()]);
    assert_eq!(leg_kinds(&r), vec![both]);
    // Outside, the server sees the NAT's address but the command's.
    let nat = r.sessions[0].nat.as_ref().unwrap();
    let outside = &nat.leg;
    assert!(outside.client.starts_with("198.51.100.1:"));
    assert!(outside.findings[1].explanation.contains("100.64.0.2"));
    assert!(outside.findings[1].explanation.contains("500"));
    assert!(
        nat.changes.iter().any(|c| c.contains("unchanged")),
        "{nat:?}"
    );
}

#[test]
fn kernel_helper_translates_port() {
    let r = case("helper-active-ok");
    assert_eq!(kinds(&r), vec![vec!["transfer-ok"]]);
    assert_eq!(leg_kinds(&r), vec![vec!["transfer-ok"]]);
    assert_eq!(verdicts(&r), ["ok"]);
    let nat = r.sessions[0].nat.as_ref().unwrap();
    assert!(
        nat.changes
            .iter()
            .any(|c| c.contains("PORT 100,64,0,2,") && c.contains("PORT 198,51,100,1,")),
        "{nat:?}"
    );
    assert!(r.sessions[0].findings[0]
        .explanation
        .contains("16384 bytes"));
}

#[test]
fn helper_without_related_accept_blocks_active_data() {
    let r = case("helper-no-related");
    // Inside nothing arrives (the address is the client's own, the
    // server answers 425); outside the server's SYN is refused.
    assert_eq!(kinds(&r), vec![vec!["active-data-blocked"]]);
    assert_eq!(leg_kinds(&r), vec![vec!["active-data-blocked"]]);
    assert!(r.sessions[0].findings[0].explanation.contains("425"));
    assert_eq!(verdicts(&r), ["failed"]);
    let outside = &r.sessions[0].nat.as_ref().unwrap().leg;
    assert!(outside.findings[0].explanation.contains("198.51.100.1"));
}

#[test]
fn ftpalg_recovers_the_seed_case() {
    let r = case("ftpalg-ok");
    // One session: the client's side worked; ftpalg's side shows the
    // blocked passive port it got round.
    assert_eq!(kinds(&r), vec![vec!["transfer-ok"]]);
    assert_eq!(
        leg_kinds(&r),
        vec![vec!["passive-data-blocked", "transfer-ok"]]
    );
    assert_eq!(verdicts(&r), ["recovered"]);
    assert_eq!(r.sessions[0].nat.as_ref().unwrap().leg.verdict, "recovered");
    let nat = r.sessions[0].nat.as_ref().unwrap();
    assert!(
        nat.changes
            .iter()
            .any(|c| c.contains("229") && c.contains("227")),
        "{nat:?}"
    );
}

#[test]
fn server_advertising_another_address() {
    let r = case("pasv-private");
    let both = vec!["passive-address-unroutable", "transfer-ok"];
    assert_eq!(kinds(&r), vec![both.clone()]);
    assert_eq!(leg_kinds(&r), vec![both]);
    assert!(r.sessions[0].findings[0]
        .explanation
        .contains("100.64.0.99"));
}

#[test]
fn auth_tls_is_unreadable() {
    let r = case("auth-tls");
    assert_eq!(kinds(&r), vec![vec!["control-encrypted"]]);
    assert_eq!(leg_kinds(&r), vec![vec!["control-encrypted"]]);
    assert_eq!(verdicts(&r), ["unreadable"]);
    // Nothing after the 234 is taken for a command.
    assert!(r.sessions[0]
        .transcript
        .last()
        .unwrap()
        .text
        .starts_with("234"));
}

#[test]
fn epsv_refused_then_pasv() {
    let r = case("epsv-refused");
    let both = vec!["extended-mode-refused", "transfer-ok"];
    assert_eq!(kinds(&r), vec![both.clone()]);
    assert_eq!(leg_kinds(&r), vec![both]);
    assert_eq!(verdicts(&r), ["ok"]);
    assert!(r.sessions[0].findings[0]
        .explanation
        .contains("then sent PASV"));
}

#[test]
fn bounce_is_named() {
    let r = case("bounce");
    assert_eq!(kinds(&r), vec![vec!["bounce-attempt"]]);
    assert_eq!(leg_kinds(&r), vec![vec!["bounce-attempt"]]);
    assert!(r.sessions[0].findings[0]
        .explanation
        .contains("198.51.100.20"));
}

#[test]
fn nat_idle_timeout_during_transfer() {
    let r = case("idle-timeout");
    assert_eq!(r.sessions.len(), 1);
    let s = &r.sessions[0];
    for s in [s, &s.nat.as_ref().unwrap().leg] {
        assert_eq!(
            s.findings.iter().map(|f| f.kind.name()).collect::<Vec<_>>(),
            ["control-lost-during-transfer"]
        );
        assert!(
            s.findings[0].explanation.contains("262144 bytes"),
            "{}",
            s.findings[0].explanation
        );
    }
}

#[test]
fn cli_exit_status_and_json() {
    let bin = env!("CARGO_BIN_EXE_ftpalg");
    let out = std::process::Command::new(bin)
        .args([
            "diagnose",
            "--format",
            "json",
            "tests/captures/passive-21-only.inside.pcap",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["sessions"][0]["client"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some("100.64.0.2")
    );
    assert_eq!(v["sessions"][0]["server"], "198.51.100.10:21");
    assert_eq!(
        v["sessions"][0]["findings"][0]["kind"],
        "passive-data-blocked"
    );
    assert!(
        v["sessions"][0]["findings"][0]["packets"]
            .as_array()
            .unwrap()
            .len()
            >= 2
    );

    let ok = std::process::Command::new(bin)
        .args(["diagnose", "tests/captures/helper-active-ok.inside.pcap"])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("verdict: ok"));

    let bad = std::process::Command::new(bin)
        .args(["diagnose", "Cargo.toml"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a pcap or pcapng capture"));
}

#[test]
fn ipv6_without_nat() {
    let r = case("ipv6-21-only");
    let per_session = vec![vec!["passive-data-blocked"], vec!["transfer-ok"]];
    assert_eq!(kinds(&r), per_session);
    assert_eq!(leg_kinds(&r), per_session);
    assert_eq!(r.sessions[0].server, "[2001:db8:2::10]:21");
    // EPRT over IPv6, followed to the server's connection from port 20.
    let n = &r.sessions[1].negotiations[0];
    assert_eq!(n.command, "EPRT");
    assert_eq!(
        r.sessions[1].data[0].from.to_string(),
        "[2001:db8:2::10]:20"
    );
    assert!(r.sessions[0].nat.as_ref().unwrap().changes[0].contains("no address translation"));
}

#[test]
fn both_legs_in_one_gateway_capture() {
    // tcpdump -i any on the gateway (Linux cooked v2), ftpalg running.
    let report = diagnose_files(&["ftpalg-gateway.gateway.pcap"]);
    golden("ftpalg-gateway.txt", &report.to_text());
    golden("ftpalg-gateway.json", &report.to_json());
    assert_eq!(kinds(&report), vec![vec!["transfer-ok"]]);
    assert_eq!(
        leg_kinds(&report),
        vec![vec!["passive-data-blocked", "transfer-ok"]]
    );
    assert_eq!(verdicts(&report), ["recovered"]);
    let nat = report.sessions[0].nat.as_ref().unwrap();
    assert!(nat.client.starts_with("198.51.100.1:"), "{nat:?}");
    assert!(
        nat.changes
            .iter()
            // ftpalg relayed the client's passive connection over an
            // active one.
            .any(|c| c.contains("appears as 198.51.100.10:20 -> 198.51.100.1:")),
        "{nat:?}"
    );
}

/// Given both legs, each session is reported once: as many sessions as
/// one leg alone holds, each with the other leg in its `nat`, and the
/// text says `session N:` once per session.
#[test]
fn paired_captures_give_one_report_per_session() {
    for name in [
        "active-no-helper",
        "auth-tls",
        "bounce",
        "epsv-refused",
        "ftpalg-ok",
        "helper-active-ok",
        "helper-no-related",
        "idle-timeout",
        "ipv6-21-only",
        "passive-21-only",
        "pasv-private",
    ] {
        let inside = diagnose_files(&[&format!("{name}.inside.pcap")]);
        let both = diagnose_files(&[
            &format!("{name}.inside.pcap"),
            &format!("{name}.outside.pcap"),
        ]);
        assert_eq!(both.sessions.len(), inside.sessions.len(), "{name}");
        for (s, alone) in both.sessions.iter().zip(&inside.sessions) {
            assert_eq!(s.client, alone.client, "{name}: not from the client's side");
            let leg = &s
                .nat
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: unpaired"))
                .leg;
            assert!(leg.capture.ends_with(".outside.pcap"), "{name}");
            assert!(leg.nat.is_none(), "{name}");
        }
        let text = both.to_text();
        assert_eq!(
            text.matches("\nsession ").count(),
            inside.sessions.len(),
            "{name}:\n{text}"
        );
    }
}

/// A session ftpalg already rescued (its side shows the blocked passive
/// port it got round by active mode) is not told to run ftpalg; without
/// ftpalg between the captures the advice stays.
#[test]
fn no_advice_that_is_already_followed() {
    for report in [
        diagnose_files(&["ftpalg-ok.inside.pcap", "ftpalg-ok.outside.pcap"]),
        diagnose_files(&["ftpalg-gateway.gateway.pcap"]),
    ] {
        let text = report.to_text();
        assert!(!text.contains("run ftpalg"), "{text}");
        let leg = &report.sessions[0].nat.as_ref().unwrap().leg;
        let blocked = leg
            .findings
            .iter()
            .find(|f| f.kind.name() == "passive-data-blocked")
            .unwrap();
        assert!(
            blocked.fix.starts_with("Nothing to do for the client"),
            "{}",
            blocked.fix
        );
        assert!(blocked.fix.contains("pasv_min_port"), "{}", blocked.fix);
    }
    let seed = diagnose_files(&[
        "passive-21-only.inside.pcap",
        "passive-21-only.outside.pcap",
    ]);
    assert!(seed.sessions[0].findings[0]
        .fix
        .contains("run ftpalg on your gateway with `server_mode: auto`"));
}

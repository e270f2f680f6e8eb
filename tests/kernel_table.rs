//! ftpalg's nftables table against this machine's kernel: created in
//! place of a stale one, recreated when someone deletes or flushes it,
//! bounded, and gone when ftpalg is, whether it closes, drops it or is
//! killed. Run as root (`cargo test --test kernel_table`).

mod kernel;

use ftpalg::dataplane::kernel::{FailReason, FlowEvent, KernelConfig, KernelError, KernelTable};
use kernel::*;
use std::time::{Duration, Instant};

#[test]
fn stale_table_is_replaced_and_other_tables_are_untouched() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("e");
    // What a killed ftpalg without an owner-bound table would leave.
    let (ok, out) = lab.nft("'add table inet ftpalg_data; add chain inet ftpalg_data stale { type filter hook forward priority 0; policy drop; }'");
    assert!(ok, "{out}");
    let g = Gateway::open(lab, config());
    assert!(g.report.replaced_stale);
    let table = g.table();
    assert!(!table.contains("stale"), "{table}");
    for chain in [
        "chain dnat",
        "chain snat",
        "chain guard",
        "set pin4",
        "map fwd6",
    ] {
        assert!(table.contains(chain), "{chain} missing:\n{table}");
    }
    assert!(
        g.lab.tables().contains("table inet knop"),
        "the operator's table stays"
    );
    let tables = g.close().tables();
    assert!(tables.contains("knop"), "{tables}");
}

#[test]
fn nothing_remains_after_drop_or_after_the_process_socket_closes() {
    let Some(mut g) = Gateway::new("f") else {
        return;
    };
    g.add(&relay(CLIENT, sa(GW_IN, 40010), Duration::from_secs(30)));
    assert!(g.lab.tables().contains("ftpalg_data"));
    let Gateway { dp, lab, .. } = g;
    drop(dp);
    assert!(!lab.tables().contains("ftpalg_data"), "{}", lab.tables());

    // Owner-bound: a second instance cannot take the table over while the
    // first lives...
    let g = Gateway::open(lab, config());
    let second = in_ns(&g.lab.gw, || KernelTable::open(config()));
    assert!(
        matches!(second, Err(KernelError::TableBusy { .. })),
        "{second:?}"
    );
    let Gateway { dp, lab, .. } = g;
    drop(dp);

    // ...and when the process holding it is killed (no chance to send a
    // delete), the kernel removes the table with its socket.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hold_table_until_killed",
            "--ignored",
            "--test-threads=1",
        ])
        .env(HOLD_ENV, &lab.gw)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while !lab.tables().contains("ftpalg_data") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let listing = lab.tables();
    let _ = try_run(&["kill", "-9", &child.id().to_string()]);
    let _ = child.wait();
    assert!(
        listing.contains("ftpalg_data"),
        "the child opened the table: {listing}"
    );
    assert!(!lab.tables().contains("ftpalg_data"), "{}", lab.tables());
}

const HOLD_ENV: &str = "FTPALG_KERNEL_TEST_HOLD_IN";

/// Not a test on its own: the test above runs it in a child process and
/// kills it.
#[test]
#[ignore = "helper: run in a child process by nothing_remains_after_drop_or_after_the_process_socket_closes"]
fn hold_table_until_killed() {
    let ns = std::env::var(HOLD_ENV).expect("run by the parent test only");
    let (dp, _) = in_ns(&ns, || KernelTable::open(config())).unwrap();
    // Bounded: the parent kills this long before.
    std::thread::sleep(Duration::from_secs(20));
    drop(dp);
}

#[test]
fn a_table_deleted_by_someone_else_is_recreated_and_its_pinholes_fail() {
    let config = KernelConfig {
        owner: false,
        ..config()
    };
    let Some(mut g) = Gateway::with("g", config) else {
        return;
    };
    let gone = g.add(&relay(CLIENT, sa(GW_IN, 40010), Duration::from_secs(30)));
    let (ok, out) = g.lab.nft("delete table inet ftpalg_data");
    assert!(ok, "{out}");
    // The next add notices, recreates the table and succeeds.
    let next =
        g.dp.add(&relay(CLIENT, sa(GW_IN, 40011), Duration::from_secs(30)))
            .expect("add after the table was deleted");
    let listing = g.set("pin4");
    assert!(
        listing.contains("40011") && !listing.contains("40010"),
        "{listing}"
    );
    let evs = g.dp.poll().unwrap();
    assert_eq!(evs, vec![(gone, FlowEvent::Failed(FailReason::TableLost))]);
    assert_eq!(g.dp.live(), 1);

    // A flush (rules and elements gone, table kept) is found by poll.
    let (ok, out) = g.lab.nft("flush table inet ftpalg_data");
    assert!(ok, "{out}");
    let evs = g.dp.poll().unwrap();
    assert_eq!(evs, vec![(next, FlowEvent::Failed(FailReason::TableLost))]);
    let table = g.table();
    for rule in [
        "@pin4 add @spent4",
        "add @spent6",
        "map @snat4",
        "map @snat6",
        "@guard4",
        "@guard6",
    ] {
        assert!(
            table.contains(rule),
            "rule with {rule} not restored:\n{table}"
        );
    }
    g.close();
}

#[test]
fn a_full_set_is_a_typed_error_and_leaves_nothing_half_added() {
    let config = KernelConfig {
        max_pinholes: 2,
        ..config()
    };
    let Some(mut g) = Gateway::with("h", config) else {
        return;
    };
    let at = |port| passive(sa(GW_IN, port), 5000, Duration::from_secs(30));
    g.add(&at(40000));
    g.add(&at(40001));
    let third = g.dp.add(&at(40002));
    assert!(
        matches!(third, Err(KernelError::Full { max: 2 })),
        "{third:?}"
    );
    for set in ["pin4", "fwd4", "snat4", "guard4"] {
        let listing = g.set(set);
        assert!(
            !listing.contains("40002"),
            "{set} kept part of the refused pinhole:\n{listing}"
        );
    }
    assert!(matches!(
        g.dp.add(&at(40000)),
        Err(KernelError::PortInUse(_))
    ));
    let mixed = relay(CLIENT6, sa(GW_IN, 40003), Duration::from_secs(1));
    assert!(matches!(g.dp.add(&mixed), Err(KernelError::MixedFamilies)));
    assert_eq!(g.dp.live(), 2);
}

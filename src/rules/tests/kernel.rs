//! The kernel data path's keys (`data.kernel`): its table, its conntrack
//! mark and mask, its nflog group; and the accept line `--explain` prints
//! for them.

use super::*;
use crate::dataplane::kernel::KernelConfig;

fn kernel(keys: &str) -> Loaded {
    from_str(&format!("{BASE}data:\n  path: kernel\n  kernel:\n{keys}"))
}

#[test]
fn the_defaults_are_the_kernel_paths_own() {
    let r = from_str(BASE).rules.unwrap();
    let d = KernelConfig::default();
    let c = r.data.kernel.config();
    assert_eq!(
        (c.table, c.mark, c.mark_mask, c.log_group),
        (d.table, d.mark, d.mark_mask, d.log_group)
    );
}

#[test]
fn each_key_is_read() {
    let l = kernel(
        "    table: gw_ftp\n    mark: 0x00120000\n    mark_mask: 0x00ff0000\n    log_group: 77\n",
    );
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    let k = l.rules.unwrap().data.kernel;
    assert_eq!(
        (k.table.as_str(), k.mark, k.mark_mask, k.log_group),
        ("gw_ftp", 0x0012_0000, 0x00ff_0000, Some(77))
    );
    assert_eq!(
        k.config().accept_rule(),
        "ct mark and 0x00ff0000 == 0x00120000 accept"
    );
    let l = kernel("    mark: 1179910144\n    log_group: off\n");
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    let k = l.rules.unwrap().data.kernel;
    assert_eq!((k.mark, k.log_group), (0x4654_0000, None));
}

#[test]
fn bad_kernel_keys_are_refused_at_the_key() {
    let errors = |keys: &str| -> Vec<(u32, u32, String)> {
        kernel(keys)
            .diagnostics
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| (d.line, d.column, d.message))
            .collect()
    };
    assert_eq!(
        errors("    mark: 0\n"),
        vec![(
            9,
            11,
            "data.kernel.mark must not be 0: every unmarked connection has mark 0".into()
        )]
    );
    assert_eq!(
        errors("    mark: 0x1\n"),
        vec![(
            9,
            11,
            "data.kernel.mark 0x00000001 has bits outside mark_mask 0xffff0000".into()
        )]
    );
    assert_eq!(
        errors("    mark: 0x00010000\n    mark_mask: 0x00010000\n"),
        vec![(9, 11, "data.kernel.mark 0x00010000 is the lowest bit of mark_mask 0x00010000: the cut mark, which flips that bit, would be 0".into())]
    );
    assert_eq!(
        errors("    mark: lots\n"),
        vec![(
            9,
            11,
            "data.kernel.mark 'lots' is not a 32-bit number".into()
        )]
    );
    assert_eq!(
        errors("    mark_mask: 0x1ffffffff\n"),
        vec![(
            9,
            16,
            "data.kernel.mark_mask '0x1ffffffff' is not a 32-bit number".into()
        )]
    );
    assert_eq!(
        errors("    table: \"ftp alg\"\n"),
        vec![(
            9,
            12,
            "data.kernel.table 'ftp alg' is not an nftables name".into()
        )]
    );
    assert_eq!(
        errors("    table: ftpalg\n"),
        vec![(9, 12, "data.kernel.table 'ftpalg' is the name the shipped nftables files give their own table, which ftpalg would replace at start".into())]
    );
    assert_eq!(
        errors("    log_group: 70000\n"),
        vec![(
            9,
            16,
            "data.kernel.log_group '70000' is not a group from 0 to 65535 or off".into()
        )]
    );
    // Every bad key at once.
    assert_eq!(
        errors("    table: \"a b\"\n    mark: 0\n    log_group: x\n").len(),
        3
    );
}

#[test]
fn kernel_keys_on_the_relay_are_a_warning() {
    let d = diags("data:\n  kernel:\n    table: gw_ftp\n");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].0, d[0].2), (8, Severity::Warning), "{d:?}");
    assert!(d[0].3.contains("data.path is relay"), "{d:?}");
}

#[test]
fn explain_prints_the_accept_line_for_the_rules_given() {
    let text = explain(
        &kernel("    mark: 0x00120000\n    mark_mask: 0x00ff0000\n    table: gw_ftp\n")
            .rules
            .unwrap(),
    );
    assert!(
        text.contains("\n  Accept line for default-drop forward and input chains: ct mark and 0x00ff0000 == 0x00120000 accept\n"),
        "{text}"
    );
    assert!(text.contains("inet gw_ftp"), "{text}");
    let relay = explain(&from_str(BASE).rules.unwrap());
    assert!(!relay.contains("ct mark"), "{relay}");
}

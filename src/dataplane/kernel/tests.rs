//! The backend against a kernel of its own (a fresh network namespace).

use super::testing::in_fresh_netns;
use super::*;
use crate::dataplane::{GatewayAddr, PeerIp, PinholeFlow, ServerAddr, SourceNat};
use elements::Elements;
use netlink::Batch;
use ruleset::{Fam, SetKind};
use std::time::Duration;

fn element_count(dp: &mut KernelTable) -> usize {
    let mut n = 0;
    for fam in [Fam::V4, Fam::V6] {
        for kind in SetKind::ALL {
            let seq = dp.sock.reserve_seq(1);
            let req = elements::list_set(seq, &dp.layout, kind, fam);
            dp.sock
                .query(req.as_bytes(), seq, true, "list set", |m| {
                    n += elements::element_keys(m.attrs()).len()
                })
                .expect("list set");
        }
    }
    n
}

#[test]
fn removal_without_destroysetelem_deletes_each_element() {
    in_fresh_netns(|| {
        let (mut dp, _) = KernelTable::open(KernelConfig::default()).expect("open");
        // As on kernels before 6.3, which do not know DESTROYSETELEM.
        dp.destroy_supported = Some(false);
        let flow = PinholeFlow::passive(
            PeerIp::new("100.64.0.2".parse().unwrap()),
            GatewayAddr::new("100.64.0.1:40000".parse().unwrap()),
            ServerAddr::new("198.51.100.2:5000".parse().unwrap()),
            Some(SourceNat::new("198.51.100.1".parse().unwrap())),
            Duration::from_secs(30),
        );
        let id = dp.add(&flow).expect("add");
        assert_eq!(element_count(&mut dp), 5);
        // Elements already gone (here pin, spent and guard) must not stop
        // the others going.
        let mut pin_and_guard = Elements::of(&flow);
        pin_and_guard.fwd = None;
        pin_and_guard.snat = None;
        let mut b = Batch::new(dp.sock.reserve_seq(4));
        elements::remove_elements(
            &mut b,
            &dp.layout,
            &pin_and_guard,
            elements::NFT_MSG_DESTROYSETELEM,
        );
        dp.sock
            .transact(b, "remove pin and guard")
            .expect("destroy pin and guard");
        assert_eq!(element_count(&mut dp), 2);
        dp.remove(id)
            .expect("remove with one DELSETELEM per element");
        assert_eq!(element_count(&mut dp), 0);
        dp.close().expect("close");
    });
}

#[test]
fn config_checks_and_accept_line() {
    let c = KernelConfig {
        mark: 0x4654_0000,
        mark_mask: 0xffff_0000,
        ..KernelConfig::default()
    };
    assert_eq!(
        c.accept_rule(),
        "ct mark and 0xffff0000 == 0x46540000 accept"
    );
    // The cut mark differs from the mark under the mask, stays inside it.
    assert_eq!(c.cut_mark(), 0x4655_0000);
    let one_bit = KernelConfig {
        mark: 0x0001_0000,
        mark_mask: 0x0001_0000,
        ..KernelConfig::default()
    };
    assert_eq!(one_bit.cut_mark(), 0);
    assert!(matches!(
        KernelTable::open(one_bit),
        Err(KernelError::Config(_))
    ));
    let bad = KernelConfig {
        mark: 0x1,
        mark_mask: 0xffff_0000,
        ..KernelConfig::default()
    };
    assert!(matches!(
        KernelTable::open(bad),
        Err(KernelError::Config(_))
    ));
}

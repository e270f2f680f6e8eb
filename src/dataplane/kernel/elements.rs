//! The set elements that make one pinhole (see `ruleset` for the sets).

use super::expr;
use super::netlink::{Batch, NLM_F_CREATE, NLM_F_EXCL};
use super::ruleset::{Fam, Layout, SetKind, NFPROTO_INET, SPENT_MARGIN_MS};
use crate::dataplane::{Admit, PinholeFlow};
use std::net::IpAddr;

const NFT_MSG_NEWSETELEM: u16 = libc::NFT_MSG_NEWSETELEM as u16;
#[cfg(test)]
const NFT_MSG_GETSETELEM: u16 = libc::NFT_MSG_GETSETELEM as u16;
const NFT_MSG_DELSETELEM: u16 = libc::NFT_MSG_DELSETELEM as u16;
// From here on, `linux/netfilter/nf_tables.h` numbers libc does not carry.
/// Like DELSETELEM but a missing element is not an error (Linux 6.3+).
pub(super) const NFT_MSG_DESTROYSETELEM: u16 = 30;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A port as a key field: network order, padded to a register word.
fn port_bytes(port: u16) -> [u8; 4] {
    let p = port.to_be_bytes();
    [p[0], p[1], 0, 0]
}

/// The element keys and data of one flow, per set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Elements {
    pub fam: Fam,
    pub pin_key: Vec<u8>,
    pub guard_key: Vec<u8>,
    pub fwd: Option<Vec<u8>>,
    pub snat: Option<Vec<u8>>,
}

impl Elements {
    pub fn of(flow: &PinholeFlow) -> Elements {
        let gw = *flow.gateway;
        let mut pin_key = ip_bytes(*flow.peer);
        pin_key.extend(ip_bytes(gw.ip()));
        pin_key.extend(port_bytes(gw.port()));
        let mut guard_key = ip_bytes(gw.ip());
        guard_key.extend(port_bytes(gw.port()));
        let (fwd, snat) = match flow.admit {
            Admit::Only => (None, None),
            Admit::Forward { to, source_nat } => {
                let mut d = ip_bytes(to.ip());
                d.extend(port_bytes(to.port()));
                (Some(d), source_nat.map(|s| ip_bytes(*s)))
            }
        };
        Elements {
            fam: Fam::of(*flow.peer),
            pin_key,
            guard_key,
            fwd,
            snat,
        }
    }

    /// Each element ftpalg adds for the flow; the pin element comes after
    /// its companions so the packet path never sees it without them, and
    /// the `spent` element, whose token admits the one connection, first.
    fn each(&self) -> Vec<Element<'_>> {
        let el = |set, key, data| Element { set, key, data };
        let mut v = vec![
            el(SetKind::Spent, &self.pin_key[..], None),
            el(SetKind::Guard, &self.guard_key[..], None),
        ];
        if let Some(d) = &self.fwd {
            v.push(el(SetKind::Fwd, &self.pin_key, Some(&d[..])));
        }
        if let Some(d) = &self.snat {
            v.push(el(SetKind::Snat, &self.pin_key, Some(&d[..])));
        }
        v.push(el(SetKind::Pin, &self.pin_key, None));
        v
    }

    /// Each element to remove with the flow: those ftpalg added, the pin
    /// element first so nothing is admitted while the rest go.
    fn each_to_remove(&self) -> Vec<Element<'_>> {
        let mut v = self.each();
        let pin = v
            .iter()
            .position(|e| matches!(e.set, SetKind::Pin))
            .expect("a flow has a pin element");
        let pin = v.remove(pin);
        v.insert(0, pin);
        v
    }
}

/// One element of one set.
#[derive(Debug, Clone, Copy)]
struct Element<'a> {
    set: SetKind,
    key: &'a [u8],
    data: Option<&'a [u8]>,
}

fn element_message(
    b: &mut Batch,
    l: &Layout,
    msg: u16,
    flags: u16,
    fam: Fam,
    e: Element<'_>,
    timeout_ms: Option<u64>,
) {
    let (set, key, data) = (e.set.name(fam), e.key, e.data);
    b.add(msg, NFPROTO_INET, flags, |w| {
        w.str(NFTA_SET_ELEM_LIST_TABLE, &l.table);
        w.str(NFTA_SET_ELEM_LIST_SET, &set);
        w.nested(NFTA_SET_ELEM_LIST_ELEMENTS, |w| {
            w.nested(NFTA_LIST_ELEM, |w| {
                w.nested(NFTA_SET_ELEM_KEY, |w| w.bytes(expr::NFTA_DATA_VALUE, key));
                if let Some(d) = data {
                    w.nested(NFTA_SET_ELEM_DATA, |w| w.bytes(expr::NFTA_DATA_VALUE, d));
                }
                if let Some(t) = timeout_ms {
                    w.u64(NFTA_SET_ELEM_TIMEOUT, t);
                }
            });
        });
    });
}

/// The request that lists the elements of one set (tests count them).
#[cfg(test)]
pub(super) fn list_set(seq: u32, l: &Layout, kind: SetKind, fam: Fam) -> super::netlink::Writer {
    super::netlink::request(
        super::netlink::NFNL_SUBSYS_NFTABLES,
        NFT_MSG_GETSETELEM,
        super::netlink::NLM_F_DUMP,
        seq,
        NFPROTO_INET,
        |w| {
            w.str(NFTA_SET_ELEM_LIST_TABLE, &l.table);
            w.str(NFTA_SET_ELEM_LIST_SET, &kind.name(fam));
        },
    )
}

/// The keys in one GETSETELEM answer.
#[cfg(test)]
pub(super) fn element_keys(attrs: &[u8]) -> Vec<&[u8]> {
    use super::netlink::{attr, Attrs};
    let Some(list) = attr(attrs, NFTA_SET_ELEM_LIST_ELEMENTS) else {
        return Vec::new();
    };
    Attrs(list)
        .filter_map(|(_, elem)| {
            attr(elem, NFTA_SET_ELEM_KEY).and_then(|k| attr(k, expr::NFTA_DATA_VALUE))
        })
        .collect()
}

/// Adds a flow's elements; EXCL so a duplicate pinhole is an error. The
/// `spent` element outlives the others by [`SPENT_MARGIN_MS`], so its key
/// stays spent for as long as the pin element could match.
pub(super) fn add_elements(b: &mut Batch, l: &Layout, e: &Elements, timeout_ms: u64) {
    for el in e.each() {
        let t = match el.set {
            SetKind::Spent => timeout_ms.saturating_add(SPENT_MARGIN_MS),
            _ => timeout_ms,
        };
        element_message(
            b,
            l,
            NFT_MSG_NEWSETELEM,
            NLM_F_CREATE | NLM_F_EXCL,
            e.fam,
            el,
            Some(t),
        );
    }
}

/// Removes a flow's elements with `msg` (DESTROYSETELEM or DELSETELEM).
pub(super) fn remove_elements(b: &mut Batch, l: &Layout, e: &Elements, msg: u16) {
    for el in e.each_to_remove() {
        element_message(b, l, msg, 0, e.fam, Element { data: None, ..el }, None);
    }
}

/// The same as `remove_elements`, one batch per element, for kernels
/// without DESTROYSETELEM where a missing element fails the whole batch.
pub(super) fn remove_elements_one_by_one(
    l: &Layout,
    e: &Elements,
    mut seq: impl FnMut() -> u32,
) -> Vec<Batch> {
    e.each_to_remove()
        .into_iter()
        .map(|el| {
            let mut b = Batch::new(seq());
            element_message(
                &mut b,
                l,
                NFT_MSG_DELSETELEM,
                0,
                e.fam,
                Element { data: None, ..el },
                None,
            );
            b
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{GatewayAddr, PeerIp, ServerAddr, SourceNat};
    use std::time::Duration;

    #[test]
    fn v4_keys_are_peer_gateway_port_padded_to_words() {
        let f = PinholeFlow::passive(
            PeerIp::new("100.64.0.2".parse().unwrap()),
            GatewayAddr::new("100.64.0.1:40000".parse().unwrap()),
            ServerAddr::new("198.51.100.2:5000".parse().unwrap()),
            Some(SourceNat::new("198.51.100.1".parse().unwrap())),
            Duration::from_secs(1),
        );
        let e = Elements::of(&f);
        assert_eq!(e.pin_key, [100, 64, 0, 2, 100, 64, 0, 1, 0x9c, 0x40, 0, 0]);
        assert_eq!(e.guard_key, [100, 64, 0, 1, 0x9c, 0x40, 0, 0]);
        assert_eq!(
            e.fwd.as_deref(),
            Some(&[198, 51, 100, 2, 0x13, 0x88, 0, 0][..])
        );
        assert_eq!(e.snat.as_deref(), Some(&[198, 51, 100, 1][..]));
        let kinds: Vec<_> = e.each().iter().map(|el| el.set.name(e.fam)).collect();
        assert_eq!(kinds, ["spent4", "guard4", "fwd4", "snat4", "pin4"]);
        let gone: Vec<_> = e
            .each_to_remove()
            .iter()
            .map(|el| el.set.name(e.fam))
            .collect();
        assert_eq!(gone, ["pin4", "spent4", "guard4", "fwd4", "snat4"]);
    }

    #[test]
    fn v6_relay_flow_has_only_pin_and_guard() {
        let f = PinholeFlow::relay(
            PeerIp::new("2001:db8:1::2".parse().unwrap()),
            GatewayAddr::new("[2001:db8:1::1]:40002".parse().unwrap()),
            Duration::from_secs(1),
        );
        let e = Elements::of(&f);
        assert_eq!(e.fam, Fam::V6);
        assert_eq!(e.pin_key.len(), 36);
        assert_eq!(e.guard_key.len(), 20);
        let kinds: Vec<_> = e.each().iter().map(|el| el.set.name(e.fam)).collect();
        assert_eq!(kinds, ["spent6", "guard6", "pin6"]);
    }
}

//! ftpalg's own nftables table: its sets, chains and rules, and the set
//! elements that make one pinhole. Only messages are built here; the
//! backend sends them.
//!
//! ```text
//! table inet <name> {                       # owned by ftpalg's socket
//!   set pin4  { ipv4_addr . ipv4_addr . inet_service; timeout, dynamic; size N }
//!   map fwd4  { ipv4_addr . ipv4_addr . inet_service : ipv4_addr . inet_service; timeout }
//!   map snat4 { ipv4_addr . ipv4_addr . inet_service : ipv4_addr; timeout }
//!   set guard4 { ipv4_addr . inet_service; timeout }
//!   set spent4 { ipv4_addr . ipv4_addr . inet_service; timeout, dynamic;
//!                limit rate 1/week burst 1 packets }
//!   (and pin6, fwd6, snat6, guard6, spent6)
//!   chain dnat { type nat hook prerouting priority dstnat
//!     ip saddr . ip daddr . tcp dport @pin4
//!       add @spent4 { ip saddr . ip daddr . tcp dport }   # takes its token
//!       ct mark set ct mark & ~MASK | MARK  dnat to ip saddr . ip daddr . tcp dport map @fwd4 }
//!   chain snat { type nat hook postrouting priority srcnat
//!     ct mark & MASK == MARK  snat to ct original (saddr . daddr . proto-dst) map @snat4 }
//!   chain guard { type filter hook input priority filter
//!     ct state new  ip daddr . tcp dport @guard4  ct mark & MASK != MARK
//!       log group G snaplen 64  drop }
//!   chain cut { type filter hook prerouting priority mangle
//!     meta l4proto tcp  ct mark & MASK == CUT  reject with tcp reset }
//! }
//! ```
//!
//! The pinhole key is (expected peer . gateway address . port): a packet
//! from anyone else misses it. ftpalg adds the pinhole's `spent` element
//! with the others; every element of that set carries a `limit` holding one
//! token that never refills, and updating the element from the packet path
//! evaluates it. The first packet to take the token goes on; every other
//! stops at that expression. The check and the mark are one step, under the
//! limit's lock: of several SYNs from the expected peer racing on different
//! CPUs exactly one is admitted (a lookup in `spent` followed by an add to
//! it, as before, let two or three through the gap). Nothing is deleted
//! in the packet path: the kernel only marks an element deleted there as dead, and a dead element
//! keeps counting against the set's size, cannot be deleted over netlink,
//! and goes only when the set's garbage collector gets through the set;
//! that collector gives up whenever a transaction lands meanwhile, so under
//! a steady stream of pinholes the set filled with dead elements and
//! refused new ones. Elements ftpalg deletes itself are gone at once. A `fwd` element
//! sends that connection on (DNAT); without one, the connection is only
//! marked (a relay listener or a transparent flow). The mark is what the
//! operator's default-drop chains accept. `guard` drops every other new
//! connection to a pinhole's gateway port while the pinhole lives, so a
//! stranger or a second attempt gets nothing, not even a reset. The backend
//! learns the source port the peer dialed from out of conntrack's event
//! for the new connection (see `events`).
//!
//! `cut` ends a forwarded connection (ABOR, a channel released while its
//! connection runs): the backend rewrites the entry's mark to CUT, another
//! value under the same mask, and every later packet of it, from either
//! end, is answered with a reset to its sender; both ends learn at their
//! next packet, instead of waiting out their timeouts behind a silent drop.
//! It sits in prerouting, after conntrack and before destination NAT, where
//! a packet still carries the addresses it had on the wire: the reset is
//! addressed back to its sender as is, with nothing left to translate, on
//! whichever side of the NAT it came from. (From forward, after the
//! packet's translation, the kernel is to translate the reset back; on the
//! end-to-end lab's gateway, whose outside interface is a bridge beside a
//! masquerade, a reset towards the server left with the client's own
//! address instead, and the server ignored it.) Being
//! in prerouting also puts it before every filter chain of the operator's,
//! whose drop would otherwise take the packet first, without a reset.

use super::expr::{self, Base, Cmp, CtKey, MetaKey, Nat, REG32_00, REG_SCRATCH};
use super::netlink::{Batch, Writer, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL};
use super::sets::set_message;
pub(super) use super::sets::{Fam, SetKind};

pub(super) use super::layout::{Layout, NFPROTO_INET};

pub(super) const NFT_MSG_NEWTABLE: u16 = libc::NFT_MSG_NEWTABLE as u16;
pub(super) const NFT_MSG_GETTABLE: u16 = libc::NFT_MSG_GETTABLE as u16;
pub(super) const NFT_MSG_DELTABLE: u16 = libc::NFT_MSG_DELTABLE as u16;
const NFT_MSG_NEWCHAIN: u16 = libc::NFT_MSG_NEWCHAIN as u16;
const NFT_MSG_NEWRULE: u16 = libc::NFT_MSG_NEWRULE as u16;
pub(super) const NFT_MSG_GETRULE: u16 = libc::NFT_MSG_GETRULE as u16;

// Attributes of `linux/netfilter/nf_tables.h` that libc does not carry.
pub(super) const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFT_TABLE_F_OWNER: u32 = 0x2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
pub(super) const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;

/// `ct state new`: the IP_CT_NEW bit of the state bitmask.
const CT_STATE_NEW: u32 = 1 << 3;
const IPPROTO_TCP: u8 = libc::IPPROTO_TCP as u8;

/// How much longer than its pinhole a `spent` element lives: a spent key
/// must outlast every pin element that could still match it.
pub(super) const SPENT_MARGIN_MS: u64 = 10 * 1000;

/// The timeout of a `spent` element the packet path itself creates, which
/// happens only when a pinhole is withdrawn between a packet's pin lookup
/// and its `spent` update: such an element guards nothing, so it goes soon.
const SPENT_FALLBACK_MS: u64 = SPENT_MARGIN_MS;

/// The rules one table holds; a different count means someone changed it.
pub(super) const RULE_COUNT: usize = 7;

fn chain_message(b: &mut Batch, l: &Layout, name: &str, kind: &str, hook: i32, prio: i32) {
    b.add(
        NFT_MSG_NEWCHAIN,
        NFPROTO_INET,
        NLM_F_CREATE | NLM_F_EXCL,
        |w| {
            w.str(NFTA_CHAIN_TABLE, &l.table);
            w.str(NFTA_CHAIN_NAME, name);
            w.nested(NFTA_CHAIN_HOOK, |w| {
                w.u32(NFTA_HOOK_HOOKNUM, hook as u32);
                w.u32(NFTA_HOOK_PRIORITY, prio as u32);
            });
            w.u32(NFTA_CHAIN_POLICY, libc::NF_ACCEPT as u32);
            w.str(NFTA_CHAIN_TYPE, kind);
        },
    );
}

fn rule_message(b: &mut Batch, l: &Layout, chain: &str, f: impl FnOnce(&mut Writer)) {
    b.add(
        NFT_MSG_NEWRULE,
        NFPROTO_INET,
        NLM_F_CREATE | NLM_F_APPEND,
        |w| {
            w.str(NFTA_RULE_TABLE, &l.table);
            w.str(NFTA_RULE_CHAIN, chain);
            w.nested(NFTA_RULE_EXPRESSIONS, f);
        },
    );
}

fn match_family_tcp(w: &mut Writer, fam: Fam) {
    expr::meta(w, MetaKey::NfProto, REG_SCRATCH);
    expr::cmp(w, REG_SCRATCH, Cmp::Eq, &[fam.nfproto()]);
    expr::meta(w, MetaKey::L4Proto, REG_SCRATCH);
    expr::cmp(w, REG_SCRATCH, Cmp::Eq, &[IPPROTO_TCP]);
}

/// `ct mark & mask` compared with the configured mark.
fn match_mark(w: &mut Writer, l: &Layout, op: Cmp) {
    expr::ct_get(w, CtKey::Mark, REG_SCRATCH);
    expr::bitwise(w, REG_SCRATCH, &l.mask.to_ne_bytes(), &0u32.to_ne_bytes());
    expr::cmp(w, REG_SCRATCH, op, &l.mark.to_ne_bytes());
}

fn dnat_rule(w: &mut Writer, l: &Layout, fam: Fam) {
    let (src, dst) = fam.addr_offsets();
    let a = fam.addr_len();
    let (r_peer, r_gw, r_port) = fam.key_regs();
    let pin = SetKind::Pin;
    let spent = SetKind::Spent;
    match_family_tcp(w, fam);
    expr::payload(w, Base::Network, src, a, r_peer);
    expr::payload(w, Base::Network, dst, a, r_gw);
    expr::payload(w, Base::Transport, 2, 2, r_port);
    expr::lookup(w, &pin.name(fam), pin.id(fam), REG32_00, None);
    // Admission and its record are one step: the `spent` element (ftpalg
    // adds it with the pinhole) holds one token, and of any number of
    // packets racing through here on different CPUs the one that takes it
    // goes on; every other stops here, and the `guard` chain drops it.
    expr::dynset_add(
        w,
        &spent.name(fam),
        spent.id(fam),
        REG32_00,
        SPENT_FALLBACK_MS,
    );
    // Keep the operator's other mark bits; set ours.
    expr::ct_get(w, CtKey::Mark, REG_SCRATCH);
    expr::bitwise(
        w,
        REG_SCRATCH,
        &(!l.mask).to_ne_bytes(),
        &l.mark.to_ne_bytes(),
    );
    expr::ct_set_mark(w, REG_SCRATCH);
    // A pinhole without a fwd element ends here, admitted and marked.
    let fwd = SetKind::Fwd;
    expr::lookup(w, &fwd.name(fam), fwd.id(fam), REG32_00, Some(REG32_00));
    expr::nat(
        w,
        Nat::Dnat,
        fam.nfproto(),
        REG32_00,
        Some(REG32_00 + a / 4),
    );
}

fn snat_rule(w: &mut Writer, l: &Layout, fam: Fam) {
    let (r_peer, r_gw, r_port) = fam.key_regs();
    expr::meta(w, MetaKey::NfProto, REG_SCRATCH);
    expr::cmp(w, REG_SCRATCH, Cmp::Eq, &[fam.nfproto()]);
    match_mark(w, l, Cmp::Eq);
    let (s, d) = match fam {
        Fam::V4 => (CtKey::SrcIp, CtKey::DstIp),
        Fam::V6 => (CtKey::SrcIp6, CtKey::DstIp6),
    };
    expr::ct_get(w, s, r_peer);
    expr::ct_get(w, d, r_gw);
    expr::ct_get(w, CtKey::ProtoDst, r_port);
    let snat = SetKind::Snat;
    expr::lookup(w, &snat.name(fam), snat.id(fam), REG32_00, Some(REG32_00));
    expr::nat(w, Nat::Snat, fam.nfproto(), REG32_00, None);
}

fn guard_rule(w: &mut Writer, l: &Layout, fam: Fam) {
    let (_, dst) = fam.addr_offsets();
    let a = fam.addr_len();
    match_family_tcp(w, fam);
    expr::ct_get(w, CtKey::State, REG_SCRATCH);
    expr::bitwise(
        w,
        REG_SCRATCH,
        &CT_STATE_NEW.to_ne_bytes(),
        &0u32.to_ne_bytes(),
    );
    expr::cmp(w, REG_SCRATCH, Cmp::Neq, &0u32.to_ne_bytes());
    expr::payload(w, Base::Network, dst, a, REG32_00);
    expr::payload(w, Base::Transport, 2, 2, REG32_00 + a / 4);
    let g = SetKind::Guard;
    expr::lookup(w, &g.name(fam), g.id(fam), REG32_00, None);
    match_mark(w, l, Cmp::Neq);
    if let Some(g) = l.log_group {
        // Who was turned away, for ftpalg's log (see `strangers`).
        expr::log_group(w, g, super::strangers::SNAPLEN);
    }
    expr::drop_verdict(w);
}

fn cut_rule(w: &mut Writer, l: &Layout) {
    expr::meta(w, MetaKey::L4Proto, REG_SCRATCH);
    expr::cmp(w, REG_SCRATCH, Cmp::Eq, &[IPPROTO_TCP]);
    expr::ct_get(w, CtKey::Mark, REG_SCRATCH);
    expr::bitwise(w, REG_SCRATCH, &l.mask.to_ne_bytes(), &0u32.to_ne_bytes());
    expr::cmp(w, REG_SCRATCH, Cmp::Eq, &l.cut.to_ne_bytes());
    expr::reject_tcp_reset(w);
}

fn table_message(b: &mut Batch, l: &Layout, flags: u32, msg: u16, nl_flags: u16) {
    b.add(msg, NFPROTO_INET, nl_flags, |w| {
        w.str(NFTA_TABLE_NAME, &l.table);
        if msg == NFT_MSG_NEWTABLE {
            w.u32(NFTA_TABLE_FLAGS, flags);
        }
    });
}

/// One transaction that makes the table from scratch, replacing any table
/// of the same name (a stale one from a killed ftpalg, or a flushed one).
pub(super) fn create(b: &mut Batch, l: &Layout) {
    // Make sure it exists so the delete cannot fail, then delete it: the
    // usual nft idiom for "replace", applied atomically with what follows.
    table_message(b, l, 0, NFT_MSG_NEWTABLE, NLM_F_CREATE);
    table_message(b, l, 0, NFT_MSG_DELTABLE, 0);
    let flags = if l.owner { NFT_TABLE_F_OWNER } else { 0 };
    table_message(b, l, flags, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL);
    for fam in [Fam::V4, Fam::V6] {
        for kind in SetKind::ALL {
            set_message(b, l, kind, fam);
        }
    }
    use libc::{NF_INET_LOCAL_IN, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING};
    // nft's named priorities: dstnat, srcnat, filter, mangle.
    use libc::{NF_IP_PRI_FILTER, NF_IP_PRI_MANGLE, NF_IP_PRI_NAT_DST, NF_IP_PRI_NAT_SRC};
    chain_message(b, l, "dnat", "nat", NF_INET_PRE_ROUTING, NF_IP_PRI_NAT_DST);
    chain_message(b, l, "snat", "nat", NF_INET_POST_ROUTING, NF_IP_PRI_NAT_SRC);
    chain_message(b, l, "guard", "filter", NF_INET_LOCAL_IN, NF_IP_PRI_FILTER);
    chain_message(b, l, "cut", "filter", NF_INET_PRE_ROUTING, NF_IP_PRI_MANGLE);
    for fam in [Fam::V4, Fam::V6] {
        rule_message(b, l, "dnat", |w| dnat_rule(w, l, fam));
        rule_message(b, l, "snat", |w| snat_rule(w, l, fam));
        rule_message(b, l, "guard", |w| guard_rule(w, l, fam));
    }
    // One rule for both families: a mark and a reset know no family.
    rule_message(b, l, "cut", |w| cut_rule(w, l));
}

/// Deletes the table and everything in it.
pub(super) fn delete(b: &mut Batch, l: &Layout) {
    table_message(b, l, 0, NFT_MSG_DELTABLE, 0);
}

#[cfg(test)]
mod tests {
    use super::super::netlink::{attr, messages, Attrs};
    use super::super::sets::NFT_MSG_NEWSET;
    use super::*;

    fn layout() -> Layout {
        Layout {
            table: "ftpalg_data".into(),
            mark: 0x4600_0000,
            mask: 0xff00_0000,
            cut: 0x4700_0000,
            size: 64,
            owner: true,
            log_group: Some(7),
        }
    }

    #[test]
    fn create_batch_replaces_the_table_and_adds_seven_rules() {
        let mut b = Batch::new(1);
        create(&mut b, &layout());
        let (bytes, _, _) = b.finish();
        let msgs: Vec<_> = messages(&bytes).collect();
        let kinds: Vec<u16> = msgs[1..msgs.len() - 1]
            .iter()
            .map(|m| m.ty & 0xff)
            .collect();
        assert_eq!(
            &kinds[..3],
            &[NFT_MSG_NEWTABLE, NFT_MSG_DELTABLE, NFT_MSG_NEWTABLE]
        );
        assert_eq!(kinds.iter().filter(|k| **k == NFT_MSG_NEWSET).count(), 10);
        assert_eq!(
            kinds.iter().filter(|k| **k == NFT_MSG_NEWRULE).count(),
            RULE_COUNT
        );
        // Every message names ftpalg's table and nothing else.
        for m in &msgs[1..msgs.len() - 1] {
            assert_eq!(attr(m.attrs(), 1), Some(&b"ftpalg_data\0"[..]));
        }
        // The final NEWTABLE carries the owner flag.
        assert_eq!(
            attr(msgs[3].attrs(), NFTA_TABLE_FLAGS),
            Some(&NFT_TABLE_F_OWNER.to_be_bytes()[..])
        );
    }

    #[test]
    fn cut_rule_resets_connections_with_the_cut_mark() {
        let mut w = Writer::default();
        cut_rule(&mut w, &layout());
        let exprs: Vec<(String, Vec<u8>)> = Attrs(w.as_bytes())
            .map(|(_, e)| {
                let name = String::from_utf8_lossy(attr(e, 1).unwrap())
                    .trim_end_matches('\0')
                    .to_string();
                (name, attr(e, 2).unwrap().to_vec())
            })
            .collect();
        let names: Vec<&str> = exprs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["meta", "cmp", "ct", "bitwise", "cmp", "reject"]);
        // The second comparison is against the cut mark, not the mark.
        let cmp = attr(&exprs[4].1, 3).and_then(|d| attr(d, 1)).unwrap();
        assert_eq!(cmp, &0x4700_0000u32.to_ne_bytes()[..]);
        // NFT_REJECT_TCP_RST.
        assert_eq!(attr(&exprs[5].1, 1), Some(&1u32.to_be_bytes()[..]));
    }

    #[test]
    fn dnat_rule_admits_through_the_spent_token_before_marking() {
        let mut w = Writer::default();
        dnat_rule(&mut w, &layout(), Fam::V4);
        let names: Vec<String> = Attrs(w.as_bytes())
            .map(|(_, e)| {
                String::from_utf8_lossy(attr(e, 1).unwrap())
                    .trim_end_matches('\0')
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "meta", "cmp", "meta", "cmp", "payload", "payload", "payload", "lookup", "dynset",
                "ct", "bitwise", "ct", "lookup", "nat"
            ]
        );
        // No separate check of `spent` (a check and a mark in two steps let
        // racing packets through): the update of `spent` is the check.
        // Nothing is deleted in the packet path (dynset op 2): the kernel
        // would keep a dead element counting against the set's size.
        let exprs: Vec<&[u8]> = Attrs(w.as_bytes()).map(|(_, e)| e).collect();
        let spent = attr(exprs[8], 2).unwrap();
        assert_eq!(attr(spent, 1), Some(&b"spent4\0"[..]));
        assert_eq!(attr(spent, 3), Some(&0u32.to_be_bytes()[..]), "op add");
    }

    #[test]
    fn spent_sets_carry_a_one_use_token_per_element() {
        let mut b = Batch::new(1);
        create(&mut b, &layout());
        let (bytes, _, _) = b.finish();
        let sets: Vec<_> = messages(&bytes)
            .filter(|m| m.ty & 0xff == NFT_MSG_NEWSET)
            .collect();
        for m in sets {
            let name = attr(m.attrs(), 2).unwrap();
            let expr = attr(m.attrs(), 17);
            if name.starts_with(b"spent") {
                let expr = expr.expect("spent set has its expression");
                assert_eq!(attr(expr, 1), Some(&b"limit\0"[..]));
                let data = attr(expr, 2).unwrap();
                assert_eq!(attr(data, 3), Some(&1u32.to_be_bytes()[..]), "burst 1");
            } else {
                assert_eq!(expr, None, "{}", String::from_utf8_lossy(name));
            }
        }
    }
}

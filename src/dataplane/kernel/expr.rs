//! nf_tables expressions, written as netlink attributes.
//!
//! Each function appends one `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA }`
//! to a rule's expression list. Attribute numbers are those of
//! `linux/netfilter/nf_tables.h`, which libc does not carry; the values
//! the attributes hold come from libc where it has them.

use super::netlink::Writer;

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
pub(super) const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;

/// Registers in 32-bit units: `NFT_REG32_00` is the first word after the
/// verdict, and a key of several fields takes consecutive words.
pub(super) const REG32_00: u32 = libc::NFT_REG32_00 as u32;
/// A scratch register far from any key (keys use at most 9 words).
pub(super) const REG_SCRATCH: u32 = REG32_00 + 12;
const NFT_REG_VERDICT: u32 = libc::NFT_REG_VERDICT as u32;

/// Where a payload load starts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Base {
    Network = libc::NFT_PAYLOAD_NETWORK_HEADER as isize,
    Transport = libc::NFT_PAYLOAD_TRANSPORT_HEADER as isize,
}

/// `meta` keys used here.
#[derive(Debug, Clone, Copy)]
pub(super) enum MetaKey {
    NfProto = libc::NFT_META_NFPROTO as isize,
    L4Proto = libc::NFT_META_L4PROTO as isize,
}

/// `ct` keys used here.
#[derive(Debug, Clone, Copy)]
pub(super) enum CtKey {
    State = libc::NFT_CT_STATE as isize,
    Mark = libc::NFT_CT_MARK as isize,
    ProtoDst = libc::NFT_CT_PROTO_DST as isize,
    SrcIp = libc::NFT_CT_SRC_IP as isize,
    DstIp = libc::NFT_CT_DST_IP as isize,
    SrcIp6 = libc::NFT_CT_SRC_IP6 as isize,
    DstIp6 = libc::NFT_CT_DST_IP6 as isize,
}

fn expr(w: &mut Writer, name: &str, f: impl FnOnce(&mut Writer)) {
    w.nested(NFTA_LIST_ELEM, |w| expr_body(w, name, f));
}

/// An expression's name and data, without the list element around it (the
/// form a set's own expression takes).
fn expr_body(w: &mut Writer, name: &str, f: impl FnOnce(&mut Writer)) {
    w.str(NFTA_EXPR_NAME, name);
    w.nested(NFTA_EXPR_DATA, f);
}

/// One week, in seconds: the refill period of [`admit_once`]'s token.
const WEEK_SECS: u64 = 7 * 24 * 3600;

/// `limit rate 1/week burst 1 packets`, as a set's per-element expression:
/// each element holds one token, taken under the limit's lock by the first
/// packet that evaluates the element, so of any number of packets racing on
/// different CPUs exactly one passes. The refill (a week) is far beyond any
/// element's timeout, so the token never comes back.
pub(super) fn admit_once(w: &mut Writer) {
    const NFTA_LIMIT_RATE: u16 = 1;
    const NFTA_LIMIT_UNIT: u16 = 2;
    const NFTA_LIMIT_BURST: u16 = 3;
    const NFTA_LIMIT_TYPE: u16 = 4;
    const NFTA_LIMIT_FLAGS: u16 = 5;
    expr_body(w, "limit", |w| {
        w.u64(NFTA_LIMIT_RATE, 1);
        w.u64(NFTA_LIMIT_UNIT, WEEK_SECS);
        w.u32(NFTA_LIMIT_BURST, 1);
        w.u32(NFTA_LIMIT_TYPE, libc::NFT_LIMIT_PKTS as u32);
        // Not inverted: break when over.
        w.u32(NFTA_LIMIT_FLAGS, 0);
    });
}

fn data(w: &mut Writer, ty: u16, value: &[u8]) {
    w.nested(ty, |w| w.bytes(NFTA_DATA_VALUE, value));
}

/// `meta <key>` into `dreg`.
pub(super) fn meta(w: &mut Writer, key: MetaKey, dreg: u32) {
    const NFTA_META_DREG: u16 = 1;
    const NFTA_META_KEY: u16 = 2;
    expr(w, "meta", |w| {
        w.u32(NFTA_META_DREG, dreg);
        w.u32(NFTA_META_KEY, key as u32);
    });
}

/// `payload` load of `len` bytes at `offset` from `base` into `dreg`.
pub(super) fn payload(w: &mut Writer, base: Base, offset: u32, len: u32, dreg: u32) {
    const NFTA_PAYLOAD_DREG: u16 = 1;
    const NFTA_PAYLOAD_BASE: u16 = 2;
    const NFTA_PAYLOAD_OFFSET: u16 = 3;
    const NFTA_PAYLOAD_LEN: u16 = 4;
    expr(w, "payload", |w| {
        w.u32(NFTA_PAYLOAD_DREG, dreg);
        w.u32(NFTA_PAYLOAD_BASE, base as u32);
        w.u32(NFTA_PAYLOAD_OFFSET, offset);
        w.u32(NFTA_PAYLOAD_LEN, len);
    });
}

/// Comparison operators.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cmp {
    Eq = libc::NFT_CMP_EQ as isize,
    Neq = libc::NFT_CMP_NEQ as isize,
}

/// `cmp` of `sreg` against `value`; the rule stops here when false.
pub(super) fn cmp(w: &mut Writer, sreg: u32, op: Cmp, value: &[u8]) {
    const NFTA_CMP_SREG: u16 = 1;
    const NFTA_CMP_OP: u16 = 2;
    const NFTA_CMP_DATA: u16 = 3;
    expr(w, "cmp", |w| {
        w.u32(NFTA_CMP_SREG, sreg);
        w.u32(NFTA_CMP_OP, op as u32);
        data(w, NFTA_CMP_DATA, value);
    });
}

/// `reg = (reg & mask) ^ xor`, over `mask.len()` bytes.
pub(super) fn bitwise(w: &mut Writer, reg: u32, mask: &[u8], xor: &[u8]) {
    const NFTA_BITWISE_SREG: u16 = 1;
    const NFTA_BITWISE_DREG: u16 = 2;
    const NFTA_BITWISE_LEN: u16 = 3;
    const NFTA_BITWISE_MASK: u16 = 4;
    const NFTA_BITWISE_XOR: u16 = 5;
    expr(w, "bitwise", |w| {
        w.u32(NFTA_BITWISE_SREG, reg);
        w.u32(NFTA_BITWISE_DREG, reg);
        w.u32(NFTA_BITWISE_LEN, mask.len() as u32);
        data(w, NFTA_BITWISE_MASK, mask);
        data(w, NFTA_BITWISE_XOR, xor);
    });
}

const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_CT_DIRECTION: u16 = 3;
const NFTA_CT_SREG: u16 = 4;
/// `enum ip_conntrack_dir` of `linux/netfilter/nf_conntrack_tuple_common.h`.
const IP_CT_DIR_ORIGINAL: u8 = 0;

/// `ct <key>` (original direction for directional keys) into `dreg`.
pub(super) fn ct_get(w: &mut Writer, key: CtKey, dreg: u32) {
    expr(w, "ct", |w| {
        w.u32(NFTA_CT_DREG, dreg);
        w.u32(NFTA_CT_KEY, key as u32);
        if matches!(
            key,
            CtKey::ProtoDst | CtKey::SrcIp | CtKey::DstIp | CtKey::SrcIp6 | CtKey::DstIp6
        ) {
            w.bytes(NFTA_CT_DIRECTION, &[IP_CT_DIR_ORIGINAL]);
        }
    });
}

/// `ct mark set` from `sreg`.
pub(super) fn ct_set_mark(w: &mut Writer, sreg: u32) {
    expr(w, "ct", |w| {
        w.u32(NFTA_CT_KEY, CtKey::Mark as u32);
        w.u32(NFTA_CT_SREG, sreg);
    });
}

/// `lookup` of `sreg` in `set`; with `dreg`, a map lookup that loads the
/// element's data. No match stops the rule.
pub(super) fn lookup(w: &mut Writer, set: &str, set_id: u32, sreg: u32, dreg: Option<u32>) {
    const NFTA_LOOKUP_SET: u16 = 1;
    const NFTA_LOOKUP_SREG: u16 = 2;
    const NFTA_LOOKUP_DREG: u16 = 3;
    const NFTA_LOOKUP_SET_ID: u16 = 4;
    expr(w, "lookup", |w| {
        w.str(NFTA_LOOKUP_SET, set);
        w.u32(NFTA_LOOKUP_SREG, sreg);
        if let Some(d) = dreg {
            w.u32(NFTA_LOOKUP_DREG, d);
        }
        w.u32(NFTA_LOOKUP_SET_ID, set_id);
    });
}

/// `dynset add` of the key in `sreg` to `set`, with its own timeout. A full
/// set stops the rule.
pub(super) fn dynset_add(w: &mut Writer, set: &str, set_id: u32, sreg: u32, timeout_ms: u64) {
    const NFTA_DYNSET_SET_NAME: u16 = 1;
    const NFTA_DYNSET_SET_ID: u16 = 2;
    const NFTA_DYNSET_OP: u16 = 3;
    const NFTA_DYNSET_SREG_KEY: u16 = 4;
    const NFTA_DYNSET_TIMEOUT: u16 = 6;
    expr(w, "dynset", |w| {
        w.str(NFTA_DYNSET_SET_NAME, set);
        w.u32(NFTA_DYNSET_SET_ID, set_id);
        w.u32(NFTA_DYNSET_OP, libc::NFT_DYNSET_OP_ADD as u32);
        w.u32(NFTA_DYNSET_SREG_KEY, sreg);
        w.u64(NFTA_DYNSET_TIMEOUT, timeout_ms);
    });
}

/// NAT kinds.
#[derive(Debug, Clone, Copy)]
pub(super) enum Nat {
    Snat = libc::NFT_NAT_SNAT as isize,
    Dnat = libc::NFT_NAT_DNAT as isize,
}

/// `snat`/`dnat` to the address in `addr_reg` (and port in `port_reg`).
pub(super) fn nat(w: &mut Writer, kind: Nat, nfproto: u8, addr_reg: u32, port_reg: Option<u32>) {
    const NFTA_NAT_TYPE: u16 = 1;
    const NFTA_NAT_FAMILY: u16 = 2;
    const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
    const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
    const NFTA_NAT_FLAGS: u16 = 7;
    // `linux/netfilter/nf_nat.h`.
    const NF_NAT_RANGE_MAP_IPS: u32 = 1 << 0;
    const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 1 << 1;
    expr(w, "nat", |w| {
        w.u32(NFTA_NAT_TYPE, kind as u32);
        w.u32(NFTA_NAT_FAMILY, u32::from(nfproto));
        w.u32(NFTA_NAT_REG_ADDR_MIN, addr_reg);
        let mut flags = NF_NAT_RANGE_MAP_IPS;
        if let Some(p) = port_reg {
            w.u32(NFTA_NAT_REG_PROTO_MIN, p);
            flags |= NF_NAT_RANGE_PROTO_SPECIFIED;
        }
        w.u32(NFTA_NAT_FLAGS, flags);
    });
}

/// `log group <group> snaplen <snaplen>`: the packet's first bytes to an
/// nfnetlink_log group.
pub(super) fn log_group(w: &mut Writer, group: u16, snaplen: u32) {
    const NFTA_LOG_GROUP: u16 = 1;
    const NFTA_LOG_SNAPLEN: u16 = 3;
    expr(w, "log", |w| {
        w.bytes(NFTA_LOG_GROUP, &group.to_be_bytes());
        w.u32(NFTA_LOG_SNAPLEN, snaplen);
    });
}

/// An immediate `drop` verdict.
pub(super) fn drop_verdict(w: &mut Writer) {
    const NFTA_IMMEDIATE_DREG: u16 = 1;
    const NFTA_IMMEDIATE_DATA: u16 = 2;
    expr(w, "immediate", |w| {
        w.u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
        w.nested(NFTA_IMMEDIATE_DATA, |w| {
            w.nested(NFTA_DATA_VERDICT, |w| {
                w.u32(NFTA_VERDICT_CODE, libc::NF_DROP as u32)
            });
        });
    });
}

/// `reject with tcp reset`: the packet is dropped and its sender gets a
/// reset (attached to the packet's conntrack entry, so it is translated
/// back like the connection's own packets).
pub(super) fn reject_tcp_reset(w: &mut Writer) {
    const NFTA_REJECT_TYPE: u16 = 1;
    const NFTA_REJECT_ICMP_CODE: u16 = 2;
    expr(w, "reject", |w| {
        w.u32(NFTA_REJECT_TYPE, libc::NFT_REJECT_TCP_RST as u32);
        // Unused for a reset.
        w.bytes(NFTA_REJECT_ICMP_CODE, &[0]);
    });
}

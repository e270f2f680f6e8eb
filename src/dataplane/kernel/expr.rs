//! nf_tables expressions, written as netlink attributes.
//!
//! Each function appends one `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA }`
//! to a rule's expression list. Attribute numbers are those of
//! `linux/netfilter/nf_tables.h`.

use super::netlink::Writer;

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
pub(super) const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;

/// Registers in 32-bit units: `NFT_REG32_00` is the first word after the
/// verdict, and a key of several fields takes consecutive words.
pub(super) const REG32_00: u32 = 8;
/// A scratch register far from any key (keys use at most 9 words).
pub(super) const REG_SCRATCH: u32 = REG32_00 + 12;
const NFT_REG_VERDICT: u32 = 0;

/// Where a payload load starts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Base {
    Network = 1,
    Transport = 2,
}

/// `meta` keys used here.
#[derive(Debug, Clone, Copy)]
pub(super) enum MetaKey {
    NfProto = 15,
    L4Proto = 16,
}

/// `ct` keys used here.
#[derive(Debug, Clone, Copy)]
pub(super) enum CtKey {
    State = 0,
    Mark = 3,
    ProtoDst = 12,
    SrcIp = 19,
    DstIp = 20,
    SrcIp6 = 21,
    DstIp6 = 22,
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
    expr_body(w, "limit", |w| {
        w.u64(1, 1); // NFTA_LIMIT_RATE
        w.u64(2, WEEK_SECS); // NFTA_LIMIT_UNIT (seconds)
        w.u32(3, 1); // NFTA_LIMIT_BURST
        w.u32(4, 0); // NFTA_LIMIT_TYPE: NFT_LIMIT_PKTS
        w.u32(5, 0); // NFTA_LIMIT_FLAGS: not inverted, break when over
    });
}

fn data(w: &mut Writer, ty: u16, value: &[u8]) {
    w.nested(ty, |w| w.bytes(NFTA_DATA_VALUE, value));
}

/// `meta <key>` into `dreg`.
pub(super) fn meta(w: &mut Writer, key: MetaKey, dreg: u32) {
    expr(w, "meta", |w| {
        w.u32(1, dreg); // NFTA_META_DREG
        w.u32(2, key as u32); // NFTA_META_KEY
    });
}

/// `payload` load of `len` bytes at `offset` from `base` into `dreg`.
pub(super) fn payload(w: &mut Writer, base: Base, offset: u32, len: u32, dreg: u32) {
    expr(w, "payload", |w| {
        w.u32(1, dreg); // NFTA_PAYLOAD_DREG
        w.u32(2, base as u32); // NFTA_PAYLOAD_BASE
        w.u32(3, offset); // NFTA_PAYLOAD_OFFSET
        w.u32(4, len); // NFTA_PAYLOAD_LEN
    });
}

/// Comparison operators.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cmp {
    Eq = 0,
    Neq = 1,
}

/// `cmp` of `sreg` against `value`; the rule stops here when false.
pub(super) fn cmp(w: &mut Writer, sreg: u32, op: Cmp, value: &[u8]) {
    expr(w, "cmp", |w| {
        w.u32(1, sreg); // NFTA_CMP_SREG
        w.u32(2, op as u32); // NFTA_CMP_OP
        data(w, 3, value); // NFTA_CMP_DATA
    });
}

/// `reg = (reg & mask) ^ xor`, over `mask.len()` bytes.
pub(super) fn bitwise(w: &mut Writer, reg: u32, mask: &[u8], xor: &[u8]) {
    expr(w, "bitwise", |w| {
        w.u32(1, reg); // NFTA_BITWISE_SREG
        w.u32(2, reg); // NFTA_BITWISE_DREG
        w.u32(3, mask.len() as u32); // NFTA_BITWISE_LEN
        data(w, 4, mask); // NFTA_BITWISE_MASK
        data(w, 5, xor); // NFTA_BITWISE_XOR
    });
}

/// `ct <key>` (original direction for directional keys) into `dreg`.
pub(super) fn ct_get(w: &mut Writer, key: CtKey, dreg: u32) {
    expr(w, "ct", |w| {
        w.u32(1, dreg); // NFTA_CT_DREG
        w.u32(2, key as u32); // NFTA_CT_KEY
        if matches!(
            key,
            CtKey::ProtoDst | CtKey::SrcIp | CtKey::DstIp | CtKey::SrcIp6 | CtKey::DstIp6
        ) {
            w.bytes(3, &[0]); // NFTA_CT_DIRECTION: IP_CT_DIR_ORIGINAL
        }
    });
}

/// `ct mark set` from `sreg`.
pub(super) fn ct_set_mark(w: &mut Writer, sreg: u32) {
    expr(w, "ct", |w| {
        w.u32(2, CtKey::Mark as u32); // NFTA_CT_KEY
        w.u32(4, sreg); // NFTA_CT_SREG
    });
}

/// `lookup` of `sreg` in `set`; with `dreg`, a map lookup that loads the
/// element's data. No match stops the rule.
pub(super) fn lookup(w: &mut Writer, set: &str, set_id: u32, sreg: u32, dreg: Option<u32>) {
    expr(w, "lookup", |w| {
        w.str(1, set); // NFTA_LOOKUP_SET
        w.u32(2, sreg); // NFTA_LOOKUP_SREG
        if let Some(d) = dreg {
            w.u32(3, d); // NFTA_LOOKUP_DREG
        }
        w.u32(4, set_id); // NFTA_LOOKUP_SET_ID
    });
}

/// `dynset add` of the key in `sreg` to `set`, with its own timeout. A full
/// set stops the rule.
pub(super) fn dynset_add(w: &mut Writer, set: &str, set_id: u32, sreg: u32, timeout_ms: u64) {
    expr(w, "dynset", |w| {
        w.str(1, set); // NFTA_DYNSET_SET_NAME
        w.u32(2, set_id); // NFTA_DYNSET_SET_ID
        w.u32(3, 0); // NFTA_DYNSET_OP: NFT_DYNSET_OP_ADD
        w.u32(4, sreg); // NFTA_DYNSET_SREG_KEY
        w.u64(6, timeout_ms); // NFTA_DYNSET_TIMEOUT
    });
}

/// NAT kinds.
#[derive(Debug, Clone, Copy)]
pub(super) enum Nat {
    Snat = 0,
    Dnat = 1,
}

/// `snat`/`dnat` to the address in `addr_reg` (and port in `port_reg`).
pub(super) fn nat(w: &mut Writer, kind: Nat, nfproto: u8, addr_reg: u32, port_reg: Option<u32>) {
    expr(w, "nat", |w| {
        w.u32(1, kind as u32); // NFTA_NAT_TYPE
        w.u32(2, u32::from(nfproto)); // NFTA_NAT_FAMILY
        w.u32(3, addr_reg); // NFTA_NAT_REG_ADDR_MIN
        let mut flags = 1; // NF_NAT_RANGE_MAP_IPS
        if let Some(p) = port_reg {
            w.u32(5, p); // NFTA_NAT_REG_PROTO_MIN
            flags |= 2; // NF_NAT_RANGE_PROTO_SPECIFIED
        }
        w.u32(7, flags); // NFTA_NAT_FLAGS
    });
}

/// `log group <group> snaplen <snaplen>`: the packet's first bytes to an
/// nfnetlink_log group.
pub(super) fn log_group(w: &mut Writer, group: u16, snaplen: u32) {
    expr(w, "log", |w| {
        w.bytes(1, &group.to_be_bytes()); // NFTA_LOG_GROUP
        w.u32(3, snaplen); // NFTA_LOG_SNAPLEN
    });
}

/// An immediate `drop` verdict.
pub(super) fn drop_verdict(w: &mut Writer) {
    expr(w, "immediate", |w| {
        w.u32(1, NFT_REG_VERDICT); // NFTA_IMMEDIATE_DREG
        w.nested(2, |w| {
            // NFTA_IMMEDIATE_DATA
            w.nested(NFTA_DATA_VERDICT, |w| w.u32(NFTA_VERDICT_CODE, 0)); // NF_DROP
        });
    });
}

/// `reject with tcp reset`: the packet is dropped and its sender gets a
/// reset (attached to the packet's conntrack entry, so it is translated
/// back like the connection's own packets).
pub(super) fn reject_tcp_reset(w: &mut Writer) {
    expr(w, "reject", |w| {
        w.u32(1, 1); // NFTA_REJECT_TYPE: NFT_REJECT_TCP_RST
        w.bytes(2, &[0]); // NFTA_REJECT_ICMP_CODE (unused for a reset)
    });
}

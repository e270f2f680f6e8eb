//! The sets of ftpalg's table (see `ruleset` for what each holds and the
//! rules that use them): their key and data types, and the message that
//! makes one. A family's sets are named by kind and family (`pin4`).

use super::expr::{self, REG32_00};
use super::layout::{Layout, NFPROTO_INET};
use super::netlink::{Batch, NLM_F_CREATE, NLM_F_EXCL};
use std::net::IpAddr;

const NFPROTO_IPV4: u8 = libc::NFPROTO_IPV4 as u8;
const NFPROTO_IPV6: u8 = libc::NFPROTO_IPV6 as u8;
pub(super) const NFT_MSG_NEWSET: u16 = libc::NFT_MSG_NEWSET as u16;

const NFT_SET_MAP: u32 = libc::NFT_SET_MAP as u32;
const NFT_SET_TIMEOUT: u32 = libc::NFT_SET_TIMEOUT as u32;
const NFT_SET_EVAL: u32 = libc::NFT_SET_EVAL as u32;
// From here on, `linux/netfilter/nf_tables.h` numbers libc does not carry.
const NFT_SET_CONCAT: u32 = 0x80;

const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_EXPR: u16 = 17;
const NFTA_SET_DESC_SIZE: u16 = 1;
const NFTA_SET_DESC_CONCAT: u16 = 2;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_FIELD_LEN: u16 = 1;

/// nft's datatype numbers, so `nft list table` prints the sets readably.
const TYPE_IPV4: u32 = 7;
const TYPE_IPV6: u32 = 8;
const TYPE_SERVICE: u32 = 13;
const TYPE_BITS: u32 = 6;

/// IPv4 or IPv6 half of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fam {
    V4,
    V6,
}

impl Fam {
    pub fn of(ip: IpAddr) -> Fam {
        if ip.is_ipv4() {
            Fam::V4
        } else {
            Fam::V6
        }
    }
    pub(super) fn nfproto(self) -> u8 {
        match self {
            Fam::V4 => NFPROTO_IPV4,
            Fam::V6 => NFPROTO_IPV6,
        }
    }
    pub(super) fn addr_len(self) -> u32 {
        match self {
            Fam::V4 => 4,
            Fam::V6 => 16,
        }
    }
    pub(super) fn addr_type(self) -> u32 {
        match self {
            Fam::V4 => TYPE_IPV4,
            Fam::V6 => TYPE_IPV6,
        }
    }
    pub(super) fn suffix(self) -> &'static str {
        match self {
            Fam::V4 => "4",
            Fam::V6 => "6",
        }
    }
    /// Offsets of saddr and daddr in the network header.
    pub(super) fn addr_offsets(self) -> (u32, u32) {
        match self {
            Fam::V4 => (12, 16),
            Fam::V6 => (8, 24),
        }
    }
    /// Registers (32-bit units) of the key fields peer, gateway, port.
    pub(super) fn key_regs(self) -> (u32, u32, u32) {
        let w = self.addr_len() / 4;
        (REG32_00, REG32_00 + w, REG32_00 + 2 * w)
    }
}

/// The sets of one family.
#[derive(Debug, Clone, Copy)]
pub(super) enum SetKind {
    Pin,
    Fwd,
    Snat,
    Guard,
    Spent,
}

impl SetKind {
    pub const ALL: [SetKind; 5] = [
        SetKind::Pin,
        SetKind::Fwd,
        SetKind::Snat,
        SetKind::Guard,
        SetKind::Spent,
    ];

    pub(super) fn name(self, fam: Fam) -> String {
        let base = match self {
            SetKind::Pin => "pin",
            SetKind::Fwd => "fwd",
            SetKind::Snat => "snat",
            SetKind::Guard => "guard",
            SetKind::Spent => "spent",
        };
        format!("{base}{}", fam.suffix())
    }

    /// Transaction-unique id, so rules can name sets made in the same batch.
    pub(super) fn id(self, fam: Fam) -> u32 {
        let f = if fam == Fam::V4 { 0 } else { 5 };
        1 + f + self as u32
    }
}

fn concat_type(types: &[u32]) -> u32 {
    types.iter().fold(0, |acc, t| (acc << TYPE_BITS) | t)
}

/// What the kernel needs to know about one set.
struct SetSpec {
    flags: u32,
    /// (length in bytes, nft datatype) of each key field.
    key: Vec<(u32, u32)>,
    /// (nft datatype, length) of a map's data.
    data: Option<(u32, u32)>,
}

impl SetSpec {
    pub(super) fn of(kind: SetKind, fam: Fam) -> SetSpec {
        let addr = (fam.addr_len(), fam.addr_type());
        let port = (2, TYPE_SERVICE);
        let base = NFT_SET_TIMEOUT | NFT_SET_CONCAT;
        let (flags, key, data) = match kind {
            SetKind::Pin => (base | NFT_SET_EVAL, vec![addr, addr, port], None),
            SetKind::Fwd => (
                base | NFT_SET_MAP,
                vec![addr, addr, port],
                Some((
                    concat_type(&[fam.addr_type(), TYPE_SERVICE]),
                    fam.addr_len() + 4,
                )),
            ),
            SetKind::Snat => (
                base | NFT_SET_MAP,
                vec![addr, addr, port],
                Some((fam.addr_type(), fam.addr_len())),
            ),
            SetKind::Guard => (base, vec![addr, port], None),
            SetKind::Spent => (base | NFT_SET_EVAL, vec![addr, addr, port], None),
        };
        SetSpec { flags, key, data }
    }
}

pub(super) fn set_message(b: &mut Batch, l: &Layout, kind: SetKind, fam: Fam) {
    let spec = SetSpec::of(kind, fam);
    let (flags, data) = (spec.flags, spec.data);
    let key_fields: Vec<u32> = spec.key.iter().map(|(len, _)| *len).collect();
    let key_types: Vec<u32> = spec.key.iter().map(|(_, ty)| *ty).collect();
    let key_len: u32 = key_fields.iter().map(|f| (f + 3) & !3).sum();
    b.add(
        NFT_MSG_NEWSET,
        NFPROTO_INET,
        NLM_F_CREATE | NLM_F_EXCL,
        |w| {
            w.str(NFTA_SET_TABLE, &l.table);
            w.str(NFTA_SET_NAME, &kind.name(fam));
            w.u32(NFTA_SET_FLAGS, flags);
            w.u32(NFTA_SET_KEY_TYPE, concat_type(&key_types));
            w.u32(NFTA_SET_KEY_LEN, key_len);
            if let Some((ty, len)) = data {
                w.u32(NFTA_SET_DATA_TYPE, ty);
                w.u32(NFTA_SET_DATA_LEN, len);
            }
            w.nested(NFTA_SET_DESC, |w| {
                w.u32(NFTA_SET_DESC_SIZE, l.size);
                w.nested(NFTA_SET_DESC_CONCAT, |w| {
                    for f in &key_fields {
                        w.nested(NFTA_LIST_ELEM, |w| w.u32(NFTA_SET_FIELD_LEN, *f));
                    }
                });
            });
            w.u32(NFTA_SET_ID, kind.id(fam));
            if matches!(kind, SetKind::Spent) {
                // Every element, added by ftpalg or by the packet path,
                // carries its own one-use token: admission is one atomic
                // step in the kernel (see `ruleset`).
                w.nested(NFTA_SET_EXPR, expr::admit_once);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_types_follow_nft_concat_encoding() {
        // nft prints `ipv4_addr . ipv4_addr . inet_service` for this number.
        assert_eq!(
            concat_type(&[TYPE_IPV4, TYPE_IPV4, TYPE_SERVICE]),
            (7 << 12) | (7 << 6) | 13
        );
        assert_eq!(SetKind::Spent.id(Fam::V6), 10);
        assert_eq!(SetKind::Pin.id(Fam::V4), 1);
    }
}

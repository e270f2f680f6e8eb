//! `data.kernel`: the kernel data path's table, conntrack mark and mask,
//! and nflog group, checked as `KernelDataPlane::open` would refuse them,
//! and before: a mark of 0 would make the operator's accept line accept
//! every connection.

use super::super::schema::RawKernel;
use super::super::{DataPath, KernelSettings};
use super::context::Ctx;
use serde_saphyr::Spanned;

/// Table names that the shipped nftables files give their own tables: the
/// kernel path replaces its table at start, so it must be none of them.
const TAKEN_TABLES: &[&str] = &["ftpalg", "ftpalg_tproxy"];

pub(super) fn compile_kernel(
    cx: &mut Ctx,
    raw: Option<&Spanned<RawKernel>>,
    path: DataPath,
) -> KernelSettings {
    let mut k = KernelSettings::default();
    let Some(raw) = raw else {
        return k;
    };
    if path == DataPath::Relay {
        cx.warn(
            raw,
            "data.kernel is read by the kernel data path only, and data.path is relay".into(),
            "set data.path: kernel or auto, or leave data.kernel out",
        );
    }
    let raw = &raw.value;
    if let Some(t) = &raw.table {
        let name = t.value.trim();
        if !valid_table(name) {
            cx.error(
                t,
                format!("data.kernel.table '{name}' is not an nftables name"),
                "1 to 255 letters, digits, _ . or -, starting with a letter or _",
            );
        } else if TAKEN_TABLES.contains(&name) {
            cx.error(
                t,
                format!("data.kernel.table '{name}' is the name the shipped nftables files give their own table, which ftpalg would replace at start"),
                "name a table nothing else uses; the default is ftpalg_data",
            );
        } else {
            k.table = name.to_string();
        }
    }
    let mask = number(cx, &raw.mark_mask, "mark_mask");
    let mark = number(cx, &raw.mark, "mark");
    k.mark_mask = mask.unwrap_or(k.mark_mask);
    k.mark = mark.unwrap_or(k.mark);
    // The two together, once both read (given, or the default), at the
    // one given: the mark if it is.
    let unread = |s: &Option<Spanned<String>>, n: Option<u32>| s.is_some() && n.is_none();
    if !unread(&raw.mark_mask, mask) && !unread(&raw.mark, mark) {
        if let Some(at) = raw.mark.as_ref().or(raw.mark_mask.as_ref()) {
            check_mark(cx, at, k.mark, k.mark_mask);
        }
    }
    if let Some(g) = &raw.log_group {
        let v = g.value.trim();
        if v == "off" {
            k.log_group = None;
        } else {
            match parse_u32(v).and_then(|n| u16::try_from(n).ok()) {
                Some(n) => k.log_group = Some(n),
                None => cx.error(
                    g,
                    format!("data.kernel.log_group '{v}' is not a group from 0 to 65535 or off"),
                    "name an nflog group no other logger binds (the default is 18004), or off for no log of strangers",
                ),
            }
        }
    }
    k
}

/// The checks `KernelDataPlane::open` makes of the mark, here at the key.
fn check_mark(cx: &mut Ctx, at: &Spanned<String>, mark: u32, mask: u32) {
    let lowest = mask & mask.wrapping_neg();
    if mark == 0 {
        cx.error(
            at,
            "data.kernel.mark must not be 0: every unmarked connection has mark 0".into(),
            "pick a mark no other rule of the gateway sets, e.g. 0x46540000 under 0xffff0000",
        );
    } else if mark & !mask != 0 {
        cx.error(
            at,
            format!("data.kernel.mark {mark:#010x} has bits outside mark_mask {mask:#010x}"),
            "the mark must lie within the mask: ftpalg keeps the other bits as it finds them",
        );
    } else if mark == lowest {
        cx.error(
            at,
            format!("data.kernel.mark {mark:#010x} is the lowest bit of mark_mask {mask:#010x}: the cut mark, which flips that bit, would be 0"),
            "set another bit of the mask in the mark, or widen the mask",
        );
    }
}

/// A 32-bit number, decimal or 0x hex; reports one that is not.
fn number(cx: &mut Ctx, s: &Option<Spanned<String>>, key: &str) -> Option<u32> {
    let s = s.as_ref()?;
    let v = s.value.trim();
    let n = parse_u32(v);
    if n.is_none() {
        cx.error(
            s,
            format!("data.kernel.{key} '{v}' is not a 32-bit number"),
            "write it in hex as the accept line shows it, e.g. 0x46540000, or in decimal",
        );
    }
    n
}

fn parse_u32(v: &str) -> Option<u32> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// An nftables identifier: a letter or `_`, then letters, digits, `_`,
/// `.` or `-`, at most 255 bytes (the kernel's NFT_NAME_MAXLEN less the
/// terminating NUL).
fn valid_table(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 255
}

//! The parameters that shape ftpalg's table, which every message about it
//! names: a leaf the table's rules, sets and elements all read.

/// `NFPROTO_INET`: the table's family, both IPv4 and IPv6.
pub(super) const NFPROTO_INET: u8 = libc::NFPROTO_INET as u8;

/// The parameters that shape the table.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub table: String,
    pub mark: u32,
    pub mask: u32,
    /// The mark (under `mask`) of a connection that has been cut.
    pub cut: u32,
    pub size: u32,
    pub owner: bool,
    /// The nfnetlink_log group the `guard` chain logs what it drops to.
    pub log_group: Option<u16>,
}

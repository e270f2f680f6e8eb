//! The kernel data path's settings: ftpalg's table, the conntrack mark the
//! operator's chains accept, and the bounds of the sets and of every wait.

use std::time::Duration;

/// How the kernel data path is set up. `table`, `mark`, `mark_mask` and
/// `log_group` are the operator's, from the rules' `data.kernel`
/// (`crate::rules::KernelSettings`, whose defaults are these); the rest
/// is ftpalg's own.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    /// Name of ftpalg's table in the `inet` family. It must not be a
    /// table anything else uses: it is replaced at start.
    pub table: String,
    /// The conntrack mark (under `mark_mask`) set on every admitted flow;
    /// the operator's default-drop chains accept it.
    pub mark: u32,
    /// The mark bits ftpalg owns; others are kept.
    pub mark_mask: u32,
    /// Most pinholes live at once, per address family (the sets' size).
    pub max_pinholes: u32,
    /// Bind the table to this process's netlink socket: the kernel
    /// deletes it when the process dies, and no other process can change
    /// it (Linux 5.12+).
    pub owner: bool,
    /// Bound on every wait for the kernel.
    pub netlink_timeout: Duration,
    /// The nfnetlink_log group through which the kernel tells ftpalg who
    /// it turned away at a pinhole's port; `None` for no such log.
    pub log_group: Option<u16>,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            table: "ftpalg_data".into(),
            mark: 0x4654_0000,
            mark_mask: 0xffff_0000,
            max_pinholes: 4096,
            owner: true,
            netlink_timeout: Duration::from_secs(2),
            // "FT": a group no common logger uses by default.
            log_group: Some(0x4654),
        }
    }
}

impl KernelConfig {
    /// The mark (under `mark_mask`) of a forwarded connection that has
    /// been cut: `mark` with the lowest bit of the mask flipped, so the
    /// operator's accept line no longer matches it and ftpalg's `cut`
    /// chain resets it.
    pub fn cut_mark(&self) -> u32 {
        self.mark ^ (self.mark_mask & self.mark_mask.wrapping_neg())
    }

    /// The accept line for the operator's default-drop chains.
    pub fn accept_rule(&self) -> String {
        format!(
            "ct mark and {:#010x} == {:#010x} accept",
            self.mark_mask, self.mark
        )
    }
}

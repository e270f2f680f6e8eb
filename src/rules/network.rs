//! Named sets of networks.

use ipnet::IpNet;
use std::net::IpAddr;

/// Built-in network names, usable without defining them.
pub const BUILTIN: &[(&str, &[&str])] = &[
    ("any", &["0.0.0.0/0", "::/0"]),
    ("loopback", &["127.0.0.0/8", "::1/128"]),
    (
        "private",
        &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
    ),
    // RFC 6598 shared address space: what carrier-grade NAT hands out.
    ("cgnat", &["100.64.0.0/10"]),
    (
        "not-routable",
        &[
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "0.0.0.0/8",
            "fc00::/7",
            "fe80::/10",
            "::1/128",
        ],
    ),
];

/// A set of networks with a name for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSet {
    /// What the operator called it (a network name or a literal CIDR).
    pub label: String,
    /// Its networks.
    pub nets: Vec<IpNet>,
}

impl NetSet {
    /// Whether `ip` is inside any of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether every network of `other` lies inside one of ours.
    pub fn covers(&self, other: &NetSet) -> bool {
        other
            .nets
            .iter()
            .all(|o| self.nets.iter().any(|n| n.contains(o)))
    }
}

/// Parses a CIDR, or a bare address as a host route.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

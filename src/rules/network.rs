//! Named sets of networks: the built-in names, and what a set holds.

use ipnet::IpNet;
use std::net::IpAddr;

/// A network name every rules file may use without defining it.
#[derive(Debug)]
pub struct Builtin {
    /// The name.
    pub name: &'static str,
    /// Its parts: a network and the networks taken out of it.
    pub parts: &'static [(&'static str, &'static [&'static str])],
    /// What it is, for the manual.
    pub about: &'static str,
}

/// IPv4 networks that are not reachable across the internet (IANA's
/// special-purpose address registry): this network, RFC 1918, CGNAT
/// (RFC 6598), loopback, link-local, IETF protocol assignments, the three
/// documentation ranges (RFC 5737), the deprecated 6to4 relay anycast,
/// benchmarking (RFC 2544), multicast, and the reserved 240/4 with the
/// broadcast address.
const NOT_ROUTABLE_V4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// The global unicast space of IPv6 (everything outside it, the
/// unspecified address, loopback, IPv4-mapped, NAT64, ULA, link-local and
/// multicast among them, is not routable), and the parts of it that are
/// not routable either: IETF protocol assignments (Teredo, benchmarking,
/// ORCHID), documentation (2001:db8::/32, RFC 3849, and 3fff::/20, RFC
/// 9637), 6to4 (which carries IPv4 addresses, private ones included), and
/// SRv6 segment identifiers.
const GLOBAL_V6: &str = "2000::/3";
const NOT_ROUTABLE_IN_GLOBAL_V6: &[&str] = &[
    "2001::/23",
    "2001:db8::/32",
    "2002::/16",
    "3fff::/20",
    "5f00::/16",
];

/// The not-routable networks one part each, for `not-routable`.
const NOT_ROUTABLE: &[(&str, &[&str])] = &[
    ("0.0.0.0/8", &[]),
    ("10.0.0.0/8", &[]),
    ("100.64.0.0/10", &[]),
    ("127.0.0.0/8", &[]),
    ("169.254.0.0/16", &[]),
    ("172.16.0.0/12", &[]),
    ("192.0.0.0/24", &[]),
    ("192.0.2.0/24", &[]),
    ("192.88.99.0/24", &[]),
    ("192.168.0.0/16", &[]),
    ("198.18.0.0/15", &[]),
    ("198.51.100.0/24", &[]),
    ("203.0.113.0/24", &[]),
    ("224.0.0.0/4", &[]),
    ("240.0.0.0/4", &[]),
    ("::/0", &[GLOBAL_V6]),
    ("2001::/23", &[]),
    ("2001:db8::/32", &[]),
    ("2002::/16", &[]),
    ("3fff::/20", &[]),
    ("5f00::/16", &[]),
];

/// The built-in network names.
pub const BUILTIN: &[Builtin] = &[
    Builtin {
        name: "any",
        parts: &[("0.0.0.0/0", &[]), ("::/0", &[])],
        about: "every address",
    },
    Builtin {
        name: "loopback",
        parts: &[("127.0.0.0/8", &[]), ("::1/128", &[])],
        about: "127.0.0.0/8 and ::1",
    },
    Builtin {
        name: "private",
        parts: &[
            ("10.0.0.0/8", &[]),
            ("172.16.0.0/12", &[]),
            ("192.168.0.0/16", &[]),
            ("fc00::/7", &[]),
        ],
        about: "RFC 1918 and IPv6 unique local addresses (fc00::/7)",
    },
    Builtin {
        name: "cgnat",
        parts: &[("100.64.0.0/10", &[])],
        about: "100.64.0.0/10, the shared address space carrier-grade NAT hands out (RFC 6598)",
    },
    Builtin {
        name: "routable",
        parts: &[
            ("0.0.0.0/0", NOT_ROUTABLE_V4),
            (GLOBAL_V6, NOT_ROUTABLE_IN_GLOBAL_V6),
        ],
        about: "every address that may be reached across the internet: not private, CGNAT, loopback, link-local, documentation (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32, 3fff::/20), benchmarking, multicast, unspecified or reserved; in IPv6 only global unicast (2000::/3) is",
    },
    Builtin {
        name: "not-routable",
        parts: NOT_ROUTABLE,
        about: "exactly the addresses routable leaves out",
    },
];

/// One part of a [`NetSet`]: a network, less the networks in `except`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The network.
    pub net: IpNet,
    /// Networks taken out of it.
    pub except: Vec<IpNet>,
}

impl Part {
    /// A whole network.
    pub fn whole(net: IpNet) -> Part {
        Part {
            net,
            except: Vec::new(),
        }
    }

    fn contains(&self, ip: &IpAddr) -> bool {
        self.net.contains(ip) && !self.except.iter().any(|e| e.contains(ip))
    }

    /// Whether every address of `other` is in this part. Conservative: a
    /// part that only several of ours cover together is not covered.
    fn covers(&self, other: &Part) -> bool {
        self.net.contains(&other.net)
            && self.except.iter().all(|e| {
                // The addresses both nets hold: the smaller of the two, as
                // two CIDRs either nest or do not meet.
                let both = match (e.contains(&other.net), other.net.contains(e)) {
                    (true, _) => other.net,
                    (_, true) => *e,
                    _ => return true,
                };
                other.except.iter().any(|x| x.contains(&both))
            })
    }
}

/// A set of networks with a name for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSet {
    /// What the operator called it (a network name or a literal CIDR).
    pub label: String,
    /// Its parts; an address in any of them is in the set.
    pub parts: Vec<Part>,
}

impl NetSet {
    /// A built-in network by name.
    pub fn builtin(name: &str) -> Option<NetSet> {
        let b = BUILTIN.iter().find(|b| b.name == name)?;
        Some(NetSet {
            label: b.name.to_string(),
            parts: b
                .parts
                .iter()
                .filter_map(|(net, except)| {
                    Some(Part {
                        net: parse_net(net)?,
                        except: except.iter().filter_map(|e| parse_net(e)).collect(),
                    })
                })
                .collect(),
        })
    }

    /// Whether `ip` is inside the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.parts.iter().any(|p| p.contains(&ip))
    }

    /// Whether every address of `other` is in this set.
    pub fn covers(&self, other: &NetSet) -> bool {
        other
            .parts
            .iter()
            .all(|o| self.parts.iter().any(|p| p.covers(o)))
    }

    /// Whether some part has networks taken out of it.
    pub fn has_exceptions(&self) -> bool {
        self.parts.iter().any(|p| !p.except.is_empty())
    }
}

/// Parses a CIDR, or a bare address as a host route.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str) -> NetSet {
        NetSet::builtin(name).unwrap()
    }

    #[test]
    fn every_builtin_parses() {
        for b in BUILTIN {
            let s = set(b.name);
            assert_eq!(s.parts.len(), b.parts.len(), "{}", b.name);
            for (p, (_, except)) in s.parts.iter().zip(b.parts) {
                assert_eq!(p.except.len(), except.len(), "{}", b.name);
            }
        }
    }

    #[test]
    fn the_lab_ranges_and_every_special_range_are_not_routable() {
        let (routable, not) = (set("routable"), set("not-routable"));
        for ip in [
            "100.64.0.2",
            "198.51.100.10",
            "203.0.113.10",
            "192.0.2.1",
            "2001:db8::1",
            "2001:db8:2::10",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "3fff::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!routable.contains(ip), "{ip} routable");
            assert!(not.contains(ip), "{ip} not in not-routable");
        }
    }

    /// Around each excluded block: the address just outside it is
    /// routable unless another block holds it; so the two names split the
    /// whole address space, with no address in both or in neither.
    #[test]
    fn routable_and_not_routable_split_the_address_space() {
        let (routable, not) = (set("routable"), set("not-routable"));
        let mut edges: Vec<IpAddr> = Vec::new();
        for b in [routable.clone(), not.clone()] {
            for p in &b.parts {
                for n in std::iter::once(&p.net).chain(&p.except) {
                    edges.push(n.network());
                    edges.push(n.broadcast());
                    if let Some(before) = step(n.network(), false) {
                        edges.push(before);
                    }
                    if let Some(after) = step(n.broadcast(), true) {
                        edges.push(after);
                    }
                }
            }
        }
        assert!(edges.len() > 100);
        let mut seen_routable = 0;
        for ip in edges {
            assert_ne!(routable.contains(ip), not.contains(ip), "{ip}");
            seen_routable += usize::from(routable.contains(ip));
        }
        // The neighbours of the excluded blocks include routable ones:
        // the test can tell the two apart.
        assert!(seen_routable > 10, "{seen_routable}");
    }

    fn step(ip: IpAddr, up: bool) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(a) => {
                let n = u32::from(a);
                let n = if up {
                    n.checked_add(1)?
                } else {
                    n.checked_sub(1)?
                };
                Some(IpAddr::V4(n.into()))
            }
            IpAddr::V6(a) => {
                let n = u128::from(a);
                let n = if up {
                    n.checked_add(1)?
                } else {
                    n.checked_sub(1)?
                };
                Some(IpAddr::V6(n.into()))
            }
        }
    }

    #[test]
    fn a_set_with_exceptions_covers_only_what_it_holds() {
        let routable = set("routable");
        let net = |s: &str| NetSet {
            label: s.into(),
            parts: vec![Part::whole(parse_net(s).unwrap())],
        };
        assert!(!routable.covers(&net("198.51.100.0/24")));
        assert!(!routable.covers(&net("0.0.0.0/0")));
        assert!(set("any").covers(&routable));
        assert!(routable.covers(&routable));
        assert!(!routable.covers(&set("any")));
        assert!(set("not-routable").covers(&net("203.0.113.0/24")));
        assert!(!set("not-routable").covers(&routable));
    }
}

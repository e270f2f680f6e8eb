//! The gateway's footprint from /proc: descriptors by kind, and RSS.

use std::collections::BTreeMap;
use std::fs;

/// One look at the gateway process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snap {
    pub fds: usize,
    pub pipes: usize,
    pub sockets: usize,
    pub rss_kib: u64,
    /// Socket inodes, to name what is left over.
    pub socket_inodes: Vec<u64>,
}

impl Snap {
    pub fn take(pid: u32) -> std::io::Result<Snap> {
        let mut s = Snap::default();
        for e in fs::read_dir(format!("/proc/{pid}/fd"))? {
            let Ok(target) = fs::read_link(e?.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            s.fds += 1;
            if t.starts_with("pipe:") {
                s.pipes += 1;
            } else if let Some(ino) = t.strip_prefix("socket:[") {
                s.sockets += 1;
                if let Ok(i) = ino.trim_end_matches(']').parse() {
                    s.socket_inodes.push(i);
                }
            }
        }
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        s.rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(s)
    }

    /// Same descriptors as `base`: count and kinds.
    pub fn fds_match(&self, base: &Snap) -> bool {
        self.fds == base.fds && self.pipes == base.pipes && self.sockets == base.sockets
    }

    pub fn show(&self) -> String {
        format!(
            "{} fds ({} sockets, {} pipes), RSS {} KiB",
            self.fds, self.sockets, self.pipes, self.rss_kib
        )
    }
}

const TCP_STATES: [&str; 12] = [
    "?",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
];

fn addr(hex: &str) -> String {
    let Some((ip, port)) = hex.split_once(':') else {
        return hex.to_string();
    };
    let port = u16::from_str_radix(port, 16).unwrap_or(0);
    match u32::from_str_radix(ip, 16) {
        Ok(v) if ip.len() == 8 => format!("{}:{port}", std::net::Ipv4Addr::from(v.swap_bytes())),
        _ => format!("[{ip}]:{port}"),
    }
}

/// The gateway's own TCP sockets that are not in `base`, as
/// `STATE local -> remote`, read from its network namespace's table.
pub fn extra_sockets(pid: u32, now: &Snap, base: &Snap) -> Vec<String> {
    let extra: Vec<u64> = now
        .socket_inodes
        .iter()
        .filter(|i| !base.socket_inodes.contains(i))
        .copied()
        .collect();
    let mut found = BTreeMap::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let Ok(ino) = f[9].parse::<u64>() else {
                continue;
            };
            if extra.contains(&ino) {
                let st = usize::from_str_radix(f[3], 16).unwrap_or(0);
                let name = TCP_STATES.get(st).copied().unwrap_or("?");
                found.insert(ino, format!("{name} {} -> {}", addr(f[1]), addr(f[2])));
            }
        }
    }
    extra
        .iter()
        .map(|i| {
            found.get(i).cloned().unwrap_or_else(|| {
                format!("socket {i}: not in the TCP tables (reset or closed by the peer)")
            })
        })
        .collect()
}

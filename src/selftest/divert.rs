//! A transparent listener takes only connections that nftables sent it
//! from elsewhere, and the operator's rules take those that arrive from
//! the clients' network, never the gateway's own. For its transfer, the
//! self-test adds a table of its own for as long as the test runs: in the
//! `output` hook, its own sockets (those carrying [`MARK`], and no
//! others) going to the server's port or to `client_ports` are sent to
//! the listener's address, as the operator's redirect sends the clients'.

use crate::rules::PortRange;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// The firewall mark on the self-test's sockets ("FTST").
pub(super) const MARK: u32 = 0x4654_5354;

/// The self-test's table, `inet ftpalg_selftest`.
const TABLE: &str = "ftpalg_selftest";

/// The table while it exists; dropping it deletes the table.
pub(super) struct Divert;

fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("nft: no stdin")?
        .write_all(script.as_bytes())
        .map_err(|e| format!("nft: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The table's text: marked connections to `server_port` go to
/// `listener`, those to `client_ports` to the same address, port kept.
fn script(listener: SocketAddr, server_port: u16, client_ports: PortRange) -> String {
    let (family, addr) = match listener {
        SocketAddr::V4(a) => ("ip", a.ip().to_string()),
        SocketAddr::V6(a) => ("ip6", format!("[{}]", a.ip())),
    };
    format!(
        "table inet {TABLE} {{\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    meta mark {MARK:#x} meta nfproto {nfproto} tcp dport {server_port} dnat {family} to {addr}:{port}\n    meta mark {MARK:#x} meta nfproto {nfproto} tcp dport {first}-{last} dnat {family} to {addr}\n  }}\n}}\n",
        nfproto = if listener.is_ipv4() { "ipv4" } else { "ipv6" },
        port = listener.port(),
        first = client_ports.first,
        last = client_ports.last,
    )
}

impl Divert {
    /// Adds the table (replacing one a killed self-test left).
    pub fn add(
        listener: SocketAddr,
        server_port: u16,
        client_ports: PortRange,
    ) -> Result<Divert, String> {
        let _ = nft(&format!("delete table inet {TABLE}\n"));
        nft(&script(listener, server_port, client_ports))?;
        Ok(Divert)
    }
}

impl Drop for Divert {
    fn drop(&mut self) {
        let _ = nft(&format!("delete table inet {TABLE}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_marked_sockets_of_the_listeners_family_are_sent_to_it() {
        let ports = PortRange {
            first: 40000,
            last: 40999,
        };
        let s = script("[2001:db8:1::1]:2100".parse().unwrap(), 21, ports);
        assert!(s.contains("meta mark 0x46545354 meta nfproto ipv6 tcp dport 21 dnat ip6 to [2001:db8:1::1]:2100\n"), "{s}");
        assert!(s.contains("meta mark 0x46545354 meta nfproto ipv6 tcp dport 40000-40999 dnat ip6 to [2001:db8:1::1]\n"), "{s}");
        let s = script("100.64.0.1:2100".parse().unwrap(), 2121, ports);
        assert!(
            s.contains("tcp dport 2121 dnat ip to 100.64.0.1:2100\n"),
            "{s}"
        );
        assert_eq!(s.matches("meta mark 0x46545354 ").count(), 2, "{s}");
    }
}

//! Deterministic file content and the names that carry it.
//!
//! A name says everything both ends need: direction, size, seed and the
//! faults to inject, so the server needs no state shared with the client
//! and every byte can be checked.

use sha2::{Digest, Sha256};

/// Fault injected by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFault {
    None,
    /// Drops the session's control and data connections mid-transfer, as a
    /// killed process does.
    Die,
    /// Resets the data connection mid-transfer, then answers 426.
    Rst,
    /// Stops moving data mid-transfer and waits to be reset.
    Stall,
}

/// Fault injected by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    None,
    /// Reads (or writes) at a slow, steady pace (320 KB/s).
    Slow,
    /// Reads at 64 KB/s: slow, but never silent for a second.
    VerySlow,
    /// Shuts down its sending direction of the data connection early.
    HalfClose,
    /// Resets the data connection mid-transfer.
    Rst,
    /// Closes all its sockets at once mid-transfer, as a killed process.
    Kill,
    /// Stops reading (downloads) or writing (uploads) mid-transfer, sockets open.
    Stall,
    /// Half-closes, then stops reading mid-download, sockets open.
    HalfStall,
}

impl ServerFault {
    pub fn tag(self) -> &'static str {
        match self {
            ServerFault::None => "none",
            ServerFault::Die => "sdie",
            ServerFault::Rst => "srst",
            ServerFault::Stall => "sstall",
        }
    }
    fn parse(s: &str) -> Option<ServerFault> {
        Some(match s {
            "none" => ServerFault::None,
            "sdie" => ServerFault::Die,
            "srst" => ServerFault::Rst,
            "sstall" => ServerFault::Stall,
            _ => return None,
        })
    }
}

impl ClientFault {
    pub fn tag(self) -> &'static str {
        match self {
            ClientFault::None => "none",
            ClientFault::Slow => "slow",
            ClientFault::VerySlow => "vslow",
            ClientFault::HalfClose => "hclose",
            ClientFault::Rst => "crst",
            ClientFault::Kill => "ckill",
            ClientFault::Stall => "cstall",
            ClientFault::HalfStall => "hstall",
        }
    }
    fn parse(s: &str) -> Option<ClientFault> {
        Some(match s {
            "none" => ClientFault::None,
            "slow" => ClientFault::Slow,
            "vslow" => ClientFault::VerySlow,
            "hclose" => ClientFault::HalfClose,
            "crst" => ClientFault::Rst,
            "ckill" => ClientFault::Kill,
            "cstall" => ClientFault::Stall,
            "hstall" => ClientFault::HalfStall,
            // The gateway is stopped under this transfer: for the server
            // it is a client that must not end an upload cleanly.
            "gwstop" => ClientFault::Slow,
            // A client process SIGKILLed from outside: the server must not
            // take its cut uploads for gateway faults.
            "sigkill" => ClientFault::Kill,
            _ => return None,
        })
    }
}

/// What a file name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub upload: bool,
    pub size: u64,
    pub seed: u64,
    pub server: ServerFault,
    pub client: ClientFault,
    /// The client's tag as written (`gwstop` is reported apart).
    pub client_tag: String,
}

impl Spec {
    /// `d-SIZE-SEED-SFAULT-CFAULT` (download) or `u-...` (upload).
    pub fn name(&self) -> String {
        format!(
            "{}-{}-{}-{}-{}",
            if self.upload { "u" } else { "d" },
            self.size,
            self.seed,
            self.server.tag(),
            self.client_tag
        )
    }

    /// Parses the last path component of a name.
    pub fn parse(path: &str) -> Option<Spec> {
        let base = path.rsplit('/').next()?;
        let mut it = base.split('-');
        let upload = match it.next()? {
            "u" => true,
            "d" => false,
            _ => return None,
        };
        let size = it.next()?.parse().ok()?;
        let seed = it.next()?.parse().ok()?;
        let server = it
            .next()
            .map_or(Some(ServerFault::None), ServerFault::parse)?;
        let client_tag = it.next().unwrap_or("none").to_string();
        let client = ClientFault::parse(&client_tag)?;
        Some(Spec {
            upload,
            size,
            seed,
            server,
            client,
            client_tag,
        })
    }

    /// Where a fault strikes: half way, so it is always mid-transfer.
    pub fn fault_at(&self) -> u64 {
        self.size / 2
    }
}

fn word(seed: u64, index: u64) -> u64 {
    // splitmix64: cheap, and every 8-byte word is independent of the others.
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with the content of file `seed` from byte `offset` on.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let (mut pos, mut i) = (offset, 0);
    while i < buf.len() {
        let w = word(seed, pos / 8).to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&w[start..start + n]);
        i += n;
        pos += n as u64;
    }
}

/// SHA-256 of the whole file, in lower-case hex.
pub fn sha256(size: u64, seed: u64) -> String {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        fill(seed, off, &mut buf[..n]);
        h.update(&buf[..n]);
        off += n as u64;
    }
    hex(&h.finalize())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let s = Spec {
            upload: true,
            size: 12345,
            seed: 7,
            server: ServerFault::Stall,
            client: ClientFault::HalfStall,
            client_tag: "hstall".into(),
        };
        assert_eq!(Spec::parse(&format!("so1/up/{}", s.name())), Some(s));
        assert_eq!(Spec::parse("x-1-2-none-none"), None);
    }

    #[test]
    fn content_is_positional() {
        let mut whole = vec![0u8; 100];
        fill(9, 0, &mut whole);
        let mut part = vec![0u8; 37];
        fill(9, 41, &mut part);
        assert_eq!(&whole[41..78], &part[..]);
        assert_ne!(sha256(100, 9), sha256(100, 10));
    }
}

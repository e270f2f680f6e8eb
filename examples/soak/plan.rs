//! What each transfer of the soak does: mode, direction, size and fault,
//! derived from the run's seed and the transfer's number. A session's
//! listener follows from the number of its first transfer; the transfers
//! after it take whatever numbers come next, so which listener a number
//! meets depends on timing, and a run is the same mix, not the same order.

use crate::content::{ClientFault, ServerFault, Spec};
use crate::net::Res;
use std::net::SocketAddr;

/// What is behind a gateway listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The soak's own server: injects server faults, reports uploads.
    Fault,
    /// The soak's own server, killed and restarted on a schedule.
    Victim,
    /// A real FTP server (files prepared by `gen`, uploads read from disk).
    Real,
}

/// A gateway listener to send sessions to.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub kind: Kind,
    pub addr: SocketAddr,
    pub weight: u32,
}

impl Target {
    /// `name,kind,addr:port,weight`.
    pub fn parse(s: &str) -> Res<Target> {
        let p: Vec<&str> = s.split(',').collect();
        if p.len() != 4 {
            return Err(format!("--target name,kind,addr,weight: {s}").into());
        }
        let kind = match p[1] {
            "fault" => Kind::Fault,
            "victim" => Kind::Victim,
            "real" => Kind::Real,
            k => return Err(format!("unknown target kind {k}").into()),
        };
        Ok(Target {
            name: p[0].to_string(),
            kind,
            addr: p[2].parse()?,
            weight: p[3].parse()?,
        })
    }
}

/// The client's data mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pasv,
    Epsv,
    Port,
    Eprt,
}

impl Mode {
    pub fn tag(self) -> &'static str {
        match self {
            Mode::Pasv => "PASV",
            Mode::Epsv => "EPSV",
            Mode::Port => "PORT",
            Mode::Eprt => "EPRT",
        }
    }
}

/// One transfer.
#[derive(Debug, Clone)]
pub struct Plan {
    pub index: u64,
    pub mode: Mode,
    pub spec: Spec,
    /// The path sent in RETR/STOR.
    pub path: String,
}

impl Plan {
    /// Whether anything is injected into this transfer.
    pub fn faulted(&self) -> bool {
        self.spec.server != ServerFault::None || self.spec.client != ClientFault::None
    }
    /// Whether it must succeed: no fault that breaks it.
    pub fn must_succeed(&self) -> bool {
        self.spec.server == ServerFault::None
            && matches!(
                self.spec.client,
                ClientFault::None
                    | ClientFault::Slow
                    | ClientFault::VerySlow
                    | ClientFault::HalfClose
            )
    }
}

/// Files the real server holds, prepared by `gen`: size, with seed = size + 1.
pub const REAL_FILES: [u64; 8] = [
    1, 100, 4096, 65_536, 300_000, 1_048_576, 2_500_000, 4_000_000,
];

/// splitmix64 over (seed, index, salt).
pub fn rnd(seed: u64, index: u64, salt: u64) -> u64 {
    let mut z =
        seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The target of the session that starts with transfer `index`.
pub fn pick_target(targets: &[Target], seed: u64, index: u64, warmup: bool) -> usize {
    // The warm-up leaves out the victim: its kills would only add noise
    // to the baseline.
    let usable = |t: &Target| !(warmup && t.kind == Kind::Victim);
    let total: u64 = targets
        .iter()
        .filter(|t| usable(t))
        .map(|t| u64::from(t.weight))
        .sum();
    let mut r = rnd(seed, index, 1) % total.max(1);
    for (i, t) in targets.iter().enumerate() {
        if !usable(t) {
            continue;
        }
        if r < u64::from(t.weight) {
            return i;
        }
        r -= u64::from(t.weight);
    }
    0
}

fn size(seed: u64, index: u64) -> u64 {
    let r = rnd(seed, index, 2);
    let x = rnd(seed, index, 3);
    match r % 100 {
        0..=34 => 1 + x % 4096,
        35..=69 => 4096 + x % (256 * 1024),
        70..=93 => 256 * 1024 + x % (768 * 1024),
        _ => 1024 * 1024 + x % (3 * 1024 * 1024),
    }
}

fn faults(seed: u64, index: u64, upload: bool) -> (ServerFault, ClientFault) {
    use ClientFault as C;
    use ServerFault as S;
    match rnd(seed, index, 4) % 100 {
        0..=49 => (S::None, C::None),
        50..=54 => (S::None, C::Slow),
        55..=57 if upload => (S::None, C::Slow),
        55..=57 => (S::None, C::VerySlow),
        58..=62 => (S::None, C::HalfClose),
        63..=68 => (S::None, C::Rst),
        69..=74 => (S::None, C::Kill),
        75..=79 => (S::None, C::Stall),
        // Half-close then stop reading is a download's fault.
        80..=84 if upload => (S::None, C::HalfClose),
        80..=84 => (S::None, C::HalfStall),
        85..=90 => (S::Die, C::None),
        91..=95 => (S::Rst, C::None),
        _ => (S::Stall, C::None),
    }
}

/// Which fault tags a run injects (`--faults`); the others run clean.
#[derive(Debug, Clone, Default)]
pub struct FaultSet(pub Option<Vec<String>>);

impl FaultSet {
    fn keeps(&self, tag: &str) -> bool {
        self.0.as_ref().is_none_or(|l| l.iter().any(|t| t == tag))
    }
}

/// Transfer `index` on a session to `target`.
pub fn plan(
    seed: u64,
    index: u64,
    target: &Target,
    warmup: bool,
    real_prefix: &str,
    only: &FaultSet,
) -> Plan {
    let r = rnd(seed, index, 5);
    let mode = [Mode::Pasv, Mode::Epsv, Mode::Port, Mode::Eprt][(r % 4) as usize];
    let upload = (r >> 8) % 2 == 1;
    let (mut server, mut client) = if warmup {
        (ServerFault::None, ClientFault::None)
    } else {
        faults(seed, index, upload)
    };
    if !only.keeps(server.tag()) {
        server = ServerFault::None;
    }
    if !only.keeps(client.tag()) {
        client = ClientFault::None;
    }
    if target.kind == Kind::Real {
        server = ServerFault::None;
    }
    let mut size = size(seed, index);
    if server != ServerFault::None || client != ClientFault::None {
        // A fault must strike mid-transfer, well past the first segment.
        size = size.max(16 * 1024);
    }
    if client == ClientFault::Slow {
        size = size.min(1024 * 1024);
    }
    if client == ClientFault::VerySlow {
        // More than the gateway's pipe drains to it within the idle timeout.
        size = 400 * 1024 + rnd(seed, index, 9) % (300 * 1024);
    }
    let stall = (!upload && matches!(client, ClientFault::Stall | ClientFault::HalfStall))
        || (upload && server == ServerFault::Stall);
    if stall {
        // Far more than the buffers between the gateway and a stopped
        // reader (client or server) hold, so the gateway's writes block.
        size = 4 * 1024 * 1024 + rnd(seed, index, 9) % (2 * 1024 * 1024);
    }
    let mut file_seed = rnd(seed, index, 6);
    if target.kind == Kind::Real && !upload {
        size = REAL_FILES[(rnd(seed, index, 7) % REAL_FILES.len() as u64) as usize];
        if stall {
            size = 4_000_000;
        } else if client == ClientFault::VerySlow {
            size = 1_048_576;
        } else if client != ClientFault::None && size < 16 * 1024 {
            size = 300_000;
        }
        file_seed = size + 1;
    }
    let spec = Spec {
        upload,
        size,
        seed: file_seed,
        server,
        client,
        client_tag: client.tag().to_string(),
    };
    let path = match (target.kind, upload) {
        (Kind::Real, false) => format!("{real_prefix}/soak/d-{size}-{file_seed}-none-none"),
        (Kind::Real, true) => format!("{real_prefix}/up/{}-{index}", spec.name()),
        _ => format!("soak/{}-{index}", spec.name()),
    };
    Plan {
        index,
        mode,
        spec,
        path,
    }
}

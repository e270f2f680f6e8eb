//! A three-namespace lab for the kernel data path: client, gateway, server,
//! joined by veths, with the gateway forwarding under a default-drop policy
//! that accepts only ftpalg's mark (the documented operator line).
//!
//! Each test builds its own lab, named `kn<tag>-{cli,gw,srv}`, and removes
//! it when dropped. Code runs inside a namespace on a thread that has
//! entered it (`setns` changes only the calling thread).
#![allow(dead_code)]

mod gateway;
#[allow(unused_imports)]
pub use gateway::*;

use ftpalg::dataplane::kernel::KernelConfig;
use socket2::{Domain, Socket, Type};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Client side: the client and a stranger on the same LAN.
pub const CLIENT: &str = "100.64.0.2";
pub const STRANGER: &str = "100.64.0.3";
pub const GW_IN: &str = "100.64.0.1";
pub const GW_OUT: &str = "198.51.100.1";
pub const SERVER: &str = "198.51.100.2";
pub const CLIENT6: &str = "2001:db8:1::2";
pub const STRANGER6: &str = "2001:db8:1::3";
pub const GW_IN6: &str = "2001:db8:1::1";
pub const GW_OUT6: &str = "2001:db8:2::1";
pub const SERVER6: &str = "2001:db8:2::2";

/// The tests' configuration: a table name of their own, the default mark.
pub fn config() -> KernelConfig {
    KernelConfig {
        table: "ftpalg_data".into(),
        max_pinholes: 256,
        ..KernelConfig::default()
    }
}

/// Kernel tests need root (namespaces, nftables). Without it they fail
/// rather than pass silently, unless the caller opts out explicitly.
pub fn require_root() -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("FTPALG_SKIP_KERNEL_TESTS").is_some() {
        eprintln!("skipped: not root and FTPALG_SKIP_KERNEL_TESTS is set");
        return false;
    }
    panic!("kernel tests need root (set FTPALG_SKIP_KERNEL_TESTS=1 to skip them)");
}

pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's output whether or not it succeeded.
pub fn try_run(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The lab. Dropping it deletes its namespaces (and with them every
/// table, socket and veth in them).
pub struct Lab {
    pub cli: String,
    pub gw: String,
    pub srv: String,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        let lab = Lab {
            cli: format!("kn{tag}-cli"),
            gw: format!("kn{tag}-gw"),
            srv: format!("kn{tag}-srv"),
        };
        for ns in [&lab.cli, &lab.gw, &lab.srv] {
            let _ = try_run(&["ip", "netns", "del", ns]);
            run(&["ip", "netns", "add", ns]);
            // No duplicate address detection, for link-local addresses too:
            // neighbour discovery waits for it, which holds the first
            // IPv6 packets back for seconds.
            lab.sh(ns, "ip link set lo up && sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0");
        }
        run(&[
            "ip", "link", "add", "c0", "netns", &lab.cli, "type", "veth", "peer", "name", "g0",
            "netns", &lab.gw,
        ]);
        run(&[
            "ip", "link", "add", "s0", "netns", &lab.srv, "type", "veth", "peer", "name", "g1",
            "netns", &lab.gw,
        ]);
        lab.sh(
            &lab.cli,
            &format!(
                "ip addr add {CLIENT}/24 dev c0 && ip addr add {STRANGER}/24 dev c0 && \
                 ip -6 addr add {CLIENT6}/64 dev c0 nodad && ip -6 addr add {STRANGER6}/64 dev c0 nodad && \
                 ip link set c0 up && ip route add default via {GW_IN} && ip -6 route add default via {GW_IN6}"
            ),
        );
        lab.sh(
            &lab.srv,
            &format!(
                "ip addr add {SERVER}/24 dev s0 && ip -6 addr add {SERVER6}/64 dev s0 nodad && ip link set s0 up && \
                 ip route add default via {GW_OUT} && ip -6 route add default via {GW_OUT6}"
            ),
        );
        let accept = config().accept_rule();
        lab.sh(
            &lab.gw,
            &format!(
                "ip addr add {GW_IN}/24 dev g0 && ip addr add {GW_OUT}/24 dev g1 && \
                 ip -6 addr add {GW_IN6}/64 dev g0 nodad && ip -6 addr add {GW_OUT6}/64 dev g1 nodad && \
                 ip link set g0 up && ip link set g1 up && \
                 sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 && \
                 modprobe nf_conntrack 2>/dev/null; sysctl -qw net.netfilter.nf_conntrack_acct=1 && \
                 nft -f - <<'NFT'
table inet knop {{
  chain forward {{
    type filter hook forward priority filter; policy drop;
    {accept}
  }}
}}
NFT"
            ),
        );
        lab
    }

    /// Runs a shell command in a namespace; it must succeed.
    pub fn sh(&self, ns: &str, cmd: &str) -> String {
        run(&["ip", "netns", "exec", ns, "sh", "-c", cmd])
    }

    /// `nft` in the gateway, succeeding or not.
    pub fn nft(&self, args: &str) -> (bool, String) {
        try_run(&["sh", "-c", &format!("ip netns exec {} nft {args}", self.gw)])
    }

    /// Every table in the gateway, as `nft list tables` prints them.
    pub fn tables(&self) -> String {
        self.nft("list tables").1
    }

    /// The namespace that holds `addr`'s address.
    pub fn ns_of(&self, addr: SocketAddr) -> &str {
        let ip = addr.ip().to_string();
        if [CLIENT, STRANGER, CLIENT6, STRANGER6].contains(&ip.as_str()) {
            &self.cli
        } else if [SERVER, SERVER6].contains(&ip.as_str()) {
            &self.srv
        } else if [GW_IN, GW_OUT, GW_IN6, GW_OUT6].contains(&ip.as_str()) {
            &self.gw
        } else {
            panic!("{ip} is no address of the lab")
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.cli, &self.gw, &self.srv] {
            let _ = try_run(&["ip", "netns", "del", ns]);
        }
    }
}

/// Runs `f` on a thread inside namespace `ns` and returns its result.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in(ns, f).join().expect("namespace thread panicked")
}

/// Starts `f` on a thread inside namespace `ns`.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// What a test server saw: one entry per accepted connection.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub peer: SocketAddr,
    pub received: usize,
}

/// A running test server; `finish` stops it and returns what it accepted.
pub struct Server {
    stop: Arc<AtomicBool>,
    h: std::thread::JoinHandle<Vec<Accepted>>,
}

impl Server {
    pub fn finish(self) -> Vec<Accepted> {
        self.stop.store(true, Ordering::SeqCst);
        self.h.join().expect("server thread")
    }
}

/// A TCP server in `ns` on `addr`: each connection is read to EOF, answered
/// with `reply` bytes and closed. It stops when finished or after `window`.
/// Ready when this returns.
pub fn server(ns: &str, addr: SocketAddr, reply: usize, window: Duration) -> Server {
    let (ready_tx, ready_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let h = spawn_in(ns, move || {
        let l = TcpListener::bind(addr).expect("bind test server");
        l.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let end = Instant::now() + window;
        let mut seen = Vec::new();
        while Instant::now() < end && !stopped.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((mut s, peer)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut buf = Vec::new();
                    let received = s.read_to_end(&mut buf).unwrap_or(buf.len());
                    let _ = s.write_all(&vec![0x5a; reply]);
                    let _ = s.shutdown(Shutdown::Both);
                    seen.push(Accepted { peer, received });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        seen
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server ready");
    Server { stop, h }
}

/// How a client's attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Connected, sent its bytes, and got this many back.
    Transferred(usize),
    /// No answer at all within the connect timeout (dropped).
    TimedOut,
    /// Actively refused (a reset).
    Refused,
    /// Anything else.
    Other(String),
}

/// From `ns`, binds `from` and dials `to`, sends `send` bytes, half-closes
/// and reads the answer to EOF.
pub fn dial(
    ns: &str,
    from: SocketAddr,
    to: SocketAddr,
    send: usize,
    connect_timeout: Duration,
) -> Outcome {
    in_ns(ns, move || {
        let s = Socket::new(Domain::for_address(to), Type::STREAM, None).unwrap();
        s.bind(&from.into()).expect("bind client");
        match s.connect_timeout(&to.into(), connect_timeout) {
            Ok(()) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::WouldBlock =>
            {
                return Outcome::TimedOut
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Outcome::Refused,
            Err(e) => return Outcome::Other(e.to_string()),
        }
        let mut s: TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if let Err(e) = s.write_all(&vec![0xa5; send]) {
            return Outcome::Other(e.to_string());
        }
        let _ = s.shutdown(Shutdown::Write);
        let mut buf = Vec::new();
        match s.read_to_end(&mut buf) {
            Ok(n) => Outcome::Transferred(n),
            Err(e) => Outcome::Other(e.to_string()),
        }
    })
}

pub fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// How one end of a cut connection ended: the error it saw, and when.
#[derive(Debug)]
pub struct End {
    pub error: std::io::ErrorKind,
    pub at: Instant,
    pub moved: usize,
}

/// Moves bytes on `s` (writing when `send`, else reading) until an error
/// or `within`; a clean EOF counts as `UnexpectedEof`. Once `close` is set
/// a reader half-closes, as a client closes its data connection after
/// ABOR: its FIN is its next packet.
pub fn until_error(
    mut s: std::net::TcpStream,
    send: bool,
    within: Duration,
    close: Option<Arc<AtomicBool>>,
) -> End {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + within;
    let mut buf = vec![0x5au8; 16 * 1024];
    let mut moved = 0;
    let mut closed = false;
    while Instant::now() < end {
        if !closed && close.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)) {
            closed = true;
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        let r = if send {
            std::io::Write::write(&mut s, &buf)
        } else {
            std::io::Read::read(&mut s, &mut buf)
        };
        match r {
            Ok(0) => {
                return End {
                    error: std::io::ErrorKind::UnexpectedEof,
                    at: Instant::now(),
                    moved,
                }
            }
            Ok(n) => moved += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                return End {
                    error: e.kind(),
                    at: Instant::now(),
                    moved,
                }
            }
        }
    }
    End {
        error: std::io::ErrorKind::TimedOut,
        at: Instant::now(),
        moved,
    }
}

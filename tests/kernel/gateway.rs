//! The fixture most kernel tests start from: a lab with ftpalg's kernel
//! data path open in its gateway, and the flows they run through it.

use super::*;
use ftpalg::dataplane::kernel::{FlowEvent, KernelConfig, KernelTable, OpenReport, PinholeId};
use ftpalg::dataplane::{GatewayAddr, PeerIp, PinholeFlow, ServerAddr, SourceNat};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The connect timeout of an attempt that is expected to get nowhere.
pub const SHORT: Duration = Duration::from_millis(800);

/// The client's passive pinhole on gateway address `gw`, forwarded to the
/// server's `port` and leaving from the gateway's outside address.
pub fn passive(gw: SocketAddr, port: u16, timeout: Duration) -> PinholeFlow {
    PinholeFlow::passive(
        PeerIp::new(CLIENT.parse().unwrap()),
        GatewayAddr::new(gw),
        ServerAddr::new(sa(SERVER, port)),
        Some(SourceNat::new(GW_OUT.parse().unwrap())),
        timeout,
    )
}

/// A relay pinhole for `peer` at `at` on the gateway.
pub fn relay(peer: &str, at: SocketAddr, timeout: Duration) -> PinholeFlow {
    PinholeFlow::relay(
        PeerIp::new(peer.parse().unwrap()),
        GatewayAddr::new(at),
        timeout,
    )
}

/// A lab and the data plane open in its gateway; dropping it drops both,
/// the data plane first.
pub struct Gateway {
    pub dp: KernelTable,
    /// What opening the data plane found.
    pub report: OpenReport,
    pub lab: Lab,
}

impl Gateway {
    /// The lab tagged `tag` with the tests' [`config`]; `None` where the
    /// kernel tests are skipped (see [`require_root`]).
    pub fn new(tag: &str) -> Option<Gateway> {
        Gateway::with(tag, config())
    }

    /// [`Gateway::new`] with another configuration.
    pub fn with(tag: &str, config: KernelConfig) -> Option<Gateway> {
        if !require_root() {
            return None;
        }
        Some(Gateway::open(Lab::new(tag), config))
    }

    /// Opens the data plane in `lab`'s gateway.
    pub fn open(lab: Lab, config: KernelConfig) -> Gateway {
        let (dp, report) =
            in_ns(&lab.gw, move || KernelTable::open(config)).expect("open kernel data path");
        assert!(report.accounting, "the lab turns conntrack accounting on");
        Gateway { dp, report, lab }
    }

    /// Adds a pinhole that must be accepted.
    pub fn add(&mut self, flow: &PinholeFlow) -> PinholeId {
        self.dp.add(flow).expect("add pinhole")
    }

    /// A test server at `at`, in the namespace that holds the address,
    /// answering each connection with `reply` bytes, for at most 8 s.
    pub fn serve(&self, at: SocketAddr, reply: usize) -> Server {
        server(self.lab.ns_of(at), at, reply, Duration::from_secs(8))
    }

    /// From `from` (in the namespace that holds it) to `to`: connects
    /// within 3 s, sends `send` bytes and reads the answer.
    pub fn dial(&self, from: SocketAddr, to: SocketAddr, send: usize) -> Outcome {
        dial(self.lab.ns_of(from), from, to, send, Duration::from_secs(3))
    }

    /// An attempt from `from` to `to` that is expected to get nowhere:
    /// 10 bytes, given [`SHORT`] to connect.
    pub fn probe(&self, from: SocketAddr, to: SocketAddr) -> Outcome {
        dial(self.lab.ns_of(from), from, to, 10, SHORT)
    }

    /// Polls until `id` reports a terminal event (bounded), collecting its
    /// events.
    pub fn events(&mut self, id: PinholeId, within: Duration) -> Vec<FlowEvent> {
        let end = Instant::now() + within;
        let mut out = Vec::new();
        while Instant::now() < end {
            for (i, ev) in self.dp.poll().expect("poll") {
                if i == id {
                    let terminal = ev.is_terminal();
                    out.push(ev);
                    if terminal {
                        return out;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        out
    }

    /// ftpalg's table as `nft` lists it.
    pub fn table(&self) -> String {
        self.lab.nft("list table inet ftpalg_data").1
    }

    /// One of ftpalg's sets as `nft` lists it.
    pub fn set(&self, name: &str) -> String {
        self.lab.nft(&format!("list set inet ftpalg_data {name}")).1
    }

    /// Closes the data plane; its table must be gone with it. The lab
    /// stays for what the test checks next.
    pub fn close(self) -> Lab {
        self.dp.close().expect("close");
        let tables = self.lab.tables();
        assert!(!tables.contains("ftpalg_data"), "{tables}");
        self.lab
    }
}

/// Polls until `id` has an event matching `want` (bounded).
pub fn wait_for(
    dp: &mut KernelTable,
    id: PinholeId,
    within: Duration,
    want: impl Fn(&FlowEvent) -> bool,
) -> Vec<FlowEvent> {
    let end = Instant::now() + within;
    let mut seen = Vec::new();
    while Instant::now() < end {
        for (i, ev) in dp.poll().expect("poll") {
            if i == id {
                let hit = want(&ev);
                seen.push(ev);
                if hit {
                    return seen;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no matching event for {id:?} within {within:?}: {seen:?}");
}

/// A client in its namespace that connects to `to`, sends 100 bytes, then
/// on each word from the test sends 100 more; at the end it half-closes
/// and reports whether its last send and read went through.
pub fn slow_client(lab: &Lab, to: SocketAddr) -> (mpsc::Sender<()>, std::thread::JoinHandle<bool>) {
    let (go, next) = mpsc::channel::<()>();
    let h = spawn_in(&lab.cli, move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&sa(CLIENT, 0).into()).unwrap();
        s.connect_timeout(&to.into(), Duration::from_secs(3))
            .expect("connect through the pinhole");
        let mut s: TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(&[1; 100]).unwrap();
        while next.recv().is_ok() {
            if s.write_all(&[2; 100]).is_err() {
                return false;
            }
        }
        let _ = s.shutdown(Shutdown::Write);
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).is_ok() && !buf.is_empty()
    });
    (go, h)
}

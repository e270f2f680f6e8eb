//! Pinhole setup latency over netlink: 2,000 adds while 200 pinholes are
//! live, in a namespace of its own. Checks that every add and removal
//! succeeds, that each removal takes its elements out of the kernel's sets
//! and that nothing is left; prints p50/p99 of the adds, which
//! `make bench` runs in a release build and judges against its target (p99
//! at most 1 ms). Timing is not asserted here: a timed test on two shared
//! cores would fail for what else the machine is doing.
mod kernel;

use ftpalg::dataplane::kernel::KernelTable;
use ftpalg::dataplane::{GatewayAddr, PeerIp, PinholeFlow, ServerAddr, SourceNat};
use kernel::*;
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

const ADDS: usize = 2_000;
const LIVE: usize = 200;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
fn pinhole_setup_p99_with_200_live() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("l");
    let (adds, removes, polls, dp) = in_ns(&lab.gw, || {
        let (mut dp, _) = KernelTable::open(config()).expect("open");
        let mut live = VecDeque::new();
        let mut ids = HashSet::new();
        let mut adds = Vec::with_capacity(ADDS);
        let mut removes = Vec::with_capacity(ADDS);
        let mut polls = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..ADDS + LIVE {
            assert!(Instant::now() < deadline, "bounded in time");
            // Distinct clients and gateway ports, as 200 sessions would use.
            let n = i as u32;
            let client =
                std::net::Ipv4Addr::from(u32::from_be_bytes([100, 64, 0, 0]) + 10 + n % 200);
            let flow = PinholeFlow::passive(
                PeerIp::new(client.into()),
                GatewayAddr::new(sa(GW_IN, 20_000 + (i % 40_000) as u16)),
                ServerAddr::new(sa(SERVER, 5000)),
                Some(SourceNat::new(GW_OUT.parse().unwrap())),
                Duration::from_secs(30),
            );
            if live.len() == LIVE {
                let old = live.pop_front().unwrap();
                let t = Instant::now();
                dp.remove(old).expect("remove");
                removes.push(t.elapsed());
            }
            let t = Instant::now();
            let id = dp.add(&flow).expect("add");
            if i >= LIVE {
                adds.push(t.elapsed());
            }
            assert!(ids.insert(id), "add {i} returned a taken id {id:?}");
            live.push_back(id);
            if i % 100 == 0 && i >= LIVE {
                let t = Instant::now();
                let evs = dp.poll().expect("poll");
                polls.push(t.elapsed());
                assert!(evs.is_empty(), "no pinhole ends by itself: {evs:?}");
            }
        }
        assert_eq!(dp.live(), LIVE);
        (adds, removes, polls, dp)
    });
    // Each element's key holds its gateway address: five elements (spent,
    // guard, fwd, snat, pin) for each live pinhole, none left by the
    // 2,000 removed.
    let (_, table) = lab.nft("list table inet ftpalg_data");
    assert_eq!(
        table.matches(&format!("{GW_IN} . ")).count(),
        5 * LIVE,
        "{table}"
    );
    dp.close().expect("close");
    let mut adds = adds;
    let mut removes = removes;
    let mut polls = polls;
    adds.sort();
    removes.sort();
    polls.sort();
    let (p50, p99) = (pct(&adds, 0.5), pct(&adds, 0.99));
    println!(
        "pinhole-latency-us add_p50={} add_p99={} adds={}",
        p50.as_micros(),
        p99.as_micros(),
        adds.len()
    );
    println!(
        "pinhole add ({} with {LIVE} live): p50 {:?} p99 {:?} max {:?}; remove p50 {:?} p99 {:?}; poll with {LIVE} live p50 {:?}",
        adds.len(),
        p50,
        p99,
        adds.last().unwrap(),
        pct(&removes, 0.5),
        pct(&removes, 0.99),
        pct(&polls, 0.5)
    );
    assert!(!lab.tables().contains("ftpalg_data"));
}

/// Transfers live while the latencies are read.
const AT_SCALE: usize = 50_000;
/// Client addresses they come from.
const SCALE_CLIENTS: u32 = 4;
/// Adds and cuts timed among them.
const SCALE_ROUNDS: usize = 2_000;

fn scale_client(n: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from_be_bytes([100, 64, 0, 0]) + 20 + n)
}

/// Puts established TCP entries into conntrack over ctnetlink, as the
/// kernel makes them for connections a pinhole admitted: the original
/// tuple from the client to the gateway's port, ftpalg's mark. Holding
/// 50,000 real connections would take 100,000 descriptors, five times this
/// machine's hard limit (20,000; no CAP_SYS_RESOURCE to raise it); to the
/// kernel thread an entry is an entry, whatever made it.
struct Injector {
    sock: netlink_sys::Socket,
    seq: u32,
}

impl Injector {
    fn open() -> Injector {
        let mut sock =
            netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_NETFILTER).expect("socket");
        sock.bind_auto().expect("bind");
        Injector { sock, seq: 1 }
    }

    fn attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        buf.extend((len as u16).to_ne_bytes());
        buf.extend(ty.to_ne_bytes());
        buf.extend(data);
        buf.resize(buf.len() + (4 - len % 4) % 4, 0);
    }

    fn nested(buf: &mut Vec<u8>, ty: u16, f: impl FnOnce(&mut Vec<u8>)) {
        let mut inner = Vec::new();
        f(&mut inner);
        Self::attr(buf, ty | 0x8000, &inner);
    }

    fn tuple(buf: &mut Vec<u8>, ty: u16, src: std::net::SocketAddrV4, dst: std::net::SocketAddrV4) {
        Self::nested(buf, ty, |b| {
            Self::nested(b, 1, |b| {
                Self::attr(b, 1, &src.ip().octets());
                Self::attr(b, 2, &dst.ip().octets());
            });
            Self::nested(b, 2, |b| {
                Self::attr(b, 1, &[6]);
                Self::attr(b, 2, &src.port().to_be_bytes());
                Self::attr(b, 3, &dst.port().to_be_bytes());
            });
        });
    }

    /// One established entry client -> gateway, replied to from the server
    /// to the gateway's outside address (as after source NAT).
    fn established(
        &mut self,
        client: std::net::SocketAddrV4,
        gw: std::net::SocketAddrV4,
        mark: u32,
    ) {
        let mut attrs = Vec::new();
        let server: std::net::SocketAddrV4 = format!("{SERVER}:5000").parse().unwrap();
        let outside = std::net::SocketAddrV4::new(GW_OUT.parse().unwrap(), gw.port());
        Self::tuple(&mut attrs, 1, client, gw); // CTA_TUPLE_ORIG
        Self::tuple(&mut attrs, 2, server, outside); // CTA_TUPLE_REPLY
        Self::attr(&mut attrs, 7, &600u32.to_be_bytes()); // CTA_TIMEOUT
        Self::attr(&mut attrs, 8, &mark.to_be_bytes()); // CTA_MARK
        Self::nested(&mut attrs, 4, |b| {
            Self::nested(b, 1, |b| Self::attr(b, 1, &[3])); // TCP ESTABLISHED
        });
        let len = 16 + 4 + attrs.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend((len as u32).to_ne_bytes());
        msg.extend((1u16 << 8).to_ne_bytes()); // ctnetlink IPCTNL_MSG_CT_NEW
        msg.extend((0x1u16 | 0x4 | 0x400 | 0x200).to_ne_bytes()); // REQUEST ACK CREATE EXCL
        msg.extend(self.seq.to_ne_bytes());
        msg.extend(0u32.to_ne_bytes());
        msg.extend([2, 0, 0, 0]); // AF_INET, version 0, res_id 0
        msg.extend(attrs);
        self.seq += 1;
        self.sock.send(&msg, 0).expect("send");
        let mut ack = vec![0u8; 512];
        let n = self.sock.recv(&mut &mut ack[..], 0).expect("ack");
        assert!(n >= 20, "short ack");
        let errno = i32::from_ne_bytes(ack[16..20].try_into().unwrap());
        assert_eq!(
            errno,
            0,
            "conntrack refused the entry: {}",
            std::io::Error::from_raw_os_error(-errno)
        );
    }
}

/// The kernel thread's data plane with [`AT_SCALE`] established transfers
/// followed at once: how long a pinhole add, a cut of a running transfer
/// and one turn of its service take then, and what share of a CPU its
/// turns cost while nothing happens. `make bench` runs it (release build)
/// and judges the figures against their targets; here only correctness is
/// asserted.
#[test]
#[ignore = "make bench: 50,000 live transfers"]
fn kernel_thread_latency_at_50000_live() {
    if !require_root() {
        return;
    }
    let lab = Lab::new("s");
    lab.sh(&lab.gw, "sysctl -qw net.netfilter.nf_conntrack_max=262144");
    let config = ftpalg::dataplane::kernel::KernelConfig {
        max_pinholes: 65_536,
        ..config()
    };
    let (adds, cuts, turns, share) = in_ns(&lab.gw, move || {
        let mark = config.mark;
        let (mut dp, _) = KernelTable::open(config).expect("open");
        let mut inject = Injector::open();
        let idle = Some(Duration::from_secs(300));
        let flow = |port: u16, n: u32| {
            PinholeFlow::passive(
                PeerIp::new(scale_client(n).into()),
                GatewayAddr::new(sa(GW_IN, port)),
                ServerAddr::new(sa(SERVER, 5000)),
                Some(SourceNat::new(GW_OUT.parse().unwrap())),
                Duration::from_secs(120),
            )
        };
        let deadline = Instant::now() + Duration::from_secs(240);
        let mut live = Vec::with_capacity(AT_SCALE);
        let mut established = 0usize;
        for i in 0..AT_SCALE {
            assert!(Instant::now() < deadline, "bounded in time");
            let port = 10_000 + i as u16;
            let n = i as u32 % SCALE_CLIENTS;
            let id = dp.add_limited(&flow(port, n), idle).expect("add");
            live.push(id);
            inject.established(
                std::net::SocketAddrV4::new(scale_client(n), 30_000 + (i % 30_000) as u16),
                std::net::SocketAddrV4::new(GW_IN.parse().unwrap(), port),
                mark,
            );
            if i % 64 == 0 {
                established += count_established(dp.service(Instant::now()));
            }
        }
        while established < AT_SCALE && Instant::now() < deadline {
            established += count_established(dp.service(Instant::now()));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            established, AT_SCALE,
            "every transfer learned and established"
        );
        assert_eq!(dp.live(), AT_SCALE);

        // Idle turns: what the thread costs while nothing happens.
        let mut turns = Vec::new();
        let quiet = Instant::now();
        while quiet.elapsed() < Duration::from_secs(5) {
            let t = Instant::now();
            let evs = dp.service(Instant::now());
            turns.push(t.elapsed());
            assert!(evs.is_empty(), "{evs:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        let busy: Duration = turns.iter().sum();
        let share = busy.as_secs_f64() / quiet.elapsed().as_secs_f64();

        // Adds and cuts among them.
        let mut adds = Vec::with_capacity(SCALE_ROUNDS);
        let mut cuts = Vec::with_capacity(SCALE_ROUNDS);
        for (r, victim) in live.iter().take(SCALE_ROUNDS).enumerate() {
            let t = Instant::now();
            let id = dp
                .add(&flow(62_000 + (r % 2_000) as u16, 0))
                .expect("add among many");
            adds.push(t.elapsed());
            let t = Instant::now();
            assert!(dp.abort(*victim).expect("cut"), "a live transfer to cut");
            cuts.push(t.elapsed());
            dp.remove(id).expect("remove");
            let t = Instant::now();
            dp.service(Instant::now());
            turns.push(t.elapsed());
        }
        assert_eq!(dp.live(), AT_SCALE - SCALE_ROUNDS);
        dp.close().expect("close");
        adds.sort();
        cuts.sort();
        turns.sort();
        (adds, cuts, turns, share)
    });
    println!(
        "kernel-scale-us live={AT_SCALE} add_p50={} add_p99={} cut_p50={} cut_p99={} turn_p50={} turn_p99={} idle_cpu_pct={:.2}",
        pct(&adds, 0.5).as_micros(),
        pct(&adds, 0.99).as_micros(),
        pct(&cuts, 0.5).as_micros(),
        pct(&cuts, 0.99).as_micros(),
        pct(&turns, 0.5).as_micros(),
        pct(&turns, 0.99).as_micros(),
        share * 100.0
    );
}

fn count_established(
    evs: Vec<(
        ftpalg::dataplane::kernel::PinholeId,
        ftpalg::dataplane::kernel::FlowEvent,
    )>,
) -> usize {
    evs.iter()
        .filter(|(_, e)| {
            assert!(!e.is_terminal(), "a transfer ended at setup: {e:?}");
            matches!(e, ftpalg::dataplane::kernel::FlowEvent::Established { .. })
        })
        .count()
}

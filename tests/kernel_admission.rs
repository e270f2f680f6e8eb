//! One-shot admission under races, against this machine's kernel: a
//! pinhole admits one connection even when the expected peer sends several
//! SYNs from different source ports at the same moment, handled on
//! different CPUs. Run as root (`cargo test --test kernel_admission`).

mod kernel;

use kernel::*;
use socket2::{Domain, Socket, Type};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Pins the calling thread to `cpu` (modulo the CPUs there are), so the
/// SYNs it sends are handled by that CPU's softirq on the way through the
/// veth.
fn pin_to_cpu(cpu: usize) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % cpus, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// `n` threads in the client's namespace, one per CPU in turn, dial `to`
/// from the expected peer at the same moment, each from its own source
/// port. Returns how many connected within `within`; those connections are
/// kept open until all have tried.
fn race(lab: &Lab, to: SocketAddr, n: usize, within: Duration) -> usize {
    let barrier = Arc::new(Barrier::new(n));
    let done = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (barrier, done) = (barrier.clone(), done.clone());
            spawn_in(&lab.cli, move || {
                pin_to_cpu(i);
                let s = Socket::new(Domain::for_address(to), Type::STREAM, None).unwrap();
                s.bind(&sa(CLIENT, 0).into()).expect("bind");
                s.set_nonblocking(true).unwrap();
                barrier.wait();
                let _ = s.connect(&to.into());
                let end = Instant::now() + within;
                let mut connected = false;
                while Instant::now() < end {
                    let mut pfd = libc::pollfd {
                        fd: std::os::fd::AsRawFd::as_raw_fd(&s),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    let left = end.saturating_duration_since(Instant::now()).as_millis() as i32;
                    if unsafe { libc::poll(&mut pfd, 1, left.max(1)) } > 0 {
                        connected =
                            s.take_error().ok().flatten().is_none() && s.peer_addr().is_ok();
                        break;
                    }
                }
                done.wait();
                connected
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("racer"))
        .filter(|c| *c)
        .count()
}

/// Regression: admission used to be a check (`!= @spent`) and a mark
/// (`add @spent`) in two steps, so simultaneous SYNs from the expected
/// peer, handled on different CPUs, could all pass the check before any
/// marked it: one in five pinholes admitted two connections.
#[test]
fn simultaneous_syns_from_the_peer_are_admitted_once() {
    let Some(Gateway { lab, mut dp, .. }) = Gateway::new("r") else {
        return;
    };
    const TRIALS: u16 = 120;
    let srv = server(&lab.srv, sa(SERVER, 5000), 0, Duration::from_secs(120));
    let mut doubles = Vec::new();
    let mut singles = 0;
    for i in 0..TRIALS {
        let gw = sa(GW_IN, 41000 + i);
        let id = dp
            .add(&passive(gw, 5000, Duration::from_secs(30)))
            .unwrap_or_else(|e| panic!("pinhole {i}: {e}"));
        let n = race(&lab, gw, 3, Duration::from_millis(250));
        match n {
            0 => {}
            1 => singles += 1,
            _ => doubles.push((i, n)),
        }
        let _ = dp.abort(id);
    }
    drop(srv);
    assert!(
        doubles.is_empty(),
        "pinholes that admitted more than one connection (trial, count): {doubles:?}"
    );
    // The race must have been run for real: nearly every pinhole admitted
    // one of its three dialers.
    assert!(
        singles >= usize::from(TRIALS) * 9 / 10,
        "only {singles} of {TRIALS} pinholes admitted a connection"
    );
    dp.close().expect("close");
}

/// Regression: the kernel path dropped a stranger at a pinhole's port
/// without a word, where the relay logs each one with its address. The
/// `guard` chain now logs what it drops to an nflog group ftpalg reads.
#[test]
fn strangers_turned_away_by_the_kernel_are_told_once_each() {
    let Some(Gateway { lab, mut dp, .. }) = Gateway::new("v") else {
        return;
    };
    let srv = server(&lab.srv, sa(SERVER, 5000), 10, Duration::from_secs(10));
    let gw = sa(GW_IN, 40000);
    let id = dp
        .add(&passive(gw, 5000, Duration::from_secs(30)))
        .expect("add");
    // A stranger on the client's LAN, long enough for a retransmitted SYN.
    assert_eq!(
        dial(
            &lab.cli,
            sa(STRANGER, 47000),
            gw,
            10,
            Duration::from_millis(1500)
        ),
        Outcome::TimedOut
    );
    // The real client, then its second attempt.
    assert_eq!(
        dial(&lab.cli, sa(CLIENT, 0), gw, 10, Duration::from_secs(3)),
        Outcome::Transferred(10)
    );
    assert_eq!(
        dial(
            &lab.cli,
            sa(CLIENT, 47001),
            gw,
            10,
            Duration::from_millis(300)
        ),
        Outcome::TimedOut
    );
    dp.service(Instant::now());
    let told = dp.take_strangers();
    assert_eq!(
        told.iter()
            .filter(|s| s.from == sa(STRANGER, 47000))
            .count(),
        1,
        "the stranger, once for all its SYNs: {told:?}"
    );
    assert!(
        told.iter()
            .any(|s| s.from == sa(CLIENT, 47001) && s.to == gw),
        "the peer's second attempt: {told:?}"
    );
    assert!(told.iter().all(|s| s.to == gw), "{told:?}");
    assert!(dp.take_strangers().is_empty(), "each told once");
    let _ = dp.abort(id);
    assert_eq!(srv.finish().len(), 1);
    dp.close().expect("close");
}

//! Soak test of the gateway under faults (`make soak`, tests/soak/soak.sh).
//!
//!   soak serve  --listen ADDR [--listen ADDR]   the fault-injecting FTP server
//!   soak gen    --dir DIR                       files for the real server
//!   soak run    --target name,kind,addr,weight ... --count N --concurrency C
//!               [--warmup N] [--gw-pid PID] ...  the load, checks and report
//!   soak gwstop --target ... --sessions N       slow transfers across a
//!               [--tag sigkill]                 gateway shutdown (or in a
//!                                               process to be SIGKILLed)
//!
//! Every loop is bounded in count and time. See docs/soak.md.

mod client;
mod content;
mod gwstat;
mod gwstop;
mod net;
mod plan;
mod server;
mod verdict;

use client::{transfer, DataEnd, Limits, Seen};
use content::ServerFault;
use gwstat::Snap;
use net::{Ctl, Reply, Res};
use plan::{pick_target, plan, rnd, FaultSet, Kind, Plan, Target};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use verdict::{judge, Verdict};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn args_all(args: &[String], name: &str) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].clone())
        .collect()
}

fn num(args: &[String], name: &str, default: u64) -> u64 {
    arg(args, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("serve") => {
            let listens: Res<Vec<_>> = args_all(&args, "--listen")
                .iter()
                .map(|a| Ok(a.parse()?))
                .collect();
            match listens {
                Ok(l) => server::serve(l).await.map(|_| 0),
                Err(e) => Err(e),
            }
        }
        Some("gen") => gen(&args).map(|_| 0),
        Some("run") => run(&args).await,
        Some("gwstop") => gwstop::run(&args).await,
        _ => Err("usage: soak serve|gen|run|gwstop ...".into()),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    }
}

/// Writes the real server's files.
fn gen(args: &[String]) -> Res<()> {
    let dir = PathBuf::from(arg(args, "--dir").ok_or("--dir")?).join("soak");
    std::fs::create_dir_all(&dir)?;
    for size in plan::REAL_FILES {
        let mut buf = vec![0u8; size as usize];
        content::fill(size + 1, 0, &mut buf);
        std::fs::write(dir.join(format!("d-{size}-{}-none-none", size + 1)), buf)?;
    }
    Ok(())
}

struct Ctx {
    targets: Vec<Target>,
    seed: u64,
    lim: Limits,
    real_root: PathBuf,
    real_prefix: String,
    faults: FaultSet,
    stop_at: Instant,
    stats: Mutex<Stats>,
    parked: Mutex<Vec<TcpStream>>,
}

#[derive(Default)]
struct Stats {
    transfers: u64,
    faulted: u64,
    verdicts: BTreeMap<&'static str, u64>,
    /// Per fault: how the transfers ended.
    endings: BTreeMap<String, BTreeMap<String, u64>>,
    violations: Vec<String>,
    corrupted: u64,
    bytes: u64,
}

fn ending(s: &Seen) -> String {
    let data = match &s.data {
        DataEnd::Complete => "complete",
        DataEnd::Short(_) => "fin-short",
        DataEnd::Wrong => "wrong",
        DataEnd::Reset(..) => "reset",
        DataEnd::Stalled(_) => "stalled",
        DataEnd::Aborted => "client-abort",
        DataEnd::NotOpened(_) => "no-data",
    };
    let reply = match &s.reply {
        Some(Reply::Code(c, _)) => c.to_string(),
        Some(Reply::Closed) => "closed".into(),
        Some(Reply::Timeout) => "timeout".into(),
        None => "-".into(),
    };
    format!("{data}/{reply}")
}

fn record(ctx: &Ctx, t: &Target, p: &Plan, s: Seen, v: Verdict) {
    let fault = format!(
        "{}{}{}",
        if p.spec.upload { "STOR " } else { "RETR " },
        if t.kind == Kind::Victim {
            "victim:"
        } else {
            ""
        },
        match (p.spec.server, p.spec.client) {
            (ServerFault::None, c) => c.tag(),
            (srv, _) => srv.tag(),
        }
    );
    let mut st = ctx.stats.lock().unwrap_or_else(|e| e.into_inner());
    st.transfers += 1;
    if p.faulted() {
        st.faulted += 1;
    }
    if v == Verdict::Ok {
        st.bytes += p.spec.size;
    }
    *st.verdicts.entry(v.class()).or_default() += 1;
    *st.endings
        .entry(fault)
        .or_default()
        .entry(ending(&s))
        .or_default() += 1;
    if v.violation() {
        if let Verdict::Corrupted(_) = v {
            st.corrupted += 1;
        }
        let detail = match &v {
            Verdict::Corrupted(d)
            | Verdict::False226(d)
            | Verdict::Late(d)
            | Verdict::CleanFailed(d)
            | Verdict::FinForBroken(d) => d.clone(),
            _ => String::new(),
        };
        let line = format!(
            "VIOLATION {}: #{} {} {} {} {} {} bytes server:{} client:{}: {detail}",
            v.class(),
            p.index,
            t.name,
            p.mode.tag(),
            if p.spec.upload { "STOR" } else { "RETR" },
            p.path,
            p.spec.size,
            p.spec.server.tag(),
            p.spec.client.tag(),
        );
        println!("{line}");
        st.violations.push(line);
    }
    drop(st);
    if let Some(d) = s.parked {
        ctx.parked.lock().unwrap_or_else(|e| e.into_inner()).push(d);
    }
}

async fn login(t: &Target, lim: Limits) -> Result<Ctl, Reply> {
    let mut c = Ctl::connect(t.addr, lim.setup)
        .await
        .map_err(|e| Reply::Code(0, format!("connect: {e}")))?;
    let r = c.reply(lim.setup).await;
    if !r.is_2xx() {
        return Err(r);
    }
    let r = c.cmd("USER anonymous", lim.setup).await;
    if !matches!(r, Reply::Code(331 | 230, _)) {
        return Err(r);
    }
    if matches!(r, Reply::Code(331, _)) {
        let r = c.cmd("PASS soak@", lim.setup).await;
        if !r.is_2xx() {
            return Err(r);
        }
    }
    let r = c.cmd("TYPE I", lim.setup).await;
    if !r.is_2xx() {
        return Err(r);
    }
    Ok(c)
}

async fn worker(ctx: Arc<Ctx>, next: Arc<AtomicU64>, total: u64, warmup: bool) {
    let take = || {
        let i = next.fetch_add(1, Ordering::Relaxed);
        (i < total && Instant::now() < ctx.stop_at).then_some(i)
    };
    while let Some(first) = take() {
        let t = &ctx.targets[pick_target(&ctx.targets, ctx.seed, first, warmup)];
        let mut ctl = match login(t, ctx.lim).await {
            Ok(c) => c,
            Err(r) => {
                let p = plan(ctx.seed, first, t, warmup, &ctx.real_prefix, &ctx.faults);
                let s = Seen {
                    data: DataEnd::NotOpened(format!("login: {}", r.text())),
                    reply: None,
                    parked: None,
                    reusable: false,
                };
                let v = judge(t.kind, &p, &s, &ctx.real_root);
                record(&ctx, t, &p, s, v);
                continue;
            }
        };
        let per_session = 1 + rnd(ctx.seed, first, 8) % 3;
        let mut index = Some(first);
        let mut clean = true;
        for k in 0..per_session {
            if k > 0 {
                index = take();
            }
            let Some(i) = index else { break };
            let p = plan(ctx.seed, i, t, warmup, &ctx.real_prefix, &ctx.faults);
            let s = match tokio::time::timeout(ctx.lim.cap, transfer(&mut ctl, &p, ctx.lim)).await {
                Ok(s) => s,
                Err(_) => Seen {
                    data: DataEnd::Stalled(0),
                    reply: Some(Reply::Timeout),
                    parked: None,
                    reusable: false,
                },
            };
            let v = judge(t.kind, &p, &s, &ctx.real_root);
            clean = s.reusable && v == Verdict::Ok;
            record(&ctx, t, &p, s, v);
            if !clean {
                break;
            }
        }
        if clean {
            let _ = ctl.cmd("QUIT", Duration::from_secs(2)).await;
        }
    }
}

async fn phase(ctx: &Arc<Ctx>, total: u64, concurrency: u64, warmup: bool) {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(worker(ctx.clone(), next.clone(), total, warmup)))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// Waits until the gateway's descriptors stop changing, for at most `max`.
async fn settle(pid: u32, max: Duration) -> Res<Snap> {
    let until = Instant::now() + max;
    let mut last = Snap::take(pid)?;
    let mut same = 0;
    while Instant::now() < until && same < 8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = Snap::take(pid)?;
        if now.fds == last.fds && now.pipes == last.pipes {
            same += 1;
        } else {
            same = 0;
        }
        last = now;
    }
    Ok(last)
}

/// Waits until the gateway's descriptors are back to `base`, for at most
/// `max`; returns the last look and how long it took.
async fn drain(pid: u32, base: &Snap, max: Duration) -> Res<(Snap, Duration)> {
    let start = Instant::now();
    loop {
        let now = Snap::take(pid)?;
        if now.fds_match(base) || start.elapsed() >= max {
            return Ok((now, start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn targets(args: &[String]) -> Res<Vec<Target>> {
    let t: Res<Vec<Target>> = args_all(args, "--target")
        .iter()
        .map(|s| Target::parse(s))
        .collect();
    let t = t?;
    if t.is_empty() {
        return Err("at least one --target".into());
    }
    Ok(t)
}

fn limits(args: &[String]) -> Limits {
    let idle = num(args, "--idle", 3);
    let margin = num(args, "--margin", 5);
    Limits {
        setup: Duration::from_secs(num(args, "--setup", 15)),
        deadline: Duration::from_secs(idle + margin),
        cap: Duration::from_secs(num(args, "--cap", 60)),
    }
}

async fn run(args: &[String]) -> Res<i32> {
    let count = num(args, "--count", 10_000);
    let concurrency = num(args, "--concurrency", 200);
    let warmup = num(args, "--warmup", 400);
    let max_seconds = num(args, "--max-seconds", 420);
    let gw_pid = arg(args, "--gw-pid").and_then(|p| p.parse::<u32>().ok());
    let rss_tol_kib = num(args, "--rss-tolerance-mib", 16) * 1024;
    let drain_max = Duration::from_secs(num(args, "--drain-seconds", 20));
    let lim = limits(args);
    let started = Instant::now();
    let ctx = Arc::new(Ctx {
        targets: targets(args)?,
        seed: num(args, "--seed", 1),
        lim,
        real_root: PathBuf::from(arg(args, "--real-root").unwrap_or_default()),
        real_prefix: arg(args, "--real-prefix").unwrap_or_default(),
        faults: FaultSet(arg(args, "--faults").map(|l| l.split(',').map(String::from).collect())),
        stop_at: started + Duration::from_secs(max_seconds),
        stats: Mutex::new(Stats::default()),
        parked: Mutex::new(Vec::new()),
    });
    let mut violations = Vec::new();

    if warmup > 0 {
        phase(&ctx, warmup, concurrency, true).await;
        let mut st = ctx.stats.lock().unwrap_or_else(|e| e.into_inner());
        println!(
            "warm-up: {} transfers, {:?}, {:.1}s",
            st.transfers,
            st.verdicts,
            started.elapsed().as_secs_f64()
        );
        violations.append(&mut st.violations);
        *st = Stats::default();
    }
    let base = match gw_pid {
        Some(pid) => {
            let b = settle(pid, drain_max).await?;
            println!("gateway baseline after warm-up: {}", b.show());
            Some(b)
        }
        None => None,
    };

    let main_start = Instant::now();
    phase(&ctx, count, concurrency, false).await;
    let secs = main_start.elapsed().as_secs_f64();
    println!("load phase done in {secs:.1}s");
    if Instant::now() >= ctx.stop_at {
        violations.push(format!(
            "VIOLATION TIME: the run reached its {max_seconds}s limit before {count} transfers"
        ));
    }

    let mut fds_ok = true;
    if let (Some(pid), Some(base)) = (gw_pid, &base) {
        let (after, took) = drain(pid, base, drain_max).await?;
        println!(
            "gateway after the run (waited {:.1}s for sessions to drain): {}",
            took.as_secs_f64(),
            after.show()
        );
        if !after.fds_match(base) {
            fds_ok = false;
            let extra = gwstat::extra_sockets(pid, &after, base);
            let mut line = format!(
                "VIOLATION FDS: after {:.0}s of drain the gateway holds {} fds ({} sockets, {} pipes), baseline {} ({} sockets, {} pipes)",
                drain_max.as_secs_f64(),
                after.fds, after.sockets, after.pipes, base.fds, base.sockets, base.pipes
            );
            let mut states: BTreeMap<String, u64> = BTreeMap::new();
            for e in &extra {
                let state = e.split(' ').next().unwrap_or("?").to_string();
                *states.entry(state).or_default() += 1;
            }
            line += &format!("; extra sockets by state: {states:?}");
            for e in extra.iter().take(8) {
                line += &format!("\n    {e}");
            }
            violations.push(line);
        }
        let limit = base.rss_kib + rss_tol_kib.max(base.rss_kib / 4);
        if after.rss_kib > limit {
            violations.push(format!(
                "VIOLATION RSS: {} KiB after the run, baseline {} KiB, allowed up to {limit} KiB",
                after.rss_kib, base.rss_kib
            ));
        }
    }
    let parked = std::mem::take(&mut *ctx.parked.lock().unwrap_or_else(|e| e.into_inner()));
    let parked_n = parked.len();
    drop(parked);

    let mut st = ctx.stats.lock().unwrap_or_else(|e| e.into_inner());
    let kills = arg(args, "--kills-file")
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map_or(0, |s| s.lines().count() as u64);
    println!(
        "main run: {} transfers in {secs:.1}s ({:.0}/s), {} MiB verified, {} hung-client data sockets held to the end",
        st.transfers,
        st.transfers as f64 / secs.max(0.001),
        st.bytes >> 20,
        parked_n
    );
    println!("verdicts: {:?}", st.verdicts);
    println!("how transfers ended, per fault (data end/final reply: count):");
    for (fault, e) in &st.endings {
        let list: Vec<String> = e.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        println!("  {fault:<19} {}", list.join(" "));
    }
    violations.append(&mut st.violations);
    let n_viol = violations.len();
    let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
    for v in &violations {
        let class = v.split([':', ' ']).nth(1).unwrap_or("?").to_string();
        *by_class.entry(class).or_default() += 1;
    }
    for v in violations.iter().filter(|v| {
        v.starts_with("VIOLATION FDS")
            || v.starts_with("VIOLATION RSS")
            || v.starts_with("VIOLATION TIME")
    }) {
        println!("{v}");
    }
    if n_viol > 0 {
        println!("violations by class: {by_class:?}");
    }
    println!(
        "soak: {} transfers, {} faults, {} corrupted, fds {}",
        st.transfers,
        st.faulted + kills,
        st.corrupted,
        if base.is_none() {
            "not measured"
        } else if fds_ok {
            "back to baseline"
        } else {
            "NOT back to baseline"
        }
    );
    Ok(if n_viol == 0 && base.is_some() { 0 } else { 1 })
}

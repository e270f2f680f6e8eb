//! Load generator and minimal FTP server for `make bench` (bench/run.sh).
//!
//!   ftpload serve    --listen ADDR [--size BYTES]      a small, fast FTP server
//!   ftpload sessions --target ADDR --concurrency N --seconds S
//!   ftpload noop     --target ADDR --count N
//!   ftpload idle     --target ADDR --count N --hold S
//!
//! Every loop is bounded in count and time. Results are one JSON object on
//! stdout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
const T: Duration = Duration::from_secs(10);

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(args: &[String], name: &str, default: u64) -> u64 {
    arg(args, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let target = || -> Res<SocketAddr> { Ok(arg(&args, "--target").ok_or("--target")?.parse()?) };
    match args.get(1).map(String::as_str) {
        Some("serve") => {
            serve(
                arg(&args, "--listen").ok_or("--listen")?.parse()?,
                num(&args, "--size", 1024) as usize,
            )
            .await
        }
        Some("sessions") => {
            sessions(
                target()?,
                num(&args, "--concurrency", 32),
                num(&args, "--seconds", 20),
            )
            .await
        }
        Some("noop") => noop(target()?, num(&args, "--count", 2000)).await,
        Some("idle") => {
            idle(
                target()?,
                num(&args, "--count", 10000),
                num(&args, "--hold", 20),
            )
            .await
        }
        _ => Err("usage: ftpload serve|sessions|noop|idle ...".into()),
    }
}

// ------------------------------------------------------------------ server

async fn serve(listen: SocketAddr, size: usize) -> Res<()> {
    let l = TcpListener::bind(listen).await?;
    let body: Arc<Vec<u8>> = Arc::new((0..size).map(|i| i as u8).collect());
    loop {
        let (c, _) = l.accept().await?;
        let body = body.clone();
        tokio::spawn(async move {
            let _ = serve_one(c, body).await;
        });
    }
}

async fn serve_one(c: TcpStream, body: Arc<Vec<u8>>) -> Res<()> {
    c.set_nodelay(true)?;
    let local = c.local_addr()?;
    let (r, mut w) = c.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 ftpload\r\n").await?;
    let mut pasv: Option<TcpListener> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "USER" => w.write_all(b"331 ok\r\n").await?,
            "PASS" => w.write_all(b"230 ok\r\n").await?,
            "PASV" | "EPSV" => {
                let l = TcpListener::bind(SocketAddr::new(local.ip(), 0)).await?;
                let port = l.local_addr()?.port();
                pasv = Some(l);
                let msg = match (verb.as_str(), local) {
                    ("PASV", SocketAddr::V4(v4)) => {
                        let o = v4.ip().octets();
                        format!(
                            "227 Entering Passive Mode ({},{},{},{},{},{})\r\n",
                            o[0],
                            o[1],
                            o[2],
                            o[3],
                            port >> 8,
                            port & 255
                        )
                    }
                    _ => format!("229 Entering Extended Passive Mode (|||{port}|)\r\n"),
                };
                w.write_all(msg.as_bytes()).await?;
            }
            "RETR" => {
                let Some(l) = pasv.take() else {
                    w.write_all(b"425 no data connection\r\n").await?;
                    continue;
                };
                w.write_all(b"150 here\r\n").await?;
                let (mut d, _) = tokio::time::timeout(T, l.accept()).await??;
                d.write_all(&body).await?;
                d.shutdown().await?;
                w.write_all(b"226 done\r\n").await?;
            }
            "QUIT" => {
                w.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => w.write_all(b"200 ok\r\n").await?,
        }
    }
}

// ------------------------------------------------------------------ client

struct Ctl {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    peer: SocketAddr,
}

impl Ctl {
    async fn connect(addr: SocketAddr) -> Res<Ctl> {
        let s = tokio::time::timeout(T, TcpStream::connect(addr)).await??;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        let mut c = Ctl {
            r: BufReader::new(r),
            w,
            peer: addr,
        };
        c.expect(2).await?;
        Ok(c)
    }

    async fn reply(&mut self) -> Res<String> {
        let mut line = String::new();
        loop {
            line.clear();
            if tokio::time::timeout(T, self.r.read_line(&mut line)).await?? == 0 {
                return Err("connection closed".into());
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(line);
            }
        }
    }

    async fn expect(&mut self, class: u8) -> Res<String> {
        let r = self.reply().await?;
        if r.as_bytes().first() != Some(&(b'0' + class)) {
            return Err(format!("unexpected reply: {}", r.trim()).into());
        }
        Ok(r)
    }

    async fn cmd(&mut self, line: &str, class: u8) -> Res<String> {
        self.w.write_all(format!("{line}\r\n").as_bytes()).await?;
        self.expect(class).await
    }

    async fn login(&mut self) -> Res<()> {
        self.cmd("USER anonymous", 3).await?;
        self.cmd("PASS bench@", 2).await?;
        Ok(())
    }
}

async fn one_session(target: SocketAddr) -> Res<()> {
    let mut c = Ctl::connect(target).await?;
    c.login().await?;
    let r = c.cmd("EPSV", 2).await?;
    let port: u16 = r
        .split("|||")
        .nth(1)
        .and_then(|s| s.split('|').next())
        .ok_or("bad 229")?
        .parse()?;
    c.w.write_all(b"RETR f\r\n").await?;
    let mut d =
        tokio::time::timeout(T, TcpStream::connect(SocketAddr::new(c.peer.ip(), port))).await??;
    let mut buf = Vec::new();
    tokio::time::timeout(T, d.read_to_end(&mut buf)).await??;
    c.expect(1).await?;
    c.expect(2).await?;
    c.cmd("QUIT", 2).await?;
    Ok(())
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn sessions(target: SocketAddr, concurrency: u64, seconds: u64) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..concurrency {
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            // Bounded by the deadline and by a count per worker.
            for _ in 0..1_000_000 {
                if Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                match one_session(target).await {
                    Ok(()) => times.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            times
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let secs = start.elapsed().as_secs_f64();
    let n = all.len();
    println!(
        "{{\"sessions\":{n},\"errors\":{},\"seconds\":{secs:.2},\"rate\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        errors.load(Ordering::Relaxed),
        n as f64 / secs,
        percentile(&mut all, 0.5),
        percentile(&mut all, 0.99)
    );
    Ok(())
}

async fn noop(target: SocketAddr, count: u64) -> Res<()> {
    let mut c = Ctl::connect(target).await?;
    c.login().await?;
    for _ in 0..100 {
        c.cmd("NOOP", 2).await?;
    }
    let mut v = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let t = Instant::now();
        c.cmd("NOOP", 2).await?;
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    c.cmd("QUIT", 2).await?;
    println!(
        "{{\"count\":{count},\"p50_us\":{:.1},\"p99_us\":{:.1}}}",
        percentile(&mut v, 0.5),
        percentile(&mut v, 0.99)
    );
    Ok(())
}

async fn idle(target: SocketAddr, count: u64, hold: u64) -> Res<()> {
    let start = Instant::now();
    let failed = Arc::new(AtomicU64::new(0));
    let mut held = Vec::with_capacity(count as usize);
    // Open in waves so the listener's queue is never the bottleneck.
    let mut opened = 0;
    while opened < count {
        let wave = (count - opened).min(250);
        let mut tasks = Vec::new();
        for _ in 0..wave {
            tasks.push(tokio::spawn(async move {
                let mut c = Ctl::connect(target).await?;
                c.login().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(c)
            }));
        }
        for t in tasks {
            match t.await? {
                Ok(c) => held.push(c),
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        opened += wave;
    }
    let setup = start.elapsed().as_secs_f64();
    println!("READY {}", held.len());
    // While they are held: full sessions must still get through.
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut bad, mut times) = (0u64, 0u64, Vec::new());
            for _ in 0..10_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let t = Instant::now();
                match one_session(target).await {
                    Ok(()) => {
                        ok += 1;
                        times.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Err(_) => bad += 1,
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (ok, bad, percentile(&mut times, 0.99))
        })
    };
    tokio::time::sleep(Duration::from_secs(hold)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, bad, p99) = probe.await?;
    // The held sessions are still alive: each answers a NOOP.
    let mut alive = 0u64;
    for c in held.iter_mut().step_by(50) {
        if c.cmd("NOOP", 2).await.is_ok() {
            alive += 1;
        }
    }
    println!(
        "{{\"established\":{},\"failed\":{},\"setup_seconds\":{setup:.2},\"probes_ok\":{ok},\"probes_failed\":{bad},\"probe_p99_ms\":{p99:.2},\"sampled_alive\":{alive},\"sampled\":{}}}",
        held.len(),
        failed.load(Ordering::Relaxed),
        held.len().div_ceil(50)
    );
    Ok(())
}

//! One transfer through the gateway, with the client-side fault its plan
//! asks for; what the client saw is judged in `verdict`.

use crate::content::{fill, hex, sha256, ClientFault};
use crate::net::{set_reset, Ctl, Reply};
use crate::plan::{Mode, Plan};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Deadlines of one transfer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Control replies during setup, connecting and accepting.
    pub setup: Duration,
    /// The gateway's transfer idle timeout plus a margin: a stalled or
    /// broken transfer must have ended (data or control) within this.
    pub deadline: Duration,
    /// The whole transfer.
    pub cap: Duration,
}

/// How the data connection ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataEnd {
    /// Every byte, right content, clean end.
    Complete,
    /// A clean end (FIN) after `got` bytes of the wrong length.
    Short(u64),
    /// A clean end after the right number of bytes with the wrong content.
    Wrong,
    /// An error (reset) after `got` bytes.
    Reset(u64, String),
    /// No progress within the deadline.
    Stalled(u64),
    /// The client broke it itself (its reset or its death).
    Aborted,
    /// No data connection.
    NotOpened(String),
}

/// The raw observation of one transfer.
pub struct Seen {
    pub data: DataEnd,
    /// The final reply; `None` when the client "died" before asking.
    pub reply: Option<Reply>,
    /// A data socket the client keeps open (a hung client) until the end
    /// of the run, so a relay pinned by it shows in the gateway's fds.
    pub parked: Option<TcpStream>,
    /// The session can carry another transfer.
    pub reusable: bool,
}

fn seen(data: DataEnd, reply: Option<Reply>) -> Seen {
    let reusable = data == DataEnd::Complete && reply.as_ref().is_some_and(Reply::is_2xx);
    Seen {
        data,
        reply,
        parked: None,
        reusable,
    }
}

enum Setup {
    Connect(SocketAddr),
    Accept(TcpListener),
}

fn parse_227(text: &str) -> Option<SocketAddr> {
    let inner = text.split('(').nth(1)?.split(')').next()?;
    let n: Vec<u16> = inner
        .split(',')
        .map(|p| p.trim().parse().ok())
        .collect::<Option<_>>()?;
    if n.len() != 6 {
        return None;
    }
    let ip = std::net::Ipv4Addr::new(n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8);
    Some(SocketAddr::new(ip.into(), n[4] * 256 + n[5]))
}

fn parse_229(text: &str, host: IpAddr) -> Option<SocketAddr> {
    let port = text.split("|||").nth(1)?.split('|').next()?.parse().ok()?;
    Some(SocketAddr::new(host, port))
}

async fn setup(ctl: &mut Ctl, mode: Mode, lim: Limits, small: bool) -> Result<Setup, Reply> {
    match mode {
        Mode::Pasv | Mode::Epsv => {
            let r = ctl.cmd(mode.tag(), lim.setup).await;
            let addr = match (&r, mode) {
                (Reply::Code(227, t), Mode::Pasv) => parse_227(t),
                (Reply::Code(229, t), Mode::Epsv) => parse_229(t, ctl.peer.ip()),
                _ => None,
            };
            addr.map(Setup::Connect).ok_or(r)
        }
        Mode::Port | Mode::Eprt => {
            let ip = ctl.local.ip();
            let l = listen_data(SocketAddr::new(ip, 0), small)
                .map_err(|e| Reply::Code(0, format!("local bind: {e}")))?;
            let port = l
                .local_addr()
                .map_err(|e| Reply::Code(0, e.to_string()))?
                .port();
            let line = match (mode, ip) {
                (Mode::Port, IpAddr::V4(v4)) => {
                    let o = v4.octets();
                    format!(
                        "PORT {},{},{},{},{},{}",
                        o[0],
                        o[1],
                        o[2],
                        o[3],
                        port >> 8,
                        port & 255
                    )
                }
                _ => format!("EPRT |1|{ip}|{port}|"),
            };
            let r = ctl.cmd(&line, lim.setup).await;
            if r.is_2xx() {
                Ok(Setup::Accept(l))
            } else {
                Err(r)
            }
        }
    }
}

/// Runs one transfer on a logged-in session.
pub async fn transfer(ctl: &mut Ctl, plan: &Plan, lim: Limits) -> Seen {
    let small = small_window(plan);
    let setup = match setup(ctl, plan.mode, lim, small).await {
        Ok(s) => s,
        Err(r) => return seen(DataEnd::NotOpened("setup refused".into()), Some(r)),
    };
    let verb = if plan.spec.upload { "STOR" } else { "RETR" };
    let command = format!("{verb} {}", plan.path);
    let d = match setup {
        Setup::Connect(a) => {
            let d = match tokio::time::timeout(lim.setup, connect_data(a, small)).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => return seen(DataEnd::NotOpened(e.to_string()), None),
                Err(_) => return seen(DataEnd::NotOpened("connect timed out".into()), None),
            };
            let r = ctl.cmd(&command, lim.setup).await;
            if !r.is_1xx() {
                return seen(DataEnd::NotOpened("refused".into()), Some(r));
            }
            d
        }
        Setup::Accept(l) => {
            let r = ctl.cmd(&command, lim.setup).await;
            if !r.is_1xx() {
                return seen(DataEnd::NotOpened("refused".into()), Some(r));
            }
            match tokio::time::timeout(lim.setup, l.accept()).await {
                Ok(Ok((d, _))) => d,
                Ok(Err(e)) => return seen(DataEnd::NotOpened(e.to_string()), None),
                Err(_) => {
                    let r = ctl.reply(lim.deadline).await;
                    return seen(DataEnd::NotOpened("no connection".into()), Some(r));
                }
            }
        }
    };
    if plan.spec.upload {
        upload(ctl, d, plan, lim).await
    } else {
        download(ctl, d, plan, lim).await
    }
}

/// A slow client's chunk and pause between chunks.
fn pace(plan: &Plan) -> Option<(usize, Duration)> {
    match (plan.spec.client, plan.spec.client_tag.as_str()) {
        (_, "gwstop" | "sigkill") => Some((64 * 1024, Duration::from_millis(100))),
        (ClientFault::Slow, _) => Some((16 * 1024, Duration::from_millis(50))),
        (ClientFault::VerySlow, _) => Some((16 * 1024, Duration::from_millis(250))),
        _ => None,
    }
}

/// A client that will stop reading mid-download keeps a small receive
/// window, so that the gateway's writes to it block soon.
fn small_window(plan: &Plan) -> bool {
    !plan.spec.upload
        && matches!(
            plan.spec.client,
            ClientFault::Stall | ClientFault::HalfStall
        )
}

const SMALL_WINDOW: u32 = 64 * 1024;

async fn connect_data(a: SocketAddr, small: bool) -> std::io::Result<TcpStream> {
    let s = if a.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if small {
        s.set_recv_buffer_size(SMALL_WINDOW)?;
    }
    s.connect(a).await
}

fn listen_data(at: SocketAddr, small: bool) -> std::io::Result<TcpListener> {
    let s = if at.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if small {
        s.set_recv_buffer_size(SMALL_WINDOW)?;
    }
    s.bind(at)?;
    s.listen(4)
}

/// Where the client's own fault strikes, if it has one that does.
fn strike_at(plan: &Plan) -> Option<u64> {
    if plan.spec.client_tag == "sigkill" {
        // Its death comes from outside.
        return None;
    }
    match plan.spec.client {
        ClientFault::Stall | ClientFault::HalfStall if !plan.spec.upload => Some(64 * 1024),
        ClientFault::Rst | ClientFault::Kill | ClientFault::Stall | ClientFault::HalfStall => {
            Some(plan.spec.fault_at())
        }
        _ => None,
    }
}

struct Reader {
    h: Sha256,
    got: u64,
}

impl Reader {
    /// Reads until the end; `limit` stops early at that offset.
    async fn read(
        &mut self,
        d: &mut TcpStream,
        limit: Option<u64>,
        chunk: usize,
        pause: Option<Duration>,
        lim: Limits,
    ) -> Option<DataEnd> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut want = chunk.min(buf.len());
            if let Some(l) = limit {
                if self.got >= l {
                    return None;
                }
                want = want.min((l - self.got) as usize);
            }
            match tokio::time::timeout(lim.deadline, d.read(&mut buf[..want])).await {
                Err(_) => return Some(DataEnd::Stalled(self.got)),
                Ok(Err(e)) => return Some(DataEnd::Reset(self.got, e.kind().to_string())),
                Ok(Ok(0)) => return Some(DataEnd::Short(self.got)),
                Ok(Ok(n)) => {
                    self.h.update(&buf[..n]);
                    self.got += n as u64;
                }
            }
            if let Some(p) = pause {
                tokio::time::sleep(p).await;
            }
        }
    }

    fn finish(self, plan: &Plan, end: DataEnd) -> DataEnd {
        match end {
            DataEnd::Short(got) if got == plan.spec.size => {
                if hex(&self.h.finalize()) == sha256(plan.spec.size, plan.spec.seed) {
                    DataEnd::Complete
                } else {
                    DataEnd::Wrong
                }
            }
            other => other,
        }
    }
}

async fn download(ctl: &mut Ctl, mut d: TcpStream, plan: &Plan, lim: Limits) -> Seen {
    let fault = plan.spec.client;
    if matches!(fault, ClientFault::HalfClose | ClientFault::HalfStall) {
        let _ = d.shutdown().await;
    }
    let (chunk, pause) = match pace(plan) {
        Some((c, p)) => (c, Some(p)),
        None => (64 * 1024, None),
    };
    let mut rd = Reader {
        h: Sha256::new(),
        got: 0,
    };
    if let Some(end) = rd.read(&mut d, strike_at(plan), chunk, pause, lim).await {
        let end = rd.finish(plan, end);
        if let DataEnd::Stalled(_) = end {
            return seen(end, None);
        }
        let r = ctl.reply(lim.deadline).await;
        return seen(end, Some(r));
    }
    // The client's own fault, mid-transfer.
    match fault {
        ClientFault::Rst => {
            set_reset(&d);
            drop(d);
            let r = ctl.reply(lim.deadline).await;
            seen(DataEnd::Aborted, Some(r))
        }
        ClientFault::Kill => seen(DataEnd::Aborted, None),
        _ => {
            // Stopped reading, sockets open: the gateway must end it (idle
            // timeout) and say so within the deadline.
            let r = ctl.reply(lim.deadline).await;
            if r == Reply::Timeout {
                let mut s = seen(DataEnd::Stalled(rd.got), Some(r));
                s.parked = Some(d);
                return s;
            }
            // Told something: read what is left to see whether it was true.
            let end = rd.read(&mut d, None, chunk, None, lim).await;
            let end = rd.finish(plan, end.unwrap_or(DataEnd::Stalled(0)));
            let mut s = seen(end, Some(r));
            s.reusable = false;
            s
        }
    }
}

async fn upload(ctl: &mut Ctl, mut d: TcpStream, plan: &Plan, lim: Limits) -> Seen {
    let size = plan.spec.size;
    let (chunk, pause) = match pace(plan) {
        Some((c, p)) => (c as u64, Some(p)),
        None => (64 * 1024, None),
    };
    let stop = strike_at(plan).unwrap_or(size);
    let mut buf = vec![0u8; chunk as usize];
    let mut sent = 0u64;
    while sent < stop {
        let n = (stop - sent).min(chunk) as usize;
        fill(plan.spec.seed, sent, &mut buf[..n]);
        match tokio::time::timeout(lim.deadline, d.write_all(&buf[..n])).await {
            Err(_) => return seen(DataEnd::Stalled(sent), None),
            Ok(Err(e)) => {
                let r = ctl.reply(lim.deadline).await;
                return seen(DataEnd::Reset(sent, e.kind().to_string()), Some(r));
            }
            Ok(Ok(())) => sent += n as u64,
        }
        if let Some(p) = pause {
            tokio::time::sleep(p).await;
        }
    }
    match plan.spec.client {
        ClientFault::Rst => {
            set_reset(&d);
            drop(d);
            let r = ctl.reply(lim.deadline).await;
            seen(DataEnd::Aborted, Some(r))
        }
        ClientFault::Kill => seen(DataEnd::Aborted, None),
        ClientFault::Stall | ClientFault::HalfStall => {
            let r = ctl.reply(lim.deadline).await;
            let mut s = seen(DataEnd::Stalled(sent), Some(r.clone()));
            if r == Reply::Timeout {
                s.parked = Some(d);
            } else {
                // It was told in time; what it was told is judged.
                s.data = DataEnd::Aborted;
            }
            s.reusable = false;
            s
        }
        ClientFault::HalfClose => {
            // Half-close, then wait for the server's end of the connection.
            let _ = d.shutdown().await;
            let mut sink = [0u8; 512];
            let end = match tokio::time::timeout(lim.deadline, d.read(&mut sink)).await {
                Ok(Ok(0)) => DataEnd::Complete,
                Ok(Ok(_)) => DataEnd::Wrong,
                Ok(Err(e)) => DataEnd::Reset(sent, e.kind().to_string()),
                Err(_) => DataEnd::Stalled(sent),
            };
            let r = ctl.reply(lim.deadline).await;
            seen(end, Some(r))
        }
        _ => {
            let _ = d.shutdown().await;
            drop(d);
            let r = ctl.reply(lim.deadline).await;
            seen(DataEnd::Complete, Some(r))
        }
    }
}

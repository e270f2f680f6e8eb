//! One transfer through the gateway, with the client-side fault its plan
//! asks for, and the verdict on what the client saw.

use crate::content::{fill, hex, sha256, ClientFault, ServerFault};
use crate::net::{set_reset, Ctl, Reply, Res};
use crate::plan::{Kind, Mode, Plan};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
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

/// What one transfer proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Broken, and the client was told so in time.
    FailedProperly,
    /// A file reported complete (2xx) with wrong or missing bytes.
    Corrupted(String),
    /// A 2xx for a download whose data connection broke.
    False226(String),
    /// No outcome within the deadline.
    Late(String),
    /// A transfer without a breaking fault failed.
    CleanFailed(String),
    /// A download broken by a reset or a timeout reached the client as a
    /// clean close: a truncated file that looks whole to the data channel.
    FinForBroken(String),
}

impl Verdict {
    pub fn class(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::FailedProperly => "failed-properly",
            Verdict::Corrupted(_) => "CORRUPTED",
            Verdict::False226(_) => "226-FOR-BROKEN-DOWNLOAD",
            Verdict::Late(_) => "NO-OUTCOME-IN-TIME",
            Verdict::CleanFailed(_) => "CLEAN-TRANSFER-FAILED",
            Verdict::FinForBroken(_) => "BROKEN-DOWNLOAD-ENDED-WITH-FIN",
        }
    }
    pub fn violation(&self) -> bool {
        !matches!(self, Verdict::Ok | Verdict::FailedProperly)
    }
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

/// What a 2xx for an upload says arrived: from the soak server's reply
/// text, or from the real server's disk.
fn upload_arrived(kind: Kind, plan: &Plan, text: &str, real_root: &Path) -> Res<(u64, String)> {
    if kind == Kind::Real {
        let name = plan.path.rsplit('/').next().unwrap_or("");
        let bytes = std::fs::read(real_root.join("up").join(name))?;
        return Ok((bytes.len() as u64, hex(&Sha256::digest(&bytes))));
    }
    let got = text
        .split("Received ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .ok_or("no byte count in the 226")?;
    let sha = text
        .split("sha256=")
        .nth(1)
        .map(|s| s.trim().to_string())
        .ok_or("no sha256 in the 226")?;
    Ok((got, sha))
}

/// Judges what the client saw.
pub fn judge(kind: Kind, plan: &Plan, seen: &Seen, real_root: &Path) -> Verdict {
    let must = plan.must_succeed() && kind != Kind::Victim;
    let client_broke = matches!(plan.spec.client, ClientFault::Rst | ClientFault::Kill);
    let reply = match &seen.reply {
        Some(r) => r.clone(),
        None if matches!(seen.data, DataEnd::Stalled(_)) => Reply::Timeout,
        None if must => return Verdict::CleanFailed(format!("{:?}", seen.data)),
        None => return Verdict::FailedProperly,
    };
    if reply == Reply::Timeout {
        return Verdict::Late(format!(
            "no reply within the deadline; data: {:?}",
            seen.data
        ));
    }
    if reply.is_2xx() {
        if plan.spec.upload {
            let want = (plan.spec.size, sha256(plan.spec.size, plan.spec.seed));
            return match upload_arrived(kind, plan, &reply.text(), real_root) {
                Ok(got) if got == want => Verdict::Ok,
                Ok((n, _)) => Verdict::Corrupted(format!(
                    "{} covers an upload of {n} of {} bytes (or wrong content); client data: {:?}",
                    reply.text(),
                    plan.spec.size,
                    seen.data
                )),
                Err(e) => Verdict::Corrupted(format!("{}: {e}", reply.text())),
            };
        }
        return match &seen.data {
            DataEnd::Complete => Verdict::Ok,
            DataEnd::Short(n) => Verdict::Corrupted(format!(
                "{} after a clean end of the data at {n} of {} bytes",
                reply.text(),
                plan.spec.size
            )),
            DataEnd::Wrong => Verdict::Corrupted(format!(
                "{} for {} bytes of wrong content",
                reply.text(),
                plan.spec.size
            )),
            DataEnd::Reset(..) | DataEnd::Aborted if client_broke => Verdict::FailedProperly,
            other => Verdict::False226(format!("{} while the data ended: {other:?}", reply.text())),
        };
    }
    // A server that dies closes its data connection cleanly, and the
    // gateway can only pass that on; every other break it must reset.
    let server_closed = plan.spec.server == ServerFault::Die || kind == Kind::Victim;
    if let (false, DataEnd::Short(n), false) = (plan.spec.upload, &seen.data, server_closed) {
        return Verdict::FinForBroken(format!(
            "the data connection closed cleanly at {n} of {} bytes; reply: {}",
            plan.spec.size,
            reply.text()
        ));
    }
    if must {
        return Verdict::CleanFailed(format!("{}; data: {:?}", reply.text(), seen.data));
    }
    Verdict::FailedProperly
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Spec;

    fn plan(upload: bool, server: ServerFault, client: ClientFault) -> Plan {
        Plan {
            index: 1,
            mode: Mode::Pasv,
            spec: Spec {
                upload,
                size: 1000,
                seed: 5,
                server,
                client,
                client_tag: client.tag().into(),
            },
            path: "soak/x".into(),
        }
    }

    fn judged(p: &Plan, data: DataEnd, reply: Option<Reply>) -> Verdict {
        let s = Seen {
            data,
            reply,
            parked: None,
            reusable: false,
        };
        judge(Kind::Fault, p, &s, Path::new("/nonexistent"))
    }

    fn ok226() -> Option<Reply> {
        Some(Reply::Code(226, "226 done".into()))
    }

    #[test]
    fn a_226_after_a_short_clean_end_is_corruption() {
        let p = plan(false, ServerFault::None, ClientFault::None);
        assert!(matches!(
            judged(&p, DataEnd::Short(500), ok226()),
            Verdict::Corrupted(_)
        ));
        assert_eq!(judged(&p, DataEnd::Complete, ok226()), Verdict::Ok);
    }

    #[test]
    fn a_226_after_a_reset_is_false_unless_the_client_reset() {
        let p = plan(false, ServerFault::None, ClientFault::Stall);
        assert!(matches!(
            judged(&p, DataEnd::Reset(10, "reset".into()), ok226()),
            Verdict::False226(_)
        ));
        let p = plan(false, ServerFault::None, ClientFault::Rst);
        assert_eq!(
            judged(&p, DataEnd::Aborted, ok226()),
            Verdict::FailedProperly
        );
    }

    #[test]
    fn an_upload_226_must_cover_every_byte() {
        let p = plan(true, ServerFault::None, ClientFault::Rst);
        let partial = format!("226 Received 500 bytes sha256={}", sha256(500, 5));
        assert!(matches!(
            judged(&p, DataEnd::Aborted, Some(Reply::Code(226, partial))),
            Verdict::Corrupted(_)
        ));
        let p = plan(true, ServerFault::None, ClientFault::None);
        let whole = format!("226 Received 1000 bytes sha256={}", sha256(1000, 5));
        assert_eq!(
            judged(&p, DataEnd::Complete, Some(Reply::Code(226, whole))),
            Verdict::Ok
        );
    }

    #[test]
    fn silence_past_the_deadline_is_late_and_a_reset_as_fin_is_flagged() {
        let p = plan(false, ServerFault::None, ClientFault::HalfStall);
        assert!(matches!(
            judged(&p, DataEnd::Stalled(64), Some(Reply::Timeout)),
            Verdict::Late(_)
        ));
        let p = plan(false, ServerFault::Rst, ClientFault::None);
        assert!(matches!(
            judged(
                &p,
                DataEnd::Short(500),
                Some(Reply::Code(426, "426 x".into()))
            ),
            Verdict::FinForBroken(_)
        ));
        assert_eq!(
            judged(
                &p,
                DataEnd::Reset(500, "reset".into()),
                Some(Reply::Code(426, "426 x".into()))
            ),
            Verdict::FailedProperly
        );
        // A server that dies closes cleanly; passing that on is right.
        let p = plan(false, ServerFault::Die, ClientFault::None);
        assert_eq!(
            judged(
                &p,
                DataEnd::Short(500),
                Some(Reply::Code(421, "421 x".into()))
            ),
            Verdict::FailedProperly
        );
    }
}

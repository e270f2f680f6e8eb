//! The fault-injecting FTP server: serves the content a name describes,
//! checks uploads against it, and injects the server-side fault the name
//! asks for.
//!
//! A `226` for an upload says what arrived (`Received N bytes
//! sha256=HEX`), so the client can prove that no `226` covers a truncated
//! upload. An upload that ended cleanly (FIN) short of its size, from a
//! client that did not die, is printed as `TRUNCATED name got/size`: only a
//! gateway that turns a broken upload into a clean close produces it.

use crate::content::{fill, hex, ClientFault, ServerFault, Spec};
use crate::net::{set_reset, Res};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// How long a stalled transfer waits to be reset before giving up; longer
/// than any client deadline, so a gateway that never resets is caught by
/// the client.
const STALL_CAP: Duration = Duration::from_secs(30);
/// Waiting for a data connection.
const DATA_WAIT: Duration = Duration::from_secs(15);
/// The receive buffer of a server that will stall an upload.
const SMALL_WINDOW: usize = 64 * 1024;
/// An idle control connection is dropped after this.
const CONTROL_IDLE: Duration = Duration::from_secs(120);

/// Serves on every address until killed.
pub async fn serve(listens: Vec<SocketAddr>) -> Res<()> {
    let mut tasks = Vec::new();
    for a in listens {
        let l = TcpListener::bind(a).await?;
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((c, _)) = l.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                tokio::spawn(async move {
                    let _ = session(c).await;
                });
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

enum Data {
    None,
    Passive(TcpListener),
    Active(SocketAddr),
}

async fn open_data(data: Data, local: IpAddr) -> Res<TcpStream> {
    match data {
        Data::None => Err("no PASV/PORT".into()),
        Data::Passive(l) => Ok(tokio::time::timeout(DATA_WAIT, l.accept()).await??.0),
        Data::Active(to) => {
            // From the control connection's address: the gateway's pinhole
            // accepts only the server it talks to.
            let s = if to.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            s.bind(SocketAddr::new(local, 0))?;
            Ok(tokio::time::timeout(DATA_WAIT, s.connect(to)).await??)
        }
    }
}

fn parse_port(arg: &str) -> Option<SocketAddr> {
    let n: Vec<u16> = arg
        .split(',')
        .map(|p| p.trim().parse().ok())
        .collect::<Option<_>>()?;
    if n.len() != 6 || n.iter().any(|&x| x > 255) {
        return None;
    }
    let ip = std::net::Ipv4Addr::new(n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8);
    Some(SocketAddr::new(ip.into(), n[4] * 256 + n[5]))
}

fn parse_eprt(arg: &str) -> Option<SocketAddr> {
    let d = arg.chars().next()?;
    let parts: Vec<&str> = arg.split(d).collect();
    if parts.len() < 4 {
        return None;
    }
    Some(SocketAddr::new(
        parts[2].parse().ok()?,
        parts[3].parse().ok()?,
    ))
}

async fn reply(w: &mut OwnedWriteHalf, text: &str) -> Res<()> {
    w.write_all(format!("{text}\r\n").as_bytes()).await?;
    Ok(())
}

/// Waits until the peer resets the data connection (the gateway's idle
/// timeout at work), for at most `STALL_CAP`; logs how long that took.
async fn wait_reset(d: &TcpStream, name: &str) -> bool {
    let start = tokio::time::Instant::now();
    let mut reset = false;
    while start.elapsed() < STALL_CAP {
        if let Ok(Some(_)) = d.take_error() {
            reset = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let how = if reset {
        "reset after"
    } else {
        "never reset in"
    };
    println!("STALLED {name} {how} {:.1}s", start.elapsed().as_secs_f64());
    reset
}

/// What the session does after a transfer.
enum After {
    Continue,
    /// The server "died": drop everything at once.
    Die,
}

async fn session(c: TcpStream) -> Res<()> {
    c.set_nodelay(true)?;
    let local = c.local_addr()?;
    let (r, mut w) = c.into_split();
    let mut r = BufReader::new(r);
    reply(&mut w, "220 soak fault server").await?;
    let mut data = Data::None;
    let mut line = String::new();
    loop {
        line.clear();
        if tokio::time::timeout(CONTROL_IDLE, r.read_line(&mut line)).await?? == 0 {
            return Ok(());
        }
        let l = line.trim_end();
        let (verb, arg) = l.split_once(' ').unwrap_or((l, ""));
        let verb = verb.to_ascii_uppercase();
        match verb.as_str() {
            "USER" => reply(&mut w, "331 any password").await?,
            "PASS" => reply(&mut w, "230 logged in").await?,
            "TYPE" => reply(&mut w, "200 type set").await?,
            "PASV" | "EPSV" => {
                let l = TcpListener::bind(SocketAddr::new(local.ip(), 0)).await?;
                let port = l.local_addr()?.port();
                data = Data::Passive(l);
                let text = match (verb.as_str(), local.ip()) {
                    ("PASV", IpAddr::V4(v4)) => {
                        let o = v4.octets();
                        format!(
                            "227 Entering Passive Mode ({},{},{},{},{},{})",
                            o[0],
                            o[1],
                            o[2],
                            o[3],
                            port >> 8,
                            port & 255
                        )
                    }
                    _ => format!("229 Entering Extended Passive Mode (|||{port}|)"),
                };
                reply(&mut w, &text).await?;
            }
            "PORT" | "EPRT" => {
                let to = if verb == "PORT" {
                    parse_port(arg)
                } else {
                    parse_eprt(arg)
                };
                match to {
                    Some(a) => {
                        data = Data::Active(a);
                        reply(&mut w, "200 active mode").await?
                    }
                    None => reply(&mut w, "501 bad address").await?,
                }
            }
            "RETR" | "STOR" => {
                let Some(spec) = Spec::parse(arg) else {
                    reply(&mut w, "550 no such file").await?;
                    continue;
                };
                let taken = std::mem::replace(&mut data, Data::None);
                reply(&mut w, "150 opening data connection").await?;
                let d = match open_data(taken, local.ip()).await {
                    Ok(d) => d,
                    Err(e) => {
                        reply(&mut w, &format!("425 no data connection: {e}")).await?;
                        continue;
                    }
                };
                let after = if verb == "RETR" {
                    download(d, &spec, arg, &mut w).await?
                } else {
                    upload(d, &spec, arg, &mut w).await?
                };
                if let After::Die = after {
                    // Both control halves drop here, as in a killed process.
                    return Ok(());
                }
            }
            "QUIT" => {
                reply(&mut w, "221 bye").await?;
                return Ok(());
            }
            _ => reply(&mut w, "200 ok").await?,
        }
    }
}

async fn download(mut d: TcpStream, spec: &Spec, name: &str, w: &mut OwnedWriteHalf) -> Res<After> {
    let stop = match spec.server {
        ServerFault::None => spec.size,
        _ => spec.fault_at(),
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0;
    while off < stop {
        let n = (stop - off).min(buf.len() as u64) as usize;
        fill(spec.seed, off, &mut buf[..n]);
        match tokio::time::timeout(STALL_CAP, d.write_all(&buf[..n])).await {
            Ok(Ok(())) => off += n as u64,
            Ok(Err(e)) => {
                set_reset(&d);
                reply(w, &format!("426 data connection broken: {e}")).await?;
                return Ok(After::Continue);
            }
            Err(_) => {
                set_reset(&d);
                reply(w, "426 data connection stalled").await?;
                return Ok(After::Continue);
            }
        }
    }
    match spec.server {
        ServerFault::None => {
            d.shutdown().await?;
            drop(d);
            reply(w, "226 transfer complete").await?;
        }
        ServerFault::Die => return Ok(After::Die),
        ServerFault::Rst => {
            set_reset(&d);
            drop(d);
            reply(w, "426 data connection reset (injected)").await?;
        }
        ServerFault::Stall => {
            let reset = wait_reset(&d, name).await;
            set_reset(&d);
            drop(d);
            let why = if reset {
                "reset by peer"
            } else {
                "never reset"
            };
            reply(w, &format!("426 stalled transfer ended: {why}")).await?;
        }
    }
    Ok(After::Continue)
}

async fn upload(mut d: TcpStream, spec: &Spec, name: &str, w: &mut OwnedWriteHalf) -> Res<After> {
    let mut h = Sha256::new();
    let mut got: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let fault_at = match spec.server {
        ServerFault::None => u64::MAX,
        ServerFault::Stall => {
            // A small window and an early stop: the rest of the upload
            // cannot all sit in this socket's buffer, so the gateway's
            // writes block and its idle timeout must act.
            let _ = socket2::SockRef::from(&d).set_recv_buffer_size(SMALL_WINDOW);
            SMALL_WINDOW as u64
        }
        _ => spec.fault_at(),
    };
    loop {
        if got >= fault_at {
            match spec.server {
                ServerFault::Die => return Ok(After::Die),
                ServerFault::Rst => {
                    set_reset(&d);
                    drop(d);
                    reply(w, "426 data connection reset (injected)").await?;
                }
                _ => {
                    let reset = wait_reset(&d, name).await;
                    set_reset(&d);
                    drop(d);
                    let why = if reset {
                        "reset by peer"
                    } else {
                        "never reset"
                    };
                    reply(w, &format!("426 stalled transfer ended: {why}")).await?;
                }
            }
            return Ok(After::Continue);
        }
        // Never read past the fault point, so it strikes at a known offset.
        let want = (fault_at - got).min(buf.len() as u64) as usize;
        match tokio::time::timeout(STALL_CAP, d.read(&mut buf[..want])).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                h.update(&buf[..n]);
                got += n as u64;
            }
            Ok(Err(e)) => {
                reply(w, &format!("426 data connection broken: {e}")).await?;
                return Ok(After::Continue);
            }
            Err(_) => {
                set_reset(&d);
                reply(w, "426 data connection stalled").await?;
                return Ok(After::Continue);
            }
        }
    }
    if got != spec.size && spec.client != ClientFault::Kill {
        println!("TRUNCATED {name} {got}/{}", spec.size);
    }
    drop(d);
    let sha = hex(&h.finalize());
    reply(w, &format!("226 Received {got} bytes sha256={sha}")).await?;
    Ok(After::Continue)
}

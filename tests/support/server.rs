//! A small FTP server for tests, with switches for the misbehaviour the
//! gateway must survive.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the server misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// Advertise this address in 227 instead of the real one.
    pub pasv_addr: Option<Ipv4Addr>,
    /// Passive ports are closed (a firewall that opens only port 21).
    pub passive_dead: bool,
    /// Refuse PORT/EPRT.
    pub refuse_active: bool,
    /// Reset the data connection half way through RETR and answer 426.
    pub die_mid_transfer: bool,
    /// Send a 227 out of the blue after login.
    pub unsolicited_227: Option<SocketAddr>,
    /// Answer PASV with a multi-line 227.
    pub multiline_227: bool,
    /// Answer RETR with 226 at once and write the data in the background,
    /// as a server whose socket buffers take the whole file does.
    pub early_226: bool,
    /// Answer AUTH with 234, then echo raw bytes (a stand-in for TLS).
    pub auth_tls: bool,
    /// Keep every passive listener open until the session ends, as servers
    /// that let each PASV port time out do.
    pub keep_passive: bool,
    /// Say nothing at all about a RETR whose data connection broke (a
    /// server that hangs after the client cut the transfer).
    pub silent_on_broken_retr: bool,
    /// Answer 226 to an upload whose data connection was reset, as a
    /// server that takes a reset for the end of the file does.
    pub stor_226_on_reset: bool,
    /// Accept a passive data connection at once and close it when the
    /// peer does, as pyftpdlib does with one no transfer uses.
    pub close_unused_data: bool,
}

/// A running test server.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its files.
    pub files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// Every command line received, in order.
    pub log: Arc<Mutex<Vec<String>>>,
    /// Peer addresses of data connections it accepted or made.
    pub data_peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl TestServer {
    pub async fn start(opts: Opts) -> TestServer {
        Self::start_on("127.0.0.1:0".parse().unwrap(), opts).await
    }

    pub async fn start_on(at: SocketAddr, opts: Opts) -> TestServer {
        let l = TcpListener::bind(at).await.unwrap();
        let s = TestServer {
            addr: l.local_addr().unwrap(),
            files: Arc::default(),
            log: Arc::default(),
            data_peers: Arc::default(),
        };
        let (files, log, peers) = (s.files.clone(), s.log.clone(), s.data_peers.clone());
        tokio::spawn(async move {
            while let Ok((c, _)) = l.accept().await {
                let (files, log, peers, opts) =
                    (files.clone(), log.clone(), peers.clone(), opts.clone());
                tokio::spawn(async move {
                    let _ = session(c, files, log, peers, opts).await;
                });
            }
        });
        s
    }

    pub fn put(&self, name: &str, data: Vec<u8>) {
        self.files.lock().unwrap().insert(name.into(), data);
    }

    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        self.files.lock().unwrap().get(name).cloned()
    }

    pub fn commands(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

enum DataSetup {
    None,
    Passive(TcpListener),
    Active(SocketAddr),
}

async fn open_data(
    setup: &mut DataSetup,
    peers: &Mutex<Vec<SocketAddr>>,
) -> std::io::Result<TcpStream> {
    match std::mem::replace(setup, DataSetup::None) {
        DataSetup::Passive(l) => {
            let (s, peer) = tokio::time::timeout(Duration::from_secs(10), l.accept()).await??;
            peers.lock().unwrap().push(peer);
            Ok(s)
        }
        DataSetup::Active(a) => {
            let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(a)).await??;
            peers.lock().unwrap().push(a);
            Ok(s)
        }
        DataSetup::None => Err(std::io::Error::other("no data setup")),
    }
}

async fn session(
    c: TcpStream,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    log: Arc<Mutex<Vec<String>>>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    opts: Opts,
) -> std::io::Result<()> {
    let local = c.local_addr()?;
    let (r, mut w) = c.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 test server ready\r\n").await?;
    let mut setup = DataSetup::None;
    let mut kept = Vec::new();
    let mut line = Vec::new();
    // REST's offset, for the next transfer command only.
    let mut rest: Option<usize> = None;
    // Whether the last transfer ended aborted: ABOR then says 226, else 225.
    let mut aborted = false;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let l = String::from_utf8_lossy(&strip_telnet(&line))
            .trim_end_matches(['\r', '\n'])
            .to_string();
        log.lock().unwrap().push(l.clone());
        let (verb, arg) = l.split_once(' ').unwrap_or((&l, ""));
        let verb = verb.to_ascii_uppercase();
        // Kept across PASV/PORT (clients send REST before or after them),
        // used by the next transfer command.
        let mut offset = None;
        if matches!(verb.as_str(), "RETR" | "STOR" | "APPE" | "LIST" | "NLST") {
            offset = rest.take();
            aborted = false;
        }
        let reply: String = match verb.as_str() {
            "REST" => match arg.trim().parse::<usize>() {
                Ok(n) => {
                    rest = Some(n);
                    format!("350 Restarting at {n}. Send STORE or RETRIEVE.")
                }
                Err(_) => "501 Bad REST argument".into(),
            },
            "ABOR" if std::mem::take(&mut aborted) => "226 ABOR command successful".into(),
            "ABOR" => {
                // A data setup without a transfer is dropped, as servers do.
                setup = DataSetup::None;
                "225 No transfer to ABOR".into()
            }
            "SIZE" => match files.lock().unwrap().get(arg) {
                Some(f) => format!("213 {}", f.len()),
                None => "550 No such file".into(),
            },
            "USER" => "331 Password please".into(),
            "PASS" => {
                w.write_all(b"230 Logged in\r\n").await?;
                if let Some(a) = opts.unsolicited_227 {
                    let (ip, p) = match a {
                        SocketAddr::V4(v) => (v.ip().octets(), v.port()),
                        _ => continue,
                    };
                    let msg = format!(
                        "227 Entering Passive Mode ({},{},{},{},{},{})\r\n",
                        ip[0],
                        ip[1],
                        ip[2],
                        ip[3],
                        p >> 8,
                        p & 255
                    );
                    w.write_all(msg.as_bytes()).await?;
                }
                continue;
            }
            "TYPE" => "200 Type set".into(),
            "SYST" => "215 UNIX Type: L8".into(),
            "NOOP" => "200 NOOP ok".into(),
            "FEAT" => "211-Features:\r\n EPSV\r\n EPRT\r\n211 End".into(),
            "PASV" | "EPSV" => {
                let l = TcpListener::bind(SocketAddr::new(local.ip(), 0)).await?;
                let port = l.local_addr()?.port();
                if opts.passive_dead {
                    drop(l);
                } else if opts.close_unused_data {
                    tokio::spawn(async move {
                        if let Ok((mut d, _)) = l.accept().await {
                            let mut sink = Vec::new();
                            let _ = d.read_to_end(&mut sink).await;
                            let _ = d.shutdown().await;
                        }
                    });
                } else if let DataSetup::Passive(old) =
                    std::mem::replace(&mut setup, DataSetup::Passive(l))
                {
                    if opts.keep_passive {
                        kept.push(old);
                    }
                }
                if verb == "EPSV" {
                    format!("229 Entering Extended Passive Mode (|||{port}|)")
                } else {
                    let ip = match (opts.pasv_addr, local.ip()) {
                        (Some(a), _) => a,
                        (None, IpAddr::V4(v4)) => v4,
                        (None, IpAddr::V6(_)) => Ipv4Addr::UNSPECIFIED,
                    };
                    let o = ip.octets();
                    let tuple = format!(
                        "{},{},{},{},{},{}",
                        o[0],
                        o[1],
                        o[2],
                        o[3],
                        port >> 8,
                        port & 255
                    );
                    if opts.multiline_227 {
                        format!("227-Entering Passive Mode\r\n227-({tuple})\r\n227 OK")
                    } else {
                        format!("227 Entering Passive Mode ({tuple}).")
                    }
                }
            }
            "PORT" | "EPRT" if opts.refuse_active => "500 Illegal PORT command".into(),
            "PORT" => match ftpalg::ftp::codec::parse_port(arg.as_bytes()) {
                Ok(a) => {
                    setup = DataSetup::Active(SocketAddr::V4(a));
                    "200 PORT ok".into()
                }
                Err(_) => "501 Bad PORT".into(),
            },
            "EPRT" => match ftpalg::ftp::codec::parse_eprt(arg.as_bytes()) {
                Ok(a) => {
                    setup = DataSetup::Active(a);
                    "200 EPRT ok".into()
                }
                Err(_) => "501 Bad EPRT".into(),
            },
            "RETR" => {
                let Some(mut content) = files.lock().unwrap().get(arg).cloned() else {
                    w.write_all(b"550 No such file\r\n").await?;
                    continue;
                };
                let from = offset.unwrap_or(0);
                if from > content.len() {
                    w.write_all(b"554 Restart offset past the end of the file\r\n")
                        .await?;
                    continue;
                }
                content.drain(..from);
                w.write_all(b"150 Opening data connection\r\n").await?;
                let mut d = match open_data(&mut setup, &peers).await {
                    Ok(d) => d,
                    Err(_) => {
                        w.write_all(b"425 Can't open data connection\r\n").await?;
                        continue;
                    }
                };
                if opts.early_226 {
                    tokio::spawn(async move {
                        if d.write_all(&content).await.is_ok() {
                            let _ = d.shutdown().await;
                        }
                    });
                    "226 Transfer complete".into()
                } else if opts.die_mid_transfer {
                    let half = content.len() / 2;
                    d.write_all(&content[..half]).await?;
                    let _ = socket2::SockRef::from(&d).set_linger(Some(Duration::ZERO));
                    drop(d);
                    "426 Connection closed; transfer aborted".into()
                } else {
                    match d.write_all(&content).await {
                        Ok(()) => {
                            d.shutdown().await?;
                            "226 Transfer complete".into()
                        }
                        Err(_) if opts.silent_on_broken_retr => continue,
                        Err(_) => {
                            aborted = true;
                            "426 Transfer aborted".into()
                        }
                    }
                }
            }
            "STOR" | "APPE" => {
                let old = files.lock().unwrap().get(arg).cloned().unwrap_or_default();
                let keep = match (verb.as_str(), offset) {
                    ("APPE", _) => old.len(),
                    (_, Some(n)) if n > old.len() => {
                        w.write_all(b"554 Restart offset past the end of the file\r\n")
                            .await?;
                        continue;
                    }
                    (_, Some(n)) => n,
                    (_, None) => 0,
                };
                w.write_all(b"150 Ok to send data\r\n").await?;
                let mut d = match open_data(&mut setup, &peers).await {
                    Ok(d) => d,
                    Err(_) => {
                        w.write_all(b"425 Can't open data connection\r\n").await?;
                        continue;
                    }
                };
                let mut buf = old[..keep].to_vec();
                match d.read_to_end(&mut buf).await {
                    Ok(_) => {
                        files.lock().unwrap().insert(arg.to_string(), buf);
                        "226 Transfer complete".into()
                    }
                    Err(_) => {
                        // What arrived is kept, as servers do: a resumed
                        // upload continues from it.
                        files.lock().unwrap().insert(arg.to_string(), buf);
                        if opts.stor_226_on_reset {
                            "226 Transfer complete".into()
                        } else {
                            aborted = true;
                            "426 Transfer aborted".into()
                        }
                    }
                }
            }
            "LIST" | "NLST" => {
                w.write_all(b"150 Here comes the listing\r\n").await?;
                let mut d = match open_data(&mut setup, &peers).await {
                    Ok(d) => d,
                    Err(_) => {
                        w.write_all(b"425 Can't open data connection\r\n").await?;
                        continue;
                    }
                };
                let mut names: Vec<String> = files.lock().unwrap().keys().cloned().collect();
                names.sort();
                for n in names {
                    d.write_all(format!("{n}\r\n").as_bytes()).await?;
                }
                d.shutdown().await?;
                "226 Directory send OK".into()
            }
            "AUTH" if opts.auth_tls => {
                w.write_all(b"234 Proceed with negotiation\r\n").await?;
                let mut r = r.into_inner();
                tokio::io::copy(&mut r, &mut w).await?;
                return Ok(());
            }
            "DELE" => {
                files.lock().unwrap().remove(arg);
                "250 Deleted".into()
            }
            "QUIT" => {
                w.write_all(b"221 Goodbye\r\n").await?;
                return Ok(());
            }
            _ => "502 Not implemented".into(),
        };
        w.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// The line without telnet commands (`IAC x`, and `IAC IAC` as one 255):
/// the synch before ABOR, whether its DM came inline or was lost.
fn strip_telnet(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut it = line.iter().copied();
    while let Some(b) = it.next() {
        if b != 255 {
            out.push(b);
            continue;
        }
        // IP, DM, or the byte after a lone IAC: a command, dropped.
        if let Some(255) = it.next() {
            out.push(255);
        }
    }
    out
}

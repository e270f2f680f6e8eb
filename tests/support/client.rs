//! A small FTP client for tests.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Data connection modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pasv,
    Epsv,
    Port,
    Eprt,
}

pub const MODES: [Mode; 4] = [Mode::Pasv, Mode::Epsv, Mode::Port, Mode::Eprt];

/// A complete reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

pub struct Client {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// Slow reader: sleep this long between reads of data.
    pub read_delay: Option<Duration>,
}

const T: Duration = Duration::from_secs(20);

impl Client {
    pub async fn connect(addr: SocketAddr) -> (Client, Reply) {
        let s = tokio::time::timeout(T, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let local = s.local_addr().unwrap();
        let (r, w) = s.into_split();
        let mut c = Client {
            r: BufReader::new(r),
            w,
            local,
            peer: addr,
            read_delay: None,
        };
        let greeting = c.reply().await;
        (c, greeting)
    }

    pub async fn reply(&mut self) -> Reply {
        tokio::time::timeout(T, self.reply_inner())
            .await
            .expect("reply in time")
    }

    async fn reply_inner(&mut self) -> Reply {
        let mut line = String::new();
        let mut text = String::new();
        let mut open: Option<String> = None;
        loop {
            line.clear();
            let n = self.r.read_line(&mut line).await.unwrap_or(0);
            if n == 0 {
                return Reply {
                    code: 0,
                    text: format!("{text}<closed>"),
                };
            }
            text.push_str(&line);
            let l = line.trim_end();
            let code = l.get(..3).unwrap_or("");
            match &open {
                None if l.as_bytes().get(3) == Some(&b'-') => open = Some(code.to_string()),
                None => {
                    return Reply {
                        code: code.parse().unwrap_or(0),
                        text,
                    }
                }
                Some(c) if l.starts_with(c.as_str()) && l.as_bytes().get(3) != Some(&b'-') => {
                    return Reply {
                        code: c.parse().unwrap_or(0),
                        text,
                    };
                }
                Some(_) => {}
            }
        }
    }

    pub async fn send(&mut self, line: &str) {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("send");
    }

    pub async fn cmd(&mut self, line: &str) -> Reply {
        self.send(line).await;
        self.reply().await
    }

    pub async fn login(&mut self, user: &str) {
        let r = self.cmd(&format!("USER {user}")).await;
        assert_eq!(r.code, 331, "{}", r.text);
        let r = self.cmd("PASS secret").await;
        assert_eq!(r.code, 230, "{}", r.text);
        let r = self.cmd("TYPE I").await;
        assert_eq!(r.code, 200, "{}", r.text);
    }

    /// Sets up a data connection; returns what to do once the transfer
    /// command is sent.
    pub async fn data(&mut self, mode: Mode) -> Result<Pending, Reply> {
        match mode {
            Mode::Pasv | Mode::Epsv => {
                let r = self
                    .cmd(if mode == Mode::Pasv { "PASV" } else { "EPSV" })
                    .await;
                let target = match (mode, r.code) {
                    (Mode::Pasv, 227) => {
                        let f =
                            ftpalg::ftp::codec::find_227(r.text.as_bytes()).expect("227 parses");
                        SocketAddr::V4(f.addr)
                    }
                    (Mode::Epsv, 229) => {
                        let e =
                            ftpalg::ftp::codec::find_229(r.text.as_bytes()).expect("229 parses");
                        SocketAddr::new(self.peer.ip(), e.port)
                    }
                    _ => return Err(r),
                };
                Ok(Pending::Connect(target, self.local.ip()))
            }
            Mode::Port | Mode::Eprt => {
                let l = TcpListener::bind(SocketAddr::new(self.local.ip(), 0))
                    .await
                    .unwrap();
                let a = l.local_addr().unwrap();
                let line = match (mode, a) {
                    (Mode::Port, SocketAddr::V4(v4)) => {
                        format!("PORT {}", ftpalg::ftp::codec::encode_port(v4))
                    }
                    _ => format!("EPRT {}", ftpalg::ftp::codec::encode_eprt(a)),
                };
                let r = self.cmd(&line).await;
                if r.code != 200 {
                    return Err(r);
                }
                Ok(Pending::Accept(l))
            }
        }
    }

    pub async fn retr(&mut self, name: &str, mode: Mode) -> Result<Vec<u8>, String> {
        let pending = self.data(mode).await.map_err(|r| r.text)?;
        self.send(&format!("RETR {name}")).await;
        let (mut d, prelim) = pending.open_after(self).await?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::time::timeout(T, d.read(&mut buf))
                .await
                .map_err(|_| "data read timeout".to_string())?
                .map_err(|e| format!("data read: {e}"))?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if let Some(delay) = self.read_delay {
                tokio::time::sleep(delay).await;
            }
        }
        self.finish_transfer(prelim).await?;
        Ok(out)
    }

    /// Reads what is left of a transfer's replies: the preliminary 150/125
    /// unless it was read already, then a final 226/250.
    async fn finish_transfer(&mut self, prelim: Option<Reply>) -> Result<(), String> {
        if prelim.is_none() {
            self.expect_started().await?;
        }
        let r = self.reply().await;
        if r.code != 226 && r.code != 250 {
            return Err(format!("final reply {}", r.text));
        }
        Ok(())
    }

    /// Reads the preliminary reply that says a transfer started.
    async fn expect_started(&mut self) -> Result<Reply, String> {
        let r = self.reply().await;
        if r.code != 150 && r.code != 125 {
            return Err(r.text);
        }
        Ok(r)
    }

    pub async fn stor(&mut self, name: &str, data: &[u8], mode: Mode) -> Result<(), String> {
        let pending = self.data(mode).await.map_err(|r| r.text)?;
        self.send(&format!("STOR {name}")).await;
        let (mut d, prelim) = pending.open_after(self).await?;
        d.write_all(data)
            .await
            .map_err(|e| format!("data write: {e}"))?;
        d.shutdown()
            .await
            .map_err(|e| format!("data shutdown: {e}"))?;
        self.finish_transfer(prelim).await?;
        Ok(())
    }
}

pub enum Pending {
    Connect(SocketAddr, IpAddr),
    Accept(TcpListener),
}

impl Pending {
    /// Opens the data connection after the transfer command was sent. For
    /// active mode the preliminary reply is read first (as ftplib does).
    async fn open_after(self, c: &mut Client) -> Result<(TcpStream, Option<Reply>), String> {
        match self {
            Pending::Connect(a, from) => {
                let s = if a.is_ipv4() {
                    TcpSocket::new_v4()
                } else {
                    TcpSocket::new_v6()
                }
                .unwrap();
                if from.is_ipv4() == a.is_ipv4() {
                    s.bind(SocketAddr::new(from, 0)).unwrap();
                }
                let d = tokio::time::timeout(T, s.connect(a))
                    .await
                    .map_err(|_| "data connect timeout".to_string())?
                    .map_err(|e| format!("data connect to {a}: {e}"))?;
                Ok((d, None))
            }
            Pending::Accept(l) => {
                let r = c.expect_started().await?;
                let (d, _) = tokio::time::timeout(T, l.accept())
                    .await
                    .map_err(|_| "accept timeout".to_string())?
                    .map_err(|e| e.to_string())?;
                Ok((d, Some(r)))
            }
        }
    }
}

impl Client {
    /// Connects from a chosen local address (a second "client host" on
    /// loopback, e.g. 127.0.0.2) and reads the greeting.
    pub async fn connect_from(from: IpAddr, addr: SocketAddr) -> (Client, Reply) {
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .expect("socket");
        sock.bind(SocketAddr::new(from, 0)).expect("bind source");
        let s = tokio::time::timeout(T, sock.connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let local = s.local_addr().unwrap();
        let (r, w) = s.into_split();
        let mut c = Client {
            r: BufReader::new(r),
            w,
            local,
            peer: addr,
            read_delay: None,
        };
        let greeting = c.reply().await;
        (c, greeting)
    }

    /// A client over a connection the test set up itself (socket options);
    /// reads the greeting.
    pub async fn from_halves(
        r: OwnedReadHalf,
        w: OwnedWriteHalf,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Client {
        let mut c = Client {
            r: BufReader::new(r),
            w,
            local,
            peer,
            read_delay: None,
        };
        let greeting = c.reply().await;
        assert_eq!(greeting.code, 220, "{}", greeting.text);
        c
    }

    /// The control connection's halves, for tests that write raw bytes.
    pub fn into_halves(self) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf) {
        (self.r, self.w)
    }
}

//! The self-test's FTP client: blocking, one session, a directory
//! listing in passive mode and one in active mode, every step under a
//! deadline. Its sockets may carry a firewall mark, so that a temporary
//! rule can send them (and nothing else) to a transparent listener.

use crate::ftp::codec::{find_227, find_229};
use socket2::{Domain, Socket, Type};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A reply: its code and its whole text.
pub(super) struct Reply {
    pub code: u16,
    pub text: String,
}

/// One control connection.
pub(super) struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
    /// Where the client believes it is connected (the server, for a
    /// transparent gateway): passive data goes to this host.
    peer: SocketAddr,
    local: SocketAddr,
    mark: Option<u32>,
    timeout: Duration,
}

/// A TCP connection under a deadline, with `mark` on its socket.
fn connect(to: SocketAddr, mark: Option<u32>, timeout: Duration) -> io::Result<TcpStream> {
    let s = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
    if let Some(m) = mark {
        s.set_mark(m)?;
    }
    s.connect_timeout(&to.into(), timeout)?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

impl Client {
    /// Connects and reads the greeting, which must be `220`.
    pub fn connect(to: SocketAddr, mark: Option<u32>, timeout: Duration) -> io::Result<Client> {
        let s = connect(to, mark, timeout)?;
        let local = s.local_addr()?;
        let mut c = Client {
            r: BufReader::new(s.try_clone()?),
            w: s,
            peer: to,
            local,
            mark,
            timeout,
        };
        let hello = c.reply()?;
        if hello.code != 220 {
            return Err(other(format!("greeting: {}", hello.text)));
        }
        Ok(c)
    }

    /// Reads one reply, multi-line ones whole.
    pub fn reply(&mut self) -> io::Result<Reply> {
        let mut text = String::new();
        let mut first: Option<String> = None;
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                return Err(other(format!(
                    "the connection closed{}",
                    if text.is_empty() {
                        String::new()
                    } else {
                        format!(" after {}", text.trim_end())
                    }
                )));
            }
            text.push_str(&line);
            let code = line
                .get(..3)
                .filter(|c| c.bytes().all(|b| b.is_ascii_digit()));
            match (&first, code) {
                (None, Some(c)) if line.as_bytes().get(3) == Some(&b'-') => {
                    first = Some(c.to_string())
                }
                (None, Some(c)) => return Ok(reply(c, text)),
                (Some(f), Some(c)) if f == c && line.as_bytes().get(3) == Some(&b' ') => {
                    return Ok(reply(c, text))
                }
                _ => {}
            }
        }
    }

    /// Sends a command and reads its reply.
    pub fn cmd(&mut self, line: &str) -> io::Result<Reply> {
        self.w.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// `USER` and `PASS`: `230` at the end.
    pub fn login(&mut self, user: &str, password: &str) -> io::Result<()> {
        let mut r = self.cmd(&format!("USER {user}"))?;
        if r.code == 331 {
            r = self.cmd(&format!("PASS {password}"))?;
        }
        if r.code != 230 {
            return Err(other(format!("login: {}", r.text.trim_end())));
        }
        Ok(())
    }

    /// `LIST` over a passive data connection (`EPSV`, or `PASV` where
    /// `EPSV` is refused): the bytes listed.
    pub fn list_passive(&mut self) -> io::Result<usize> {
        let mut r = self.cmd("EPSV")?;
        let port = if r.code == 229 {
            find_229(r.text.as_bytes())
                .map_err(|e| other(format!("229 unreadable ({e:?}): {}", r.text.trim_end())))?
                .port
        } else {
            r = self.cmd("PASV")?;
            if r.code != 227 {
                return Err(other(format!(
                    "EPSV and PASV refused: {}",
                    r.text.trim_end()
                )));
            }
            find_227(r.text.as_bytes())
                .map_err(|e| other(format!("227 unreadable ({e:?}): {}", r.text.trim_end())))?
                .addr
                .port()
        };
        // Where the client believes the server is, as clients do (the
        // address in a 227 is ignored).
        let data = connect(
            SocketAddr::new(self.peer.ip(), port),
            self.mark,
            self.timeout,
        )?;
        self.list_over(|| Ok(data))
    }

    /// `LIST` over an active data connection (`EPRT`, or `PORT` where
    /// `EPRT` is refused): the bytes listed.
    pub fn list_active(&mut self) -> io::Result<usize> {
        let l = TcpListener::bind(SocketAddr::new(self.local.ip(), 0))?;
        let at = l.local_addr()?;
        let proto = if at.is_ipv4() { 1 } else { 2 };
        let mut r = self.cmd(&format!("EPRT |{proto}|{}|{}|", at.ip(), at.port()))?;
        if r.code != 200 {
            let IpAddr::V4(ip) = at.ip() else {
                return Err(other(format!("EPRT refused: {}", r.text.trim_end())));
            };
            let [a, b, c, d] = ip.octets();
            let (hi, lo) = (at.port() >> 8, at.port() & 0xff);
            r = self.cmd(&format!("PORT {a},{b},{c},{d},{hi},{lo}"))?;
            if r.code != 200 {
                return Err(other(format!(
                    "EPRT and PORT refused: {}",
                    r.text.trim_end()
                )));
            }
        }
        let timeout = self.timeout;
        self.list_over(move || accept_within(&l, timeout))
    }

    /// Sends `LIST`, opens the data connection with `open` once the
    /// server has said `150`/`125`, reads it to its end and the final
    /// reply.
    fn list_over(&mut self, open: impl FnOnce() -> io::Result<TcpStream>) -> io::Result<usize> {
        let r = self.cmd("LIST")?;
        if r.code != 150 && r.code != 125 {
            return Err(other(format!("LIST: {}", r.text.trim_end())));
        }
        let mut data = open()?;
        data.set_read_timeout(Some(self.timeout))?;
        let mut got = Vec::new();
        data.read_to_end(&mut got)?;
        let end = self.reply()?;
        if end.code != 226 && end.code != 250 {
            return Err(other(format!(
                "after {} bytes: {}",
                got.len(),
                end.text.trim_end()
            )));
        }
        Ok(got.len())
    }

    /// `QUIT`, whatever the answer.
    pub fn quit(mut self) {
        let _ = self.cmd("QUIT");
    }
}

fn reply(code: &str, text: String) -> Reply {
    Reply {
        code: code.parse().unwrap_or(0),
        text,
    }
}

/// The one connection a server makes to an active-mode listener.
fn accept_within(l: &TcpListener, timeout: Duration) -> io::Result<TcpStream> {
    l.set_nonblocking(true)?;
    let end = Instant::now() + timeout;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no data connection from the server",
                ))
            }
            Err(e) => return Err(e),
        }
    }
}

//! Socket helpers shared by the server and the client.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Makes the next close of `s` a reset (SO_LINGER 0).
pub fn set_reset(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

/// The end of waiting for a control reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Code(u16, String),
    Closed,
    Timeout,
}

impl Reply {
    pub fn is_2xx(&self) -> bool {
        matches!(self, Reply::Code(c, _) if (200..300).contains(c))
    }
    pub fn is_1xx(&self) -> bool {
        matches!(self, Reply::Code(c, _) if (100..200).contains(c))
    }
    pub fn text(&self) -> String {
        match self {
            Reply::Code(_, t) => t.clone(),
            Reply::Closed => "control connection closed".into(),
            Reply::Timeout => "no reply".into(),
        }
    }
}

/// A client's control connection.
pub struct Ctl {
    pub r: BufReader<OwnedReadHalf>,
    pub w: OwnedWriteHalf,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

impl Ctl {
    pub async fn connect(addr: SocketAddr, wait: Duration) -> Res<Ctl> {
        let s = tokio::time::timeout(wait, TcpStream::connect(addr)).await??;
        s.set_nodelay(true)?;
        let local = s.local_addr()?;
        let (r, w) = s.into_split();
        Ok(Ctl {
            r: BufReader::new(r),
            w,
            peer: addr,
            local,
        })
    }

    /// The next complete reply (the last line of a multi-line one).
    pub async fn reply(&mut self, wait: Duration) -> Reply {
        let until = tokio::time::Instant::now() + wait;
        let mut line = String::new();
        loop {
            line.clear();
            match tokio::time::timeout_at(until, self.r.read_line(&mut line)).await {
                Err(_) => return Reply::Timeout,
                Ok(Err(_)) | Ok(Ok(0)) => return Reply::Closed,
                Ok(Ok(_)) => {}
            }
            let b = line.as_bytes();
            if b.len() >= 4 && b[3] == b' ' {
                if let Ok(code) = line[..3].parse() {
                    return Reply::Code(code, line.trim_end().to_string());
                }
            }
            if b.len() == 3 {
                if let Ok(code) = line[..3].parse() {
                    return Reply::Code(code, line.trim_end().to_string());
                }
            }
        }
    }

    pub async fn send(&mut self, line: &str) -> Res<()> {
        self.w.write_all(format!("{line}\r\n").as_bytes()).await?;
        Ok(())
    }

    pub async fn cmd(&mut self, line: &str, wait: Duration) -> Reply {
        if self.send(line).await.is_err() {
            return Reply::Closed;
        }
        self.reply(wait).await
    }
}

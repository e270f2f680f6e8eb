//! Copies a data connection both ways until both directions have ended.
//!
//! Half-close is kept: when one side finishes sending, the other side's
//! write half is shut down and the opposite direction goes on. An error or
//! an idle timeout resets both connections (SO_LINGER 0), so a broken
//! transfer is never mistaken for a complete one by either end.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

use super::pinhole::{normal_close, reset_on_close};
use super::splice;

/// Buffer for the fallback copy, per direction.
const BUF: usize = 64 * 1024;

/// Bytes moved, per direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// Client to server (uploads).
    pub up: u64,
    /// Server to client (downloads, listings).
    pub down: u64,
}

/// Limits of one relay.
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// No bytes either way for this long ends the relay with an error.
    pub idle: Duration,
    /// Bytes per second in each direction, if capped.
    pub rate: Option<u64>,
}

struct Shared {
    start: Instant,
    last: AtomicU64,
    abort: watch::Sender<bool>,
}

impl Shared {
    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

fn reset(from: &OwnedReadHalf, to: &OwnedWriteHalf) {
    reset_on_close(from.as_ref());
    reset_on_close(to.as_ref());
}

/// Copies one direction: with splice(2) where the kernel allows it, else
/// through a small buffer.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: Arc<Shared>,
    limits: RelayLimits,
) -> io::Result<u64> {
    let mut aborted = shared.abort.subscribe();
    let result = async {
        let mut total: u64 = 0;
        let started = Instant::now();
        let mut pipe = splice::Pipe::new().ok();
        let mut buf = Vec::new();
        loop {
            let n = loop {
                let read = async {
                    if let Some(p) = pipe.as_mut() {
                        match splice::fill(from.as_ref(), p).await {
                            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && total == 0 => {
                                // Not spliceable here: copy through userspace.
                                pipe = None;
                                Err(io::Error::new(io::ErrorKind::Interrupted, "fall back"))
                            }
                            r => r,
                        }
                    } else {
                        if buf.is_empty() {
                            buf = vec![0u8; BUF];
                        }
                        from.read(&mut buf).await
                    }
                };
                match tokio::time::timeout(limits.idle, read).await {
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(r) => break r?,
                    // The other direction may be the busy one (a download's
                    // client-to-server direction is silent throughout).
                    Err(_) if shared.idle_for() < limits.idle => continue,
                    Err(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("data connection idle for {:?}", limits.idle),
                        ))
                    }
                }
            };
            if n == 0 {
                to.shutdown().await?;
                return Ok(total);
            }
            match pipe.as_mut() {
                Some(p) => splice::drain(to.as_ref(), p).await?,
                None => to.write_all(&buf[..n]).await?,
            }
            total += n as u64;
            shared.touch();
            if let Some(rate) = limits.rate {
                let due = Duration::from_secs_f64(total as f64 / rate as f64);
                let spent = started.elapsed();
                if due > spent {
                    tokio::time::sleep(due - spent).await;
                }
            }
        }
    };
    let outcome = tokio::select! {
        r = result => r,
        _ = aborted.wait_for(|a| *a) => Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the other direction failed")),
    };
    if outcome.is_err() {
        reset(&from, &to);
        let _ = shared.abort.send(true);
    }
    outcome
}

/// Relays between the client's and the server's data connections.
/// `delivered` fires when the server-to-client direction has ended (all of
/// a download handed to the client, or failed): the moment a held `226`
/// may follow.
pub async fn relay(
    client: TcpStream,
    server: TcpStream,
    limits: RelayLimits,
    delivered: oneshot::Sender<()>,
) -> io::Result<Moved> {
    // Bulk data: leave Nagle on, so spliced chunks go out as full segments.
    normal_close(&client);
    normal_close(&server);
    let (abort, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        start: Instant::now(),
        last: AtomicU64::new(0),
        abort,
    });
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let down = async {
        let r = pump(sr, cw, shared.clone(), limits).await;
        let _ = delivered.send(());
        r
    };
    let (up, down) = tokio::join!(pump(cr, sw, shared.clone(), limits), down);
    match (up, down) {
        (Ok(up), Ok(down)) => Ok(Moved { up, down }),
        // Report the first cause, not the abort it triggered on the other side.
        (Err(a), Err(b)) if a.kind() == io::ErrorKind::ConnectionAborted => Err(b),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

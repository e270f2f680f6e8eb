//! Copies a data connection both ways until both directions have ended.
//!
//! Half-close is kept: when one side finishes sending, the other side's
//! write side is shut down and the opposite direction goes on. Every read
//! and every write has a deadline: no progress for the idle timeout ends
//! the relay with an error. Until the direction into a socket has ended
//! cleanly, that socket closes with a reset (SO_LINGER 0), whether the
//! relay fails, is cancelled or is dropped with its task (session end,
//! shutdown): a cut transfer is never mistaken for a complete one by
//! either end.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::splice;
use crate::proxy::datapath::{Moved, Progress};
use crate::proxy::sockets::{normal_close, reset_on_close};

/// Buffer for the fallback copy, per direction.
const BUF: usize = 64 * 1024;

/// A direction starts by reading into a buffer this big, and makes its
/// splice pipe only once a read fills it: a silent direction (the
/// client's side of a download), a listing or a small file then costs no
/// pipe (pipe2, F_SETPIPE_SZ and two closes, twice per data channel), and
/// a bulk transfer switches to splice(2) after its first full read.
const PROBE: usize = 16 * 1024;

/// Limits of one relay.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RelayLimits {
    /// No bytes either way for this long, or no progress writing one
    /// direction for this long, ends the relay with an error.
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

/// One socket of the relay, and whether the direction into it has ended
/// cleanly (its FIN is sent: a later close must not discard what is queued).
struct End<'a> {
    stream: &'a TcpStream,
    ended: AtomicBool,
    /// It is the client's connection.
    client: bool,
}

/// One peer broke its data connection (a reset, a close in the middle):
/// which one, so that a client that went away is told from a failure.
#[derive(Debug)]
pub(crate) struct PeerBroke {
    /// The client's connection, not the server's.
    pub client: bool,
    error: io::Error,
}

impl std::fmt::Display for PeerBroke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = if self.client { "client" } else { "server" };
        let what = crate::proxy::plain::plain_io_error(&self.error);
        write!(f, "the {who}'s data connection: {what}")
    }
}

impl std::error::Error for PeerBroke {}

/// `e` from `end`'s socket, naming its peer when the peer broke it.
fn blame(e: io::Error, end: &End<'_>) -> io::Error {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof => io::Error::new(
            e.kind(),
            PeerBroke {
                client: end.client,
                error: e,
            },
        ),
        _ => e,
    }
}

impl End<'_> {
    fn reset(&self) {
        if !self.ended.load(Ordering::Acquire) {
            reset_on_close(self.stream);
        }
    }
}

async fn read_some(from: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

/// Writes all of `data`, failing when no byte could be written for `idle`.
async fn write_all(
    to: &TcpStream,
    mut data: &[u8],
    idle: Duration,
    mut progress: impl FnMut(),
) -> io::Result<()> {
    let mut deadline = tokio::time::Instant::now() + idle;
    while !data.is_empty() {
        match tokio::time::timeout_at(deadline, to.writable()).await {
            Ok(r) => r?,
            Err(_) => return Err(splice::stalled(idle)),
        }
        match to.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = &data[n..];
                deadline = tokio::time::Instant::now() + idle;
                progress();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies one direction: with splice(2) where the kernel allows it, else
/// through a small buffer.
async fn copy(
    from: &End<'_>,
    to: &End<'_>,
    shared: &Shared,
    limits: RelayLimits,
    counted: &AtomicU64,
) -> io::Result<u64> {
    let mut total: u64 = 0;
    let started = Instant::now();
    let mut pipe: Option<splice::Pipe> = None;
    // Whether splice(2) may still be tried, and whether it has moved anything.
    let mut can_splice = true;
    let mut spliced = false;
    let mut buf = Vec::new();
    loop {
        let n = loop {
            let read = async {
                match pipe.as_mut() {
                    Some(p) => splice::fill(from.stream, p).await,
                    None => {
                        if buf.is_empty() {
                            buf = vec![0u8; if can_splice { PROBE } else { BUF }];
                        }
                        read_some(from.stream, &mut buf).await
                    }
                }
            };
            match tokio::time::timeout(limits.idle, read).await {
                Ok(Err(e))
                    if e.raw_os_error() == Some(libc::EINVAL) && !spliced && pipe.is_some() =>
                {
                    // Not spliceable here: copy through userspace.
                    pipe = None;
                    can_splice = false;
                    buf = Vec::new();
                }
                Ok(r) => break r.map_err(|e| blame(e, from))?,
                // The other direction may be the busy one (a download's
                // client-to-server direction is silent throughout).
                Err(_) if shared.idle_for() < limits.idle => {}
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("data connection idle for {:?}", limits.idle),
                    ))
                }
            }
        };
        if n == 0 {
            socket2::SockRef::from(to.stream).shutdown(std::net::Shutdown::Write)?;
            // Everything is queued and the FIN is behind it: from now on a
            // close must let the queue drain, not discard it.
            to.ended.store(true, Ordering::Release);
            normal_close(to.stream);
            return Ok(total);
        }
        let progress = || shared.touch();
        match pipe.as_mut() {
            Some(p) => {
                spliced = true;
                splice::drain(to.stream, p, limits.idle, progress)
                    .await
                    .map_err(|e| blame(e, to))?
            }
            None => {
                write_all(to.stream, &buf[..n], limits.idle, progress)
                    .await
                    .map_err(|e| blame(e, to))?;
                if can_splice && n == buf.len() {
                    // More is likely coming: move the rest in the kernel.
                    match splice::Pipe::new() {
                        Ok(p) => {
                            pipe = Some(p);
                            buf = Vec::new();
                        }
                        Err(_) => {
                            can_splice = false;
                            buf = vec![0u8; BUF];
                        }
                    }
                }
            }
        }
        total += n as u64;
        counted.fetch_add(n as u64, Ordering::Relaxed);
        shared.touch();
        if let Some(rate) = limits.rate {
            let due = Duration::from_secs_f64(total as f64 / rate as f64);
            let spent = started.elapsed();
            if due > spent {
                tokio::time::sleep(due - spent).await;
            }
        }
    }
}

/// One direction; a failure resets both sockets and stops the other
/// direction too.
async fn pump(
    from: &End<'_>,
    to: &End<'_>,
    shared: &Shared,
    limits: RelayLimits,
    counted: &AtomicU64,
) -> io::Result<u64> {
    let mut aborted = shared.abort.subscribe();
    let outcome = tokio::select! {
        r = copy(from, to, shared, limits, counted) => r,
        _ = aborted.wait_for(|a| *a) => Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the other direction failed")),
    };
    if outcome.is_err() {
        from.reset();
        to.reset();
        let _ = shared.abort.send(true);
    }
    outcome
}

/// [`relay_counted`] with nobody watching the bytes move.
#[cfg(test)]
pub(crate) async fn relay(
    client: TcpStream,
    server: TcpStream,
    limits: RelayLimits,
    delivered: impl FnOnce(Result<(), String>),
) -> io::Result<Moved> {
    relay_counted(client, server, limits, &Progress::default(), delivered).await
}

/// Relays between the client's and the server's data connections,
/// counting the bytes into `progress` as they move. `delivered` is called
/// once the server-to-client direction has ended, with how it ended: `Ok`
/// when all of it was handed to the client (the moment a held `226` may
/// follow), `Err` with the reason when it failed.
pub(crate) async fn relay_counted(
    client: TcpStream,
    server: TcpStream,
    limits: RelayLimits,
    progress: &Progress,
    delivered: impl FnOnce(Result<(), String>),
) -> io::Result<Moved> {
    // Nagle stays on for bulk data, so spliced chunks go out as full
    // segments. Until a direction ends cleanly, closing resets.
    reset_on_close(&client);
    reset_on_close(&server);
    let (abort, _) = watch::channel(false);
    let shared = Shared {
        start: Instant::now(),
        last: AtomicU64::new(0),
        abort,
    };
    let c = End {
        stream: &client,
        ended: AtomicBool::new(false),
        client: true,
    };
    let s = End {
        stream: &server,
        ended: AtomicBool::new(false),
        client: false,
    };
    let down = async {
        let r = pump(&s, &c, &shared, limits, &progress.down).await;
        delivered(r.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        r
    };
    let (up, down) = tokio::join!(pump(&c, &s, &shared, limits, &progress.up), down);
    match (up, down) {
        (Ok(up), Ok(down)) => Ok(Moved { up, down }),
        // Report the first cause, not the abort it triggered on the other side.
        (Err(a), Err(b)) if a.kind() == io::ErrorKind::ConnectionAborted => Err(b),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair over loopback: (the gateway's end, the peer's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (gw, _) = l.accept().await.unwrap();
        (gw, peer)
    }

    /// Relays a download of `data` (nothing uploaded); returns what the
    /// client received, what the relay reports and the pipes it made.
    async fn download(data: Vec<u8>) -> (Vec<u8>, Moved, usize) {
        let (gw_client, mut client) = pair().await;
        let (gw_server, mut server) = pair().await;
        let before = splice::CREATED.with(|c| c.get());
        let limits = RelayLimits {
            idle: Duration::from_secs(10),
            rate: None,
        };
        let relayed = relay(gw_client, gw_server, limits, |r| r.unwrap());
        let serve = async {
            server.write_all(&data).await.unwrap();
            server.shutdown().await.unwrap();
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "nothing was uploaded");
        };
        let fetch = async {
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        };
        let (moved, (), got) = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::join!(relayed, serve, fetch)
        })
        .await
        .expect("the relay finished");
        let made = splice::CREATED.with(|c| c.get()) - before;
        (got, moved.unwrap(), made)
    }

    #[tokio::test]
    async fn small_transfers_and_silent_directions_make_no_pipe() {
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let (got, moved, made) = download(data.clone()).await;
        assert_eq!(got, data);
        assert_eq!(moved, Moved { up: 0, down: 1000 });
        assert_eq!(made, 0, "pipes made for a 1000-byte download");
    }

    #[tokio::test]
    async fn bulk_transfers_splice_through_one_pipe() {
        let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
        let (got, moved, made) = download(data.clone()).await;
        assert!(got == data, "the download arrived whole and in order");
        assert_eq!(
            moved,
            Moved {
                up: 0,
                down: 8 << 20
            }
        );
        assert_eq!(made, 1, "only the busy direction makes a pipe");
    }
}

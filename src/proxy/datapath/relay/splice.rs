//! Zero-copy socket-to-socket copying with splice(2) through a pipe: the
//! bytes of a transfer never enter userspace, which is what keeps the
//! relay's CPU cost per GiB low.

use nix::fcntl::{fcntl, FcntlArg, OFlag, SpliceFFlags};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How much one splice call may move.
const CHUNK: usize = 1 << 20;

#[cfg(test)]
thread_local! {
    /// Pipes made on this thread, for tests that check when a relay makes one.
    pub static CREATED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A non-blocking pipe used as the kernel-side buffer between two sockets.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes in the pipe not yet written out.
    pub held: usize,
}

impl Pipe {
    /// A new pipe, enlarged where the system allows.
    pub fn new() -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        #[cfg(test)]
        CREATED.with(|c| c.set(c.get() + 1));
        // A larger pipe means fewer calls; failure only costs speed.
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(CHUNK as libc::c_int));
        Ok(Pipe {
            read,
            write,
            held: 0,
        })
    }
}

fn splice(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    // Null offsets: pipes and sockets have no position to splice from.
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    Ok(nix::fcntl::splice(from, None, to, None, len, flags)?)
}

/// Moves what the socket has into the pipe; `Ok(0)` is end of stream.
pub async fn fill(from: &TcpStream, pipe: &mut Pipe) -> io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_io(Interest::READABLE, || splice(from, &pipe.write, CHUNK)) {
            Ok(n) => {
                pipe.held += n;
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The error of a write that made no progress for `idle`.
pub fn stalled(idle: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no progress writing for {idle:?}: the peer does not read"),
    )
}

/// Writes everything held in the pipe to the socket. Fails when no byte
/// could be written for `idle` (a peer that stopped reading), calling
/// `progress` after every write that moved something.
pub async fn drain(
    to: &TcpStream,
    pipe: &mut Pipe,
    idle: Duration,
    mut progress: impl FnMut(),
) -> io::Result<()> {
    let mut deadline = Instant::now() + idle;
    while pipe.held > 0 {
        match tokio::time::timeout_at(deadline, to.writable()).await {
            Ok(r) => r?,
            Err(_) => return Err(stalled(idle)),
        }
        match to.try_io(Interest::WRITABLE, || splice(&pipe.read, to, pipe.held)) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "splice wrote nothing",
                ))
            }
            Ok(n) => {
                pipe.held -= n;
                deadline = Instant::now() + idle;
                progress();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

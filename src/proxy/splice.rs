//! Zero-copy socket-to-socket copying with splice(2) through a pipe: the
//! bytes of a transfer never enter userspace, which is what keeps the
//! relay's CPU cost per GiB low.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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
        let mut fds = [0 as RawFd; 2];
        // SAFETY: fds points to two ints, as pipe2 requires.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        #[cfg(test)]
        CREATED.with(|c| c.set(c.get() + 1));
        // SAFETY: pipe2 succeeded, so both descriptors are open and ours.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A larger pipe means fewer calls; failure only costs speed.
        // SAFETY: plain fcntl on a descriptor we own.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
        Ok(Pipe {
            read,
            write,
            held: 0,
        })
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call; null
    // offsets are allowed for pipes and sockets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Moves what the socket has into the pipe; `Ok(0)` is end of stream.
pub async fn fill(from: &TcpStream, pipe: &mut Pipe) -> io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_io(Interest::READABLE, || {
            splice(from.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)
        }) {
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
        match to.try_io(Interest::WRITABLE, || {
            splice(pipe.read.as_raw_fd(), to.as_raw_fd(), pipe.held)
        }) {
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

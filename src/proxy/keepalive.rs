//! TCP keepalive on control connections.
//!
//! During a long transfer the control connection carries nothing; a NAT or
//! firewall on the way (a carrier's CGNAT forgets idle mappings after a few
//! minutes) drops its state, and the reply that ends the transfer never
//! arrives. Keepalive probes, sent by the kernel, refresh that state on both
//! sides of the gateway without touching the FTP dialogue.

use socket2::{SockRef, TcpKeepalive};
use std::os::fd::AsFd;
use std::time::Duration;
#[cfg(test)]
use tokio::net::TcpStream;

/// Probes a silent connection this often once `idle` has passed, and gives
/// it up after this many unanswered probes.
const PROBES: u32 = 4;

/// Turns keepalive on for `s`: the first probe after `idle` of silence,
/// then every `idle / 3` (at least a second). `None` leaves the socket as
/// it is. A failure is returned for the caller to log: the session works
/// without keepalive, only less well behind a NAT.
pub fn enable(s: &impl AsFd, idle: Option<Duration>) -> std::io::Result<()> {
    let Some(idle) = idle else { return Ok(()) };
    let interval = (idle / 3).max(Duration::from_secs(1));
    let ka = TcpKeepalive::new()
        .with_time(idle)
        .with_interval(interval)
        .with_retries(PROBES);
    SockRef::from(s).set_tcp_keepalive(&ka)
}

/// Sets keepalive on a listening socket as `idle` says, off for `None`:
/// the connections it accepts from then on start with these options, so a
/// session need not set them one system call at a time.
pub fn set_on_listener(l: &impl AsFd, idle: Option<Duration>) -> std::io::Result<()> {
    match idle {
        Some(_) => enable(l, idle),
        None => SockRef::from(l).set_keepalive(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sets_the_kernel_options() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let r = SockRef::from(&c);
        assert!(!r.keepalive().unwrap());
        enable(&c, Some(Duration::from_secs(45))).unwrap();
        assert!(r.keepalive().unwrap());
        assert_eq!(r.tcp_keepalive_time().unwrap(), Duration::from_secs(45));
        assert_eq!(r.tcp_keepalive_interval().unwrap(), Duration::from_secs(15));
        assert_eq!(r.tcp_keepalive_retries().unwrap(), PROBES);
    }

    #[tokio::test]
    async fn accepted_connections_inherit_the_listeners_options() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        set_on_listener(&l, Some(Duration::from_secs(45))).unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (a, _) = l.accept().await.unwrap();
        let r = SockRef::from(&a);
        assert!(r.keepalive().unwrap());
        assert_eq!(r.tcp_keepalive_time().unwrap(), Duration::from_secs(45));
        assert_eq!(r.tcp_keepalive_interval().unwrap(), Duration::from_secs(15));
        assert_eq!(r.tcp_keepalive_retries().unwrap(), PROBES);
        // Turned off again (a reload), later connections have none.
        set_on_listener(&l, None).unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        assert!(!SockRef::from(&b).keepalive().unwrap());
    }
}

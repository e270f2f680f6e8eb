//! The driver under hostile or broken peers: stalled and broken relays,
//! clients that do not read, data-channel floods, TLS passthrough limits
//! and shutdown. Every test has its own deadline, so a hang is a failure.

mod support;

use ftpalg::ftp::framer::{Frame, Line};
use ftpalg::ftp::session::{Action, AllowAll, DataId, Session, SessionConfig, Side, Upstream};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::client::Client;
use support::server::{Opts, TestServer};
use support::{channels, data, eventually, explicit_rules, gateway, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Connects a data connection with a small receive buffer, so a client
/// that does not read stalls the sender quickly.
async fn data_connect(to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    tokio::time::timeout(Duration::from_secs(5), s.connect(to))
        .await
        .expect("data connect in time")
        .expect("data connect")
}

async fn epsv(c: &mut Client) -> SocketAddr {
    let r = c.cmd("EPSV").await;
    assert_eq!(r.code, 229, "{}", r.text);
    let port = ftpalg::ftp::codec::find_229(r.text.as_bytes())
        .unwrap()
        .port;
    SocketAddr::new(c.peer.ip(), port)
}

/// A test server started with `opts`, behind one passive listener whose
/// rules end with `extra`.
async fn passive_gateway(opts: Opts, extra: &str) -> (TestServer, ftpalg::proxy::Handle) {
    let server = TestServer::start(opts).await;
    let gw = gateway(&explicit_rules(server.addr, "passive", extra)).await;
    (server, gw)
}

/// Logs in and starts `RETR f` over EPSV: the control client and the
/// data connection (small receive buffer), before any reply to the RETR.
async fn retr_f(gw: &ftpalg::proxy::Handle) -> (Client, TcpStream) {
    let (mut c, _) = Client::connect(gw.addrs[0]).await;
    c.login("u").await;
    let at = epsv(&mut c).await;
    c.send("RETR f").await;
    let d = data_connect(at).await;
    (c, d)
}

/// A control client over `s`, a socket the test tuned; reads the greeting.
async fn client_over(s: TcpSocket, gw: &ftpalg::proxy::Handle) -> Client {
    let stream = s.connect(gw.addrs[0]).await.unwrap();
    let local = stream.local_addr().unwrap();
    let (r, w) = stream.into_split();
    Client::from_halves(r, w, local, gw.addrs[0]).await
}

/// Waits up to `limit` for the gateway to have no session left.
async fn sessions_end(gw: &ftpalg::proxy::Handle, limit: Duration) -> bool {
    eventually(limit, || gw.gateway().active_sessions() == 0).await
}

/// Asserts that `d` ends with a reset within `limit`, not a clean close.
async fn assert_reset(d: &mut TcpStream, limit: Duration, why: &str) {
    let e = read_to_end_or_error(d, limit).await;
    assert_eq!(
        e.map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionReset),
        "{why}"
    );
}

/// Reads until the connection ends; returns the error, or `None` for a
/// clean end of stream.
async fn read_to_end_or_error(d: &mut TcpStream, limit: Duration) -> Option<std::io::Error> {
    let mut buf = vec![0u8; 256 * 1024];
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, d.read(&mut buf)).await {
            Err(_) => panic!("data connection neither ended nor failed within {limit:?}"),
            Ok(Ok(0)) => return None,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Some(e),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_is_reset_and_the_client_gets_426() {
    within(40, async {
        let (server, gw) = passive_gateway(
            Opts {
                early_226: true,
                ..Opts::default()
            },
            "limits:\n  transfer_idle_timeout: 1s\n",
        )
        .await;
        server.put("f", data(32 * 1024 * 1024, 1));
        let (mut c, mut d) = retr_f(&gw).await;
        // Half-close and never read: the relay's writes towards us stall.
        d.shutdown().await.unwrap();
        assert_eq!(c.reply().await.code, 150);
        let started = Instant::now();
        let r = c.reply().await;
        assert_eq!(r.code, 426, "a stalled transfer was reported as {}", r.text);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_reset(
            &mut d,
            Duration::from_secs(10),
            "the stalled data connection must be reset",
        )
        .await;
        assert!(
            eventually(Duration::from_secs(3), || channels(&gw) == 0).await,
            "relay still alive: {}",
            channels(&gw)
        );
        // The session goes on.
        assert_eq!(c.cmd("NOOP").await.code, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_download_is_never_reported_complete() {
    within(30, async {
        let (server, gw) = passive_gateway(
            Opts {
                early_226: true,
                ..Opts::default()
            },
            "",
        )
        .await;
        server.put("f", data(16 * 1024 * 1024, 2));
        let (mut c, mut d) = retr_f(&gw).await;
        let mut b = vec![0u8; 4096];
        let n = d.read(&mut b).await.unwrap();
        assert!(n > 0);
        // The server has answered 226 by now; the client goes away mid-file.
        assert_eq!(c.reply().await.code, 150);
        tokio::time::sleep(Duration::from_millis(200)).await;
        socket2::SockRef::from(&d)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(d);
        let r = c.reply().await;
        assert_eq!(r.code, 426, "a broken download was reported as {}", r.text);
        assert!(eventually(Duration::from_secs(3), || channels(&gw) == 0).await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_ends_resets_its_relays() {
    within(30, async {
        let (server, gw) =
            passive_gateway(Opts::default(), "limits:\n  transfer_idle_timeout: 60s\n").await;
        server.put("f", data(32 * 1024 * 1024, 3));
        let (mut c, mut d) = retr_f(&gw).await;
        assert_eq!(c.reply().await.code, 150);
        assert!(eventually(Duration::from_secs(3), || channels(&gw) == 1).await);
        // The client leaves while its download is stalled.
        drop(c);
        assert!(
            eventually(Duration::from_secs(3), || channels(&gw) == 0).await,
            "relay outlived its session: {} alive",
            channels(&gw)
        );
        assert_reset(
            &mut d,
            Duration::from_secs(10),
            "the data connection ended without a reset",
        )
        .await;
        assert!(sessions_end(&gw, Duration::from_secs(3)).await);
    })
    .await;
}

/// Writes `line` over and over until the peer stops taking it or `limit`
/// passes; counts the bytes taken.
fn flood(
    mut w: tokio::net::tcp::OwnedWriteHalf,
    line: &'static [u8],
    limit: Duration,
) -> Arc<AtomicU64> {
    let taken = Arc::new(AtomicU64::new(0));
    let t = taken.clone();
    tokio::spawn(async move {
        let chunk: Vec<u8> = line
            .iter()
            .copied()
            .cycle()
            .take(line.len() * 256)
            .collect();
        let end = tokio::time::Instant::now() + limit;
        while let Ok(Ok(n)) = tokio::time::timeout_at(end, w.write(&chunk)).await {
            if n == 0 {
                break;
            }
            t.fetch_add(n as u64, Ordering::Relaxed);
        }
        // Keep the connection open until the deadline; only then close it.
        tokio::time::sleep_until(end).await;
    });
    taken
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_its_control_connection_loses_the_session() {
    within(30, async {
        let (server, gw) =
            passive_gateway(Opts::default(), "limits:\n  control_idle_timeout: 1s\n").await;
        let s = TcpSocket::new_v4().unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        let c = client_over(s, &gw).await;
        let (_r, w) = c.into_halves();
        // Replies the gateway writes itself (refused PORT lines, nothing
        // reaches the server) pile up towards a client that never reads.
        let taken = flood(w, b"PORT 1,2,3,4,40,1\r\n", Duration::from_secs(20));
        let started = Instant::now();
        assert!(
            sessions_end(&gw, Duration::from_secs(10)).await,
            "a client that never reads kept its session ({} bytes sent)",
            taken.load(Ordering::Relaxed)
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        // The server saw nothing of the flood: the gateway ended the
        // session because of the client, not because the server stalled.
        assert!(server.commands().iter().all(|l| !l.starts_with("PORT")));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_behind_a_held_reply_are_not_read_without_bound() {
    within(40, async {
        let (server, gw) = passive_gateway(
            Opts {
                early_226: true,
                ..Opts::default()
            },
            "limits:\n  transfer_idle_timeout: 30s\n",
        )
        .await;
        server.put("f", data(32 * 1024 * 1024, 4));
        let s = TcpSocket::new_v4().unwrap();
        s.set_send_buffer_size(4096).unwrap();
        let mut c = client_over(s, &gw).await;
        c.login("u").await;
        let at = epsv(&mut c).await;
        c.send("RETR f").await;
        // Connected but never read: the 226 the server sent at once is held.
        let _d = data_connect(at).await;
        assert_eq!(c.reply().await.code, 150);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Each line is refused by the gateway itself with a longer reply,
        // which queues behind the held 226.
        let (_r, w) = c.into_halves();
        let taken = flood(w, b"PORT 1,2,3,4,40,1\r\n", Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let first = taken.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let grown = taken.load(Ordering::Relaxed) - first;
        assert!(
            grown < 64 * 1024,
            "the gateway kept reading behind a held reply: {first} bytes, then {grown} more"
        );
        assert!(first < 8 * 1024 * 1024, "{first} bytes taken");
    })
    .await;
}

async fn opaque_session(gw: &ftpalg::proxy::Handle) -> TcpStream {
    let mut s = TcpStream::connect(gw.addrs[0]).await.unwrap();
    let mut b = vec![0u8; 256];
    let n = s.read(&mut b).await.unwrap();
    assert!(b[..n].starts_with(b"220"));
    s.write_all(b"AUTH TLS\r\n").await.unwrap();
    let n = s.read(&mut b).await.unwrap();
    assert!(
        b[..n].starts_with(b"234"),
        "{:?}",
        String::from_utf8_lossy(&b[..n])
    );
    // Raw bytes now pass both ways.
    s.write_all(b"\x16\x03\x01hello").await.unwrap();
    let mut echo = [0u8; 8];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"\x16\x03\x01hello");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_passthrough_session_has_an_idle_timeout() {
    within(20, async {
        let (_server, gw) = passive_gateway(
            Opts {
                auth_tls: true,
                ..Opts::default()
            },
            "limits:\n  control_idle_timeout: 1s\nsecurity:\n  tls: passthrough\n",
        )
        .await;
        let mut s = opaque_session(&gw).await;
        let started = Instant::now();
        let mut b = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_secs(8), s.read(&mut b)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "an idle TLS passthrough session was kept: {r:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(900));
        assert!(sessions_end(&gw, Duration::from_secs(2)).await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_passthrough_session_ends_at_shutdown() {
    within(20, async {
        let (_server, gw) = passive_gateway(
            Opts {
                auth_tls: true,
                ..Opts::default()
            },
            "security:\n  tls: passthrough\n",
        )
        .await;
        let g = gw.gateway().clone();
        let mut s = opaque_session(&gw).await;
        let started = Instant::now();
        let stop = tokio::spawn(gw.shutdown(Duration::from_secs(10)));
        let mut b = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "shutdown left a TLS passthrough session open: {r:?}"
        );
        stop.await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "shutdown waited for an opaque session"
        );
        assert_eq!(g.active_sessions(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasv_loop_keeps_at_most_two_data_channels() {
    within(60, async {
        let (_server, gw) = passive_gateway(
            Opts {
                keep_passive: true,
                ..Opts::default()
            },
            "",
        )
        .await;
        let (mut c, _) = Client::connect(gw.addrs[0]).await;
        c.login("u").await;
        let mut conns = Vec::new();
        let mut most = 0;
        for i in 0..50 {
            let r = c.cmd("PASV").await;
            assert_eq!(r.code, 227, "round {i}: {}", r.text);
            let at = SocketAddr::V4(
                ftpalg::ftp::codec::find_227(r.text.as_bytes())
                    .unwrap()
                    .addr,
            );
            conns.push(data_connect(at).await);
            // Let the relay get going before the next round.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = channels(&gw);
            most = most.max(now);
            assert!(now <= 2, "round {i}: {now} data channels alive");
        }
        // Every channel but the last was closed with a reset.
        for (i, d) in conns.iter_mut().take(49).enumerate() {
            assert_reset(d, Duration::from_secs(5), &format!("channel {i}")).await;
        }
        assert!(most >= 1);
        assert_eq!(c.cmd("NOOP").await.code, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_resets_a_transfer_still_running_when_the_grace_ends() {
    within(40, async {
        let (server, gw) = passive_gateway(Opts::default(), "").await;
        server.put("f", data(32 * 1024 * 1024, 5));
        let (mut c, mut d) = retr_f(&gw).await;
        assert_eq!(c.reply().await.code, 150);
        // A slow reader: the transfer is still running when the grace ends.
        let mut buf = vec![0u8; 4096];
        for _ in 0..5 {
            assert!(d.read(&mut buf).await.unwrap() > 0);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gw.shutdown(Duration::from_millis(300)).await;
        assert_reset(
            &mut d,
            Duration::from_secs(20),
            "a transfer cut by shutdown ended like a complete one",
        )
        .await;
        // The transfer never reads as complete on the control channel
        // either: the client is told the gateway is stopping.
        let r = c.reply().await;
        assert!(matches!(r.code, 421 | 426), "{}", r.text);
    })
    .await;
}
/// What the client gets of a download's reply (`reply`, as the server
/// sends it after its 150) once the relay reports how the data went.
fn reply_after_delivery(reply: &[&str], delivered: Result<(), &str>) -> Vec<u8> {
    let policy = AllowAll::default();
    let mut s = Session::new(SessionConfig::new(
        "127.0.0.1:5000".parse().unwrap(),
        Upstream::Fixed("127.0.0.1:21".parse().unwrap()),
    ));
    let line = |t: &str| Frame::Line(Line::new(t.as_bytes()));
    let id = DataId(1);
    s.on_server(line("220 ready"), &policy);
    s.on_client(line("PASV"), &policy);
    s.on_server(line("227 Entering Passive Mode (127,0,0,1,4,1)."), &policy);
    s.data_prepared(id, Side::Server, "127.0.0.1:6000".parse().unwrap(), &policy);
    s.data_prepared(id, Side::Client, "127.0.0.1:6001".parse().unwrap(), &policy);
    s.on_client(line("RETR f"), &policy);
    s.on_server(line("150 Opening"), &policy);
    while s.poll_action().is_some() {}
    for l in reply {
        s.on_server(line(l), &policy);
    }
    s.data_delivered(id, delivered);
    std::iter::from_fn(|| s.poll_action())
        .filter_map(|a| match a {
            Action::ToClient(b) => Some(b),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn the_engine_turns_a_held_success_into_426_when_the_data_path_failed() {
    let done = ["226 Transfer complete."];
    let aborted = b"426 Connection closed; transfer aborted.\r\n".to_vec();
    assert_eq!(
        reply_after_delivery(&done, Ok(())),
        b"226 Transfer complete.\r\n"
    );
    assert_eq!(reply_after_delivery(&done, Err("stalled")), aborted);
    // The first lines of a multi-line success reply give way to the 426.
    let multi = [
        "226-Statistics follow",
        " 1000 bytes",
        "226 Transfer complete.",
    ];
    assert_eq!(reply_after_delivery(&multi, Err("stalled")), aborted);
    // A reply that already says failure is left as it is.
    assert_eq!(
        reply_after_delivery(&["451 Local error."], Err("stalled")),
        b"451 Local error.\r\n"
    );
}

//! The stop that `systemctl stop`, `restart` and a package upgrade send
//! (SIGTERM): new sessions are refused at once, idle ones are told `421`,
//! running transfers finish within `limits.shutdown_grace` (the grace of
//! the rules in force), and the stop returns as soon as the last one has.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::client::Client;
use support::server::{Opts, TestServer};
use support::{data, explicit_rules, gateway, sha256, within};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// The file each test downloads: large enough that a reader taking 64 KiB
/// every 20 ms is still at it when the stop comes.
const SIZE: usize = 4 * 1024 * 1024;

/// Logs in and starts `RETR f` over EPSV with a small receive buffer: the
/// control client and the data connection, before any reply to the RETR.
async fn retr_f(gw: &ftpalg::proxy::Handle) -> (Client, TcpStream) {
    let (mut c, _) = Client::connect(gw.addrs[0]).await;
    c.login("u").await;
    let r = c.cmd("EPSV").await;
    assert_eq!(r.code, 229, "{}", r.text);
    let port = ftpalg::ftp::codec::find_229(r.text.as_bytes())
        .unwrap()
        .port;
    c.send("RETR f").await;
    let s = TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(16 * 1024).unwrap();
    let d = s
        .connect(SocketAddr::new(c.peer.ip(), port))
        .await
        .expect("data connect");
    (c, d)
}

/// Reads `d` to its end, 64 KiB every `pace`: what arrived, or the error
/// that ended it.
async fn read_paced(d: &mut TcpStream, pace: Duration) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match d.read(&mut buf).await? {
            0 => return Ok(got),
            n => got.extend_from_slice(&buf[..n]),
        }
        tokio::time::sleep(pace).await;
    }
}

/// Waits up to 5 s until nothing accepts on `addr` any more.
async fn stops_accepting(addr: SocketAddr) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_running_at_stop_completes_within_the_grace() {
    within(60, async {
        let server = TestServer::start(Opts::default()).await;
        let file = data(SIZE, 7);
        server.put("f", file.clone());
        let gw = gateway(&explicit_rules(
            server.addr,
            "passive",
            "limits:\n  shutdown_grace: 30s\n",
        ))
        .await;
        let addr = gw.addrs[0];
        let (mut idle, _) = Client::connect(addr).await;
        idle.login("u").await;
        let (mut c, mut d) = retr_f(&gw).await;
        assert_eq!(c.reply().await.code, 150);
        let reader = tokio::spawn(async move {
            let got = read_paced(&mut d, Duration::from_millis(20)).await;
            (got, Instant::now())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!reader.is_finished(), "the download ended before the stop");

        let stop = tokio::spawn(gw.stop());
        // New sessions are refused from the start of the stop ...
        assert!(
            stops_accepting(addr).await,
            "the listener still accepts during the stop"
        );
        // ... and an idle one is told the gateway is going.
        assert_eq!(idle.reply().await.code, 421);

        // The running transfer goes on to its end, whole, and its 226.
        let (got, ended) = reader.await.unwrap();
        let got = got.expect("the download ends cleanly, not with a reset");
        assert_eq!(got.len(), SIZE);
        assert_eq!(sha256(&got), sha256(&file));
        let r = c.reply().await;
        assert_eq!(r.code, 226, "{}", r.text);
        // The stop returns once the last session is gone, long before the
        // 30 s grace.
        tokio::time::timeout(Duration::from_secs(5), stop)
            .await
            .expect("the stop returns soon after the last transfer")
            .unwrap();
        assert!(ended.elapsed() < Duration::from_secs(5));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_uses_the_grace_of_the_rules_in_force() {
    within(60, async {
        let server = TestServer::start(Opts::default()).await;
        server.put("f", data(SIZE * 4, 8));
        let yaml = |grace: &str| {
            explicit_rules(
                server.addr,
                "passive",
                &format!("limits:\n  shutdown_grace: {grace}\n"),
            )
        };
        let gw = gateway(&yaml("1h")).await;
        // A reload shortens the grace: the stop must follow it, not the
        // rules the gateway started with.
        gw.reload(ftpalg::rules::from_str(&yaml("1s")).rules.unwrap());
        assert_eq!(
            gw.gateway().rules().limits.shutdown_grace,
            Duration::from_secs(1)
        );
        let (mut c, mut d) = retr_f(&gw).await;
        assert_eq!(c.reply().await.code, 150);
        // A reader far too slow to finish within the grace.
        let reader =
            tokio::spawn(async move { read_paced(&mut d, Duration::from_millis(100)).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), gw.stop())
            .await
            .expect("the stop ends after the 1 s grace, not the first rules' hour");
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(1), "stopped after {took:?}");
        // The transfer cut at the end of the grace ends with a reset,
        // never like a complete file.
        let e = reader
            .await
            .unwrap()
            .expect_err("a cut transfer reads as complete");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        let r = c.reply().await;
        assert!(matches!(r.code, 421 | 426), "{}", r.text);
    })
    .await;
}

/// A server that ends each download's data connection and answers `226`
/// only `delay` later, as a server that closes the file, logs the transfer
/// or waits for the client's FIN does: serves `body` for any RETR.
async fn slow_226_server(body: Vec<u8>, delay: Duration) -> SocketAddr {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let mut lines = BufReader::new(r).lines();
        w.write_all(b"220 slow\r\n").await.unwrap();
        let mut data: Option<tokio::net::TcpListener> = None;
        while let Ok(Some(line)) = lines.next_line().await {
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            let reply = match verb.as_str() {
                "USER" => "331 go on".to_string(),
                "PASS" => "230 in".to_string(),
                "PASV" | "EPSV" => {
                    let d = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let p = d.local_addr().unwrap().port();
                    data = Some(d);
                    if verb == "PASV" {
                        format!(
                            "227 Entering Passive Mode (127,0,0,1,{},{})",
                            p >> 8,
                            p & 0xff
                        )
                    } else {
                        format!("229 Entering Extended Passive Mode (|||{p}|)")
                    }
                }
                "RETR" => {
                    w.write_all(b"150 here it comes\r\n").await.unwrap();
                    let (mut d, _) = data.take().unwrap().accept().await.unwrap();
                    d.write_all(&body).await.unwrap();
                    d.shutdown().await.unwrap();
                    drop(d);
                    tokio::time::sleep(delay).await;
                    "226 done".to_string()
                }
                "QUIT" => "221 bye".to_string(),
                _ => "200 ok".to_string(),
            };
            if w.write_all(format!("{reply}\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_between_a_transfers_last_byte_and_its_226_passes_the_226_on() {
    within(30, async {
        let body = data(256 * 1024, 9);
        let server = slow_226_server(body.clone(), Duration::from_millis(800)).await;
        let gw = gateway(&explicit_rules(
            server,
            "passive",
            "limits:\n  shutdown_grace: 20s\n",
        ))
        .await;
        let (mut c, mut d) = retr_f(&gw).await;
        assert_eq!(c.reply().await.code, 150);
        let got = read_paced(&mut d, Duration::ZERO).await.unwrap();
        assert_eq!(sha256(&got), sha256(&body));
        // As clients do at the end of the data: the relay is over.
        drop(d);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Every byte is here; the server's 226 is still 700 ms away.
        let stop = tokio::spawn(gw.stop());
        let r = c.reply().await;
        assert_eq!(r.code, 226, "the client was told {}", r.text.trim_end());
        // Then the gateway says it is going, and goes.
        assert_eq!(c.reply().await.code, 421);
        tokio::time::timeout(Duration::from_secs(5), stop)
            .await
            .expect("the stop returns once the session has ended")
            .unwrap();
    })
    .await;
}

//! Cancelling and resuming through the gateway: ABOR in every state of a
//! transfer (plain, after the telnet synch, and as TCP urgent data), a
//! data connection the client closes early, and REST before RETR, STOR and
//! APPE, for every client mode against every server-side mode.

mod support;

use std::time::{Duration, Instant};
use support::client::{Client, Mode, Reply, MODES};
use support::server::{Opts, TestServer};
use support::{data, explicit_rules, gateway, sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Larger than what the loopback sockets and the relay buffer between
/// them: a server writing it blocks until the client reads or the data
/// connection is cut.
const BIG: usize = 16 * 1024 * 1024;

/// "Well under a second" for the answer to ABOR.
const FAST: Duration = Duration::from_millis(1000);

const SERVER_MODES: [&str; 3] = ["same-as-client", "passive", "active"];

#[derive(Debug, Clone, Copy)]
enum Abor {
    /// `ABOR` as a plain line (lftp, curl).
    Plain,
    /// `IAC IP IAC DM ABOR` inline (RFC 959).
    Synch,
    /// `ABOR\r\n` as TCP urgent data (Python's ftplib): the LF is the
    /// urgent byte.
    Urgent,
}

const ABORS: [Abor; 3] = [Abor::Plain, Abor::Synch, Abor::Urgent];

async fn send_abor(c: &mut Client, how: Abor) {
    match how {
        Abor::Plain => c.send("ABOR").await,
        Abor::Synch => c.send_raw(b"\xff\xf4\xff\xf2ABOR\r\n").await,
        Abor::Urgent => c.send_urgent(b"ABOR\r\n"),
    }
}

/// Reads the answers to ABOR, each within `FAST` of sending it: the
/// transfer's final reply when it is still owed (a failure: the client did
/// not get the data), then ABOR's own (`225` or `226`).
async fn expect_abor_answered(c: &mut Client, sent: Instant, transfer_owed: bool, what: &str) {
    if transfer_owed {
        let r = reply_by(c, sent, what).await;
        // 426 as a rule; 425 from a server whose data connection the cut
        // refused before it was made. Never a success.
        assert!(
            matches!(r.code, 425 | 426),
            "{what}: the transfer's reply: {}",
            r.text
        );
    }
    let r = reply_by(c, sent, what).await;
    assert!(
        matches!(r.code, 225 | 226),
        "{what}: ABOR's reply: {}",
        r.text
    );
    // The replies are in step: the session goes on.
    assert_eq!(c.cmd("NOOP").await.code, 200, "{what}: NOOP after ABOR");
}

async fn reply_by(c: &mut Client, sent: Instant, what: &str) -> Reply {
    let left = FAST.saturating_sub(sent.elapsed());
    match c.reply_within(left).await {
        Some(r) => r,
        None => panic!("{what}: no reply within {FAST:?} of ABOR"),
    }
}

/// Starts `verb name` on a fresh data channel and returns the data
/// connection once open, the preliminary reply read.
async fn start_transfer(c: &mut Client, mode: Mode, line: &str) -> TcpStream {
    let pending = c.data(mode).await.expect("data channel");
    c.send(line).await;
    let (d, prelim) = pending.open_after(c).await.expect("data connection");
    if prelim.is_none() {
        let r = c.reply().await;
        assert_eq!(r.code, 150, "{line}: {}", r.text);
    }
    d
}

/// Reads at least `n` bytes, then stops reading.
async fn read_some(d: &mut TcpStream, n: usize) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = 0;
    while got < n {
        let k = tokio::time::timeout(Duration::from_secs(10), d.read(&mut buf))
            .await
            .expect("data in time")
            .expect("data read");
        assert!(k > 0, "the download ended after {got} bytes");
        got += k;
    }
}

/// What is left on a data connection the gateway cut: never the whole
/// file (what was still queued towards the client was discarded).
async fn drain_cut(d: &mut TcpStream, what: &str) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, d.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(k)) => total += k,
            Err(_) => panic!("{what}: the data connection is still open after ABOR"),
        }
    }
    assert!(total < BIG, "{what}: the whole file still arrived");
}

async fn logged_in(server: &TestServer, server_mode: &str) -> (ftpalg::proxy::Handle, Client) {
    let gw = gateway(&explicit_rules(server.addr, server_mode, "")).await;
    let (mut c, hello) = Client::connect(gw.addrs[0]).await;
    assert_eq!(hello.code, 220, "{}", hello.text);
    c.login("u").await;
    (gw, c)
}

/// The reported case: the client reads a little of a large download, stops
/// reading and sends ABOR. With a server still writing, and with one that
/// has written everything and answered 226 already (held by the gateway
/// until the data is delivered, which it never is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_from_a_client_that_stopped_reading_is_answered_at_once() {
    let body = data(BIG, 1);
    let mut k = 0;
    for early_226 in [false, true] {
        let server = TestServer::start(Opts {
            early_226,
            ..Opts::default()
        })
        .await;
        server.put("big", body.clone());
        server.put("small", data(1000, 2));
        for server_mode in SERVER_MODES {
            let (gw, mut c) = logged_in(&server, server_mode).await;
            for mode in MODES {
                let how = ABORS[k % ABORS.len()];
                k += 1;
                let what = format!("{mode:?}/{server_mode} early_226={early_226} {how:?}");
                let mut d = start_transfer(&mut c, mode, "RETR big").await;
                read_some(&mut d, 64 * 1024).await;
                let sent = Instant::now();
                send_abor(&mut c, how).await;
                expect_abor_answered(&mut c, sent, true, &what).await;
                eprintln!("{what}: answered in {:?}", sent.elapsed());
                drain_cut(&mut d, &what).await;
                // And the next transfer works.
                let got = c.retr("small", mode).await.expect("RETR after ABOR");
                assert_eq!(sha256(&got), sha256(&data(1000, 2)), "{what}");
            }
            gw.shutdown(Duration::from_secs(1)).await;
        }
    }
}

/// ABOR before the client opened its data connection, after the transfer
/// ended, with no transfer at all, and during an upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_in_every_other_state_is_answered_at_once() {
    let server = TestServer::start(Opts::default()).await;
    server.put("big", data(BIG, 3));
    server.put("small", data(1000, 4));
    for server_mode in SERVER_MODES {
        let (gw, mut c) = logged_in(&server, server_mode).await;
        for (i, mode) in MODES.into_iter().enumerate() {
            let how = ABORS[i % ABORS.len()];
            let what = format!("{mode:?}/{server_mode} {how:?}");

            // The client never opens (or accepts) its data connection.
            let pending = c.data(mode).await.expect("data channel");
            c.send("RETR big").await;
            let r = c.reply().await;
            assert_eq!(r.code, 150, "{what}: {}", r.text);
            let sent = Instant::now();
            send_abor(&mut c, how).await;
            expect_abor_answered(&mut c, sent, true, &format!("{what} unopened")).await;
            drop(pending);

            // After the transfer is complete: nothing to cut, ABOR passes.
            let got = c.retr("small", mode).await.expect("RETR");
            assert_eq!(got.len(), 1000);
            let sent = Instant::now();
            send_abor(&mut c, how).await;
            expect_abor_answered(&mut c, sent, false, &format!("{what} after 226")).await;

            // A data channel set up, no transfer started.
            let pending = c.data(mode).await.expect("data channel");
            let sent = Instant::now();
            send_abor(&mut c, how).await;
            expect_abor_answered(&mut c, sent, false, &format!("{what} before RETR")).await;
            drop(pending);

            // An upload under way: never reported complete.
            let mut d = start_transfer(&mut c, mode, "STOR up").await;
            d.write_all(&data(1024 * 1024, 5)).await.expect("upload");
            let sent = Instant::now();
            send_abor(&mut c, how).await;
            expect_abor_answered(&mut c, sent, true, &format!("{what} upload")).await;
        }
        gw.shutdown(Duration::from_secs(1)).await;
    }
}

/// A client that closes its data connection in the middle of a download:
/// the server's data connection ends at once and its 426 is passed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_close_of_a_download_passes_the_servers_426_at_once() {
    let server = TestServer::start(Opts::default()).await;
    server.put("big", data(BIG, 6));
    for server_mode in SERVER_MODES {
        let (gw, mut c) = logged_in(&server, server_mode).await;
        for mode in MODES {
            let what = format!("{mode:?}/{server_mode}");
            let mut d = start_transfer(&mut c, mode, "RETR big").await;
            read_some(&mut d, 64 * 1024).await;
            let closed = Instant::now();
            drop(d);
            let r = reply_by(&mut c, closed, &what).await;
            assert_eq!(r.code, 426, "{what}: {}", r.text);
            assert_eq!(c.cmd("NOOP").await.code, 200, "{what}");
        }
        gw.shutdown(Duration::from_secs(1)).await;
    }
}

/// The same with a server that says nothing about the broken transfer: the
/// gateway answers 426 itself once its deadline has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_close_the_server_is_silent_about_is_answered_by_the_gateway() {
    let server = TestServer::start(Opts {
        silent_on_broken_retr: true,
        ..Opts::default()
    })
    .await;
    server.put("big", data(BIG, 7));
    let (_gw, mut c) = logged_in(&server, "same-as-client").await;
    let mut d = start_transfer(&mut c, Mode::Epsv, "RETR big").await;
    read_some(&mut d, 64 * 1024).await;
    let closed = Instant::now();
    drop(d);
    let r = c
        .reply_within(Duration::from_secs(5))
        .await
        .expect("a reply from the gateway");
    let took = closed.elapsed();
    assert_eq!(r.code, 426, "{}", r.text);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "426 after {took:?}, the deadline is 2 s"
    );
}

/// An upload the client resets half way is never reported complete, even
/// by a server that takes the reset for the end of the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_by_the_client_is_not_reported_complete() {
    for stor_226_on_reset in [false, true] {
        upload_cut(Opts {
            stor_226_on_reset,
            ..Opts::default()
        })
        .await;
    }
}

async fn upload_cut(opts: Opts) {
    let quirk = opts.stor_226_on_reset;
    let server = TestServer::start(opts).await;
    for server_mode in SERVER_MODES {
        let (gw, mut c) = logged_in(&server, server_mode).await;
        for mode in MODES {
            let what = format!("{mode:?}/{server_mode} 226 on reset: {quirk}");
            let d = start_transfer(&mut c, mode, "STOR cut").await;
            let mut d = d;
            d.write_all(&data(1024 * 1024, 8)).await.expect("upload");
            socket2::SockRef::from(&d)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            let closed = Instant::now();
            drop(d);
            let r = reply_by(&mut c, closed, &what).await;
            assert_eq!(r.code, 426, "{what}: {}", r.text);
        }
        gw.shutdown(Duration::from_secs(1)).await;
    }
}

/// Uploads `body` with `line` (STOR/APPE name) on a fresh data channel.
async fn upload(c: &mut Client, mode: Mode, line: &str, body: &[u8]) -> Reply {
    let pending = c.data(mode).await.expect("data channel");
    c.send(line).await;
    let (mut d, prelim) = pending.open_after(c).await.expect("data connection");
    if prelim.is_none() {
        assert_eq!(c.reply().await.code, 150, "{line}");
    }
    d.write_all(body).await.expect("upload");
    d.shutdown().await.expect("shutdown");
    drop(d);
    c.reply().await
}

/// How the second part of an upload continues the first.
#[derive(Clone, Copy)]
enum Resume {
    /// REST at the first part's length, then STOR.
    RestStor,
    /// APPE.
    Appe,
}

/// Stores the first third of `body` as `name`, then the rest as `resume`
/// says; the server must then hold exactly `body`.
async fn upload_in_two(
    c: &mut Client,
    server: &TestServer,
    mode: Mode,
    name: &str,
    body: &[u8],
    resume: Resume,
    what: &str,
) {
    let half = body.len() / 3;
    assert_eq!(
        upload(c, mode, &format!("STOR {name}"), &body[..half])
            .await
            .code,
        226
    );
    let (second, how) = match resume {
        Resume::RestStor => {
            assert_eq!(c.cmd(&format!("REST {half}")).await.code, 350);
            ("STOR", "REST+STOR")
        }
        Resume::Appe => ("APPE", "APPE"),
    };
    let r = upload(c, mode, &format!("{second} {name}"), &body[half..]).await;
    assert_eq!(r.code, 226, "{what}: {}", r.text);
    assert_eq!(
        server.get(name).map(|b| sha256(&b)),
        Some(sha256(body)),
        "{what} {how}"
    );
}

/// REST at 0, in the middle, at the end and past the end of a download,
/// and resumed uploads (REST + STOR, APPE), in every client mode against
/// every server mode: the bytes from the offset on are exactly the
/// server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_resumes_in_every_mode() {
    let server = TestServer::start(Opts::default()).await;
    let len = 1024 * 1024 + 3;
    let body = data(len, 9);
    server.put("f", body.clone());
    for server_mode in ["same-as-client", "passive", "active", "auto"] {
        let (gw, mut c) = logged_in(&server, server_mode).await;
        for mode in MODES {
            let what = format!("{mode:?}/{server_mode}");
            for at in [0, len / 2, len] {
                let r = c.cmd(&format!("REST {at}")).await;
                assert_eq!(r.code, 350, "{what}: {}", r.text);
                let got = c.retr("f", mode).await.expect("resumed RETR");
                assert_eq!(sha256(&got), sha256(&body[at..]), "{what} REST {at}");
            }
            // Past the end: the server's refusal reaches the client.
            assert_eq!(c.cmd(&format!("REST {}", len + 1)).await.code, 350);
            let pending = c.data(mode).await.expect("data channel");
            c.send("RETR f").await;
            let r = c.reply().await;
            assert_eq!(r.code, 554, "{what} past the end: {}", r.text);
            drop(pending);
            assert_eq!(c.cmd("NOOP").await.code, 200, "{what}");

            // A resumed upload: the first part, then REST + STOR the rest.
            let name = format!("up-{server_mode}-{mode:?}");
            upload_in_two(&mut c, &server, mode, &name, &body, Resume::RestStor, &what).await;

            // APPE continues from the end.
            let name = format!("ap-{server_mode}-{mode:?}");
            upload_in_two(&mut c, &server, mode, &name, &body, Resume::Appe, &what).await;
        }
        gw.shutdown(Duration::from_secs(1)).await;
    }
}

//! The gateway's log on loopback, captured: refused `PASS` and `ACCT`
//! lines are logged as denials, and the password is in none of it.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use support::client::Client;
use support::server::{Opts, TestServer};
use support::{explicit_rules, gateway};

/// A writer into a shared buffer, for the test's log subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime: the gateway's tasks run on this thread, under
// the subscriber set here.
#[tokio::test]
async fn refused_password_lines_are_logged_without_the_password() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::start(Opts::default()).await;
    let gw = gateway(&explicit_rules(server.addr, "passive", "")).await;
    let (mut c, _) = Client::connect(gw.addrs[0]).await;
    assert_eq!(c.cmd("USER u").await.code, 331);
    let long = format!("PASS hunter{}\r\n", "2".repeat(3000));
    let lines: [&[u8]; 5] = [
        b"PASS hunter\xffX2\r\n",
        b"pass hunter\x002\r\n",
        b"ACCT hunter\r2\r\n",
        b" PASS hunter2\r\n",
        long.as_bytes(),
    ];
    for line in lines {
        c.send_raw(line).await;
        let r = c.reply().await;
        assert_eq!(r.code, 500, "{}", r.text);
    }
    assert_eq!(c.cmd("QUIT").await.code, 221);
    drop(gw);

    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    let denials = text.lines().filter(|l| l.contains("denied")).count();
    assert_eq!(denials, lines.len(), "{text}");
    assert!(text.contains("PASS ****"), "{text}");
    assert!(text.contains("ACCT ****"), "{text}");
    for secret in ["hunter", "X2"] {
        assert!(!text.contains(secret), "{secret:?} in the log:\n{text}");
    }
    assert!(
        !server.commands().iter().any(|l| l.contains("hunter")),
        "a refused line reached the server: {:?}",
        server.commands()
    );
}

//! The gateway end to end on loopback, with in-process FTP peers: every
//! client mode against every server-side mode, and the hostile cases.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::client::{Client, Mode, MODES};
use support::server::{Opts, TestServer};
use support::{data, explicit_rules, gateway, metric, sha256};
use tokio::net::{TcpSocket, TcpStream};

/// A gateway in front of `server` and a client logged in through it.
async fn logged_in(
    server: &TestServer,
    server_mode: &str,
    extra: &str,
) -> (ftpalg::proxy::Handle, Client) {
    let gw = gateway(&explicit_rules(server.addr, server_mode, extra)).await;
    let (mut c, _) = Client::connect(gw.addrs[0]).await;
    c.login("u").await;
    (gw, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_mode_against_every_server_mode() {
    let server = TestServer::start(Opts::default()).await;
    let sizes = [0usize, 1, 64 * 1024 + 7];
    for (i, s) in sizes.iter().enumerate() {
        server.put(&format!("f{i}"), data(*s, i as u8));
    }
    for server_mode in ["same-as-client", "passive", "active", "auto"] {
        let gw = gateway(&explicit_rules(server.addr, server_mode, "")).await;
        let (mut c, hello) = Client::connect(gw.addrs[0]).await;
        assert_eq!(hello.code, 220, "{}", hello.text);
        c.login("anonymous").await;
        for mode in MODES {
            for (i, s) in sizes.iter().enumerate() {
                let got = c
                    .retr(&format!("f{i}"), mode)
                    .await
                    .unwrap_or_else(|e| panic!("RETR {mode:?}/{server_mode} size {s}: {e}"));
                assert_eq!(
                    sha256(&got),
                    sha256(&data(*s, i as u8)),
                    "RETR {mode:?}/{server_mode} size {s}"
                );
                let name = format!("up-{server_mode}-{mode:?}-{i}");
                let body = data(*s, 100 + i as u8);
                c.stor(&name, &body, mode)
                    .await
                    .unwrap_or_else(|e| panic!("STOR {mode:?}/{server_mode} size {s}: {e}"));
                assert_eq!(
                    server.get(&name).map(|b| sha256(&b)),
                    Some(sha256(&body)),
                    "STOR {mode:?}/{server_mode}"
                );
            }
        }
        assert_eq!(c.cmd("QUIT").await.code, 221);
        gw.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_file_both_directions_with_conversion() {
    let server = TestServer::start(Opts::default()).await;
    let big = data(64 * 1024 * 1024, 7);
    let want = sha256(&big);
    server.put("big", big.clone());
    // Client passive, server active: the seed's case.
    let (_gw, mut c) = logged_in(&server, "active", "").await;
    let got = c.retr("big", Mode::Epsv).await.unwrap();
    assert_eq!(got.len(), big.len());
    assert_eq!(sha256(&got), want);
    c.stor("big-up", &big, Mode::Port).await.unwrap();
    assert_eq!(sha256(&server.get("big-up").unwrap()), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sessions() {
    let server = TestServer::start(Opts::default()).await;
    server.put("f", data(64 * 1024, 3));
    let want = sha256(&data(64 * 1024, 3));
    let gw = gateway(&explicit_rules(
        server.addr,
        "auto",
        "limits:\n  sessions_per_client: 100\n",
    ))
    .await;
    let addr = gw.addrs[0];
    let mut tasks = Vec::new();
    for i in 0..50 {
        let want = want.clone();
        tasks.push(tokio::spawn(async move {
            let (mut c, _) = Client::connect(addr).await;
            c.login("u").await;
            let got = c.retr("f", MODES[i % 4]).await.expect("retr");
            assert_eq!(sha256(&got), want);
            assert_eq!(c.cmd("QUIT").await.code, 221);
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("session in time")
            .expect("session ok");
    }
}

#[tokio::test]
async fn port_naming_a_third_host_is_refused_and_never_reaches_the_server() {
    let server = TestServer::start(Opts::default()).await;
    let (_gw, mut c) = logged_in(&server, "same-as-client", "").await;
    let r = c.cmd("PORT 127,0,0,2,4,1").await;
    assert_eq!(r.code, 500, "{}", r.text);
    assert!(
        r.text.contains("127.0.0.2 is not your address"),
        "{}",
        r.text
    );
    let r = c.cmd("EPRT |1|127.0.0.1|25|").await;
    assert_eq!(r.code, 504, "{}", r.text);
    assert_eq!(c.cmd("NOOP").await.code, 200);
    let seen = server.commands();
    assert!(
        seen.iter()
            .all(|l| !l.starts_with("PORT") && !l.starts_with("EPRT")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_stranger_is_refused_while_the_real_peer_succeeds() {
    let server = TestServer::start(Opts::default()).await;
    server.put("f", data(1000, 1));
    let (gw, mut c) = logged_in(&server, "passive", "").await;
    let r = c.cmd("PASV").await;
    assert_eq!(r.code, 227, "{}", r.text);
    let pinhole = SocketAddr::V4(
        ftpalg::ftp::codec::find_227(r.text.as_bytes())
            .unwrap()
            .addr,
    );
    // The stranger comes from another loopback address and is reset.
    let s = TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    if let Ok(mut stranger) = s.connect(pinhole).await {
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_secs(5), stranger.read(&mut b))
            .await
            .expect("stranger is dealt with");
        assert!(matches!(r, Ok(0) | Err(_)), "stranger got data: {r:?}");
    }
    // The client still gets its file through the same pinhole.
    c.send("RETR f").await;
    let mut d = TcpStream::connect(pinhole)
        .await
        .expect("real peer connects");
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    d.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, data(1000, 1));
    assert_eq!(c.reply().await.code, 150);
    assert_eq!(c.reply().await.code, 226);
    assert!(metric(&gw, "ftpalg_pinhole_strangers_total", &["side=\"client\""]) >= 1.0);
}

#[tokio::test]
async fn an_expired_pinhole_is_closed() {
    let server = TestServer::start(Opts::default()).await;
    server.put("f", data(10, 1));
    let gw = gateway(
        &explicit_rules(server.addr, "passive", "")
            .replace("data:\n", "data:\n  pinhole_timeout: 300ms\n"),
    )
    .await;
    let (mut c, _) = Client::connect(gw.addrs[0]).await;
    c.login("u").await;
    let r = c.cmd("EPSV").await;
    assert_eq!(r.code, 229);
    let port = ftpalg::ftp::codec::find_229(r.text.as_bytes())
        .unwrap()
        .port;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let late = TcpStream::connect(("127.0.0.1", port)).await;
    assert!(late.is_err(), "expired pinhole still accepts");
    // The session itself goes on.
    assert_eq!(c.cmd("NOOP").await.code, 200);
    let got = c.retr("f", Mode::Pasv).await.unwrap();
    assert_eq!(got, data(10, 1));
}

#[tokio::test]
async fn server_dying_mid_transfer_gives_the_client_an_error_and_the_gateway_survives() {
    let server = TestServer::start(Opts {
        die_mid_transfer: true,
        ..Opts::default()
    })
    .await;
    server.put("f", data(2 * 1024 * 1024, 1));
    let (_gw, mut c) = logged_in(&server, "passive", "").await;
    let r = c.cmd("EPSV").await;
    assert_eq!(r.code, 229);
    let port = ftpalg::ftp::codec::find_229(r.text.as_bytes())
        .unwrap()
        .port;
    c.send("RETR f").await;
    let mut d = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut got = Vec::new();
    use tokio::io::AsyncReadExt;
    let read = d.read_to_end(&mut got).await;
    assert!(
        read.is_err(),
        "a cut transfer ended like a complete one after {} bytes",
        got.len()
    );
    assert!(got.len() < 2 * 1024 * 1024);
    assert_eq!(c.reply().await.code, 150);
    assert_eq!(c.reply().await.code, 426);
    // The same gateway still serves a healthy server.
    let healthy = TestServer::start(Opts::default()).await;
    healthy.put("g", data(100, 2));
    let gw2 = gateway(&explicit_rules(healthy.addr, "passive", "")).await;
    let (mut c2, _) = Client::connect(gw2.addrs[0]).await;
    c2.login("u").await;
    assert_eq!(c2.retr("g", Mode::Pasv).await.unwrap(), data(100, 2));
    assert_eq!(c.cmd("NOOP").await.code, 200);
}

#[tokio::test]
async fn slow_client_gets_every_byte() {
    let server = TestServer::start(Opts::default()).await;
    let body = data(1024 * 1024, 9);
    server.put("f", body.clone());
    let (_gw, mut c) = logged_in(&server, "active", "").await;
    c.read_delay = Some(Duration::from_millis(5));
    let got = c.retr("f", Mode::Pasv).await.unwrap();
    assert_eq!(sha256(&got), sha256(&body));
}

#[tokio::test]
async fn a_line_over_the_cap_is_refused_and_the_session_goes_on() {
    let server = TestServer::start(Opts::default()).await;
    let (_gw, mut c) = logged_in(&server, "passive", "").await;
    let long = format!("RETR {}", "a".repeat(3000));
    let r = c.cmd(&long).await;
    assert_eq!(r.code, 500, "{}", r.text);
    assert_eq!(c.cmd("NOOP").await.code, 200);
    assert!(server.commands().iter().all(|l| l.len() < 2048));
}

/// Listening TCP ports held by this process (the in-process gateway's
/// pinholes among them), from /proc: the socket inodes among our file
/// descriptors, looked up in the namespace's socket tables.
fn own_listening_ports() -> Vec<u16> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for row in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = row.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap_or_default();
                ports.push(u16::from_str_radix(port, 16).expect("hex port"));
            }
        }
    }
    ports
}

#[tokio::test]
async fn unsolicited_227_opens_nothing() {
    // The 227 names a listener of ours: the gateway must never connect to
    // it (it would, to the server's address and this port, if it honoured
    // the reply).
    let bait = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bait_addr = bait.local_addr().unwrap();
    let server = TestServer::start(Opts {
        unsolicited_227: Some(bait_addr),
        ..Opts::default()
    })
    .await;
    // Data ports no other test in this process uses, so any pinhole this
    // gateway opens is seen among the process's listeners.
    let (client_ports, server_ports) = (48710..=48719, 48720..=48729);
    let yaml = format!(
        "listeners:\n  - name: t\n    listen: 127.0.0.1:0\n    kind: explicit\n    upstream: {}\n    server_mode: passive\ndata:\n  client_ports: 48710-48719\n  server_ports: 48720-48729\n",
        server.addr
    );
    let gw = gateway(&yaml).await;
    let pinholes = || {
        own_listening_ports()
            .into_iter()
            .filter(|p| client_ports.contains(p) || server_ports.contains(p))
            .collect::<Vec<_>>()
    };
    assert_eq!(pinholes(), Vec::<u16>::new(), "pinholes before any command");
    let (mut c, _) = Client::connect(gw.addrs[0]).await;
    assert_eq!(c.cmd("USER u").await.code, 331);
    assert_eq!(c.cmd("PASS p").await.code, 230);
    // Passed on to the client as it came, not rewritten to a pinhole.
    let (ip, port) = (
        bait_addr.ip().to_string().replace('.', ","),
        bait_addr.port(),
    );
    assert_eq!(
        c.reply().await.text,
        format!(
            "227 Entering Passive Mode ({ip},{},{})\r\n",
            port >> 8,
            port & 255
        )
    );
    // A round trip after it: whatever the 227 made the gateway do is done.
    assert_eq!(c.cmd("NOOP").await.code, 200);
    assert_eq!(pinholes(), Vec::<u16>::new(), "pinholes after the 227");
    let dialled = tokio::time::timeout(Duration::from_millis(500), bait.accept()).await;
    assert!(
        dialled.is_err(),
        "the gateway connected to the address in the unsolicited 227: {:?}",
        dialled.map(|r| r.map(|(_, from)| from))
    );
    assert!(server.data_peers.lock().unwrap().is_empty());
}

#[tokio::test]
async fn passive_address_in_227_is_ignored_and_multiline_227_works() {
    let server = TestServer::start(Opts {
        pasv_addr: Some("10.0.0.5".parse().unwrap()),
        multiline_227: true,
        ..Opts::default()
    })
    .await;
    server.put("f", data(4096, 4));
    let (_gw, mut c) = logged_in(&server, "passive", "").await;
    assert_eq!(c.retr("f", Mode::Pasv).await.unwrap(), data(4096, 4));
}

#[tokio::test]
async fn auto_mode_falls_back_to_active_when_passive_ports_are_closed() {
    let server = TestServer::start(Opts {
        passive_dead: true,
        ..Opts::default()
    })
    .await;
    server.put("f", data(50_000, 5));
    let (_gw, mut c) = logged_in(&server, "auto", "").await;
    for mode in MODES {
        assert_eq!(
            c.retr("f", mode).await.unwrap(),
            data(50_000, 5),
            "{mode:?}"
        );
    }
    // Passive-only towards such a server fails cleanly with 425.
    let gw2 = gateway(&explicit_rules(server.addr, "passive", "")).await;
    let (mut c2, _) = Client::connect(gw2.addrs[0]).await;
    c2.login("u").await;
    let r = c2.cmd("PASV").await;
    assert_eq!(r.code, 425, "{}", r.text);
}

#[tokio::test]
async fn server_refusing_port_gives_a_clear_425() {
    let server = TestServer::start(Opts {
        refuse_active: true,
        ..Opts::default()
    })
    .await;
    let (_gw, mut c) = logged_in(&server, "active", "").await;
    let r = c.cmd("EPSV").await;
    assert_eq!(r.code, 425);
    assert!(r.text.contains("refused PORT"), "{}", r.text);
}

#[tokio::test]
async fn user_at_host_routing() {
    let server = TestServer::start(Opts::default()).await;
    server.put("f", data(777, 6));
    let yaml = "listeners:\n  - name: p\n    listen: 127.0.0.1:0\n    kind: user-at-host\n    servers: [127.0.0.1/32]\ndata:\n  client_ports: 42000-43999\n  server_ports: 44000-45999\n";
    let gw = gateway(yaml).await;
    let (mut c, hello) = Client::connect(gw.addrs[0]).await;
    assert_eq!(hello.code, 220);
    assert!(hello.text.contains("USER name@host"), "{}", hello.text);
    let r = c.cmd("USER anon@127.0.0.2").await;
    assert_eq!(r.code, 530, "{}", r.text);
    let r = c
        .cmd(&format!("USER anon@127.0.0.1:{}", server.addr.port()))
        .await;
    assert_eq!(r.code, 331, "{}", r.text);
    assert_eq!(c.cmd("PASS x").await.code, 230);
    assert_eq!(c.cmd("TYPE I").await.code, 200);
    assert_eq!(c.retr("f", Mode::Epsv).await.unwrap(), data(777, 6));
    assert_eq!(server.commands()[0], "USER anon");
}

#[tokio::test]
async fn session_limits_answer_421() {
    let server = TestServer::start(Opts::default()).await;
    let gw = gateway(&explicit_rules(
        server.addr,
        "passive",
        "limits:\n  sessions_per_client: 2\n",
    ))
    .await;
    let (mut a, ha) = Client::connect(gw.addrs[0]).await;
    let (mut b, hb) = Client::connect(gw.addrs[0]).await;
    assert_eq!((ha.code, hb.code), (220, 220));
    // Logged in, so neither can be evicted to make room.
    a.login("a").await;
    b.login("b").await;
    let (_c, hc) = Client::connect(gw.addrs[0]).await;
    assert_eq!(hc.code, 421, "{}", hc.text);
}

#[tokio::test]
async fn policy_denies_writes_with_the_rules_reply() {
    let server = TestServer::start(Opts::default()).await;
    server.put("f", data(10, 1));
    let extra = "rules:\n  - name: read-only\n    match: { command: [write] }\n    action: deny\n    reply: \"550 Read-only mirror.\"\n";
    let (_gw, mut c) = logged_in(&server, "passive", extra).await;
    let r = c.cmd("DELE f").await;
    assert_eq!(r.code, 550);
    assert!(r.text.contains("Read-only mirror."), "{}", r.text);
    assert!(server.get("f").is_some());
    assert!(!server.commands().iter().any(|l| l.starts_with("DELE")));
}

#[tokio::test]
async fn server_closing_control_tells_the_client_421() {
    // A "server" that greets and hangs up.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"220 hi\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let gw = gateway(&explicit_rules(addr, "passive", "")).await;
    let (mut c, hello) = Client::connect(gw.addrs[0]).await;
    assert_eq!(hello.code, 220);
    assert_eq!(c.reply().await.code, 421);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_keeps_sessions_and_applies_to_new_transfers() {
    let server = TestServer::start(Opts::default()).await;
    server.put("f", data(32 * 1024, 1));
    let dir = std::env::temp_dir().join(format!("ftpalg-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rules.yaml");
    let base = explicit_rules(
        server.addr,
        "passive",
        "limits:\n  sessions_per_client: 50\n",
    );
    std::fs::write(&path, &base).unwrap();
    let (rules, _) = ftpalg::rules::load(&path).unwrap();
    let gw = ftpalg::proxy::start(rules).await.unwrap();
    let addr = gw.addrs[0];
    // 20 sessions logged in and each done one transfer.
    let mut clients = Vec::new();
    for i in 0..20 {
        let (mut c, _) = Client::connect(addr).await;
        c.login("u").await;
        c.retr("f", MODES[i % 4]).await.expect("before reload");
        clients.push(c);
    }
    // An invalid file is refused and changes nothing.
    std::fs::write(&path, "listeners: [\n").unwrap();
    assert!(ftpalg::proxy::reload_file(&gw, &path).is_err());
    for c in clients.iter_mut() {
        assert!(
            c.retr("f", Mode::Epsv).await.is_ok(),
            "old rules after a refused reload"
        );
    }
    // A valid file denying RETR applies to the very next transfer of every
    // running session; none is dropped.
    let deny = format!("{base}rules:\n  - name: no-downloads\n    match: {{ command: [RETR] }}\n    action: deny\n    reply: \"550 Downloads are off.\"\n");
    std::fs::write(&path, deny).unwrap();
    ftpalg::proxy::reload_file(&gw, &path).expect("valid reload");
    for result in ["ok", "refused"] {
        let label = format!("result=\"{result}\"");
        assert_eq!(
            metric(&gw, "ftpalg_reloads_total", &[&label]),
            1.0,
            "each reload counted once, {result}"
        );
    }
    for c in clients.iter_mut() {
        assert_eq!(c.cmd("NOOP").await.code, 200, "session survived the reload");
        let r = c.cmd("RETR f").await;
        assert_eq!(r.code, 550, "{}", r.text);
        assert!(r.text.contains("Downloads are off."));
    }
    assert_eq!(gw.gateway().active_sessions(), 20);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn reload_keeps_a_running_transfer() {
    let server = TestServer::start(Opts::default()).await;
    let body = data(8 * 1024 * 1024, 3);
    server.put("f", body.clone());
    let (gw, mut c) = logged_in(&server, "passive", "").await;
    c.read_delay = Some(Duration::from_millis(2));
    let reloaded = {
        let rules = ftpalg::rules::from_str(&explicit_rules(
            server.addr,
            "active",
            "rules:\n  - name: no\n    match: { command: [RETR] }\n    action: deny\n",
        ))
        .rules
        .unwrap();
        let g = gw.gateway().clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            g.replace_rules(rules);
        })
    };
    let got = c
        .retr("f", Mode::Pasv)
        .await
        .expect("the running transfer is not cut");
    reloaded.await.unwrap();
    assert_eq!(sha256(&got), sha256(&body));
    assert_eq!(c.cmd("RETR f").await.code, 550);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_idle_timeout_waits_for_a_running_transfer() {
    let server = TestServer::start(Opts::default()).await;
    let body = data(8 * 1024 * 1024, 8);
    server.put("f", body.clone());
    let gw = gateway(&explicit_rules(
        server.addr,
        "passive",
        "limits:\n  control_idle_timeout: 1s\n",
    ))
    .await;
    let (mut c, _) = Client::connect(gw.addrs[0]).await;
    c.login("u").await;
    // A transfer slower than the idle timeout: the control channel is
    // silent throughout, and must not be closed under it.
    c.read_delay = Some(Duration::from_millis(30));
    let started = std::time::Instant::now();
    let got = c
        .retr("f", Mode::Epsv)
        .await
        .expect("transfer outlives the control idle timeout");
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "the transfer was not slower than the timeout"
    );
    assert_eq!(sha256(&got), sha256(&body));
    // Once idle, the session is closed with 421. (No NOOP first: the
    // client drains the kernel's buffers slowly after the relay's last
    // write, and under load that tail alone can outlast a 1 s timeout.)
    let closing = tokio::time::timeout(Duration::from_secs(10), c.reply())
        .await
        .expect("the idle session is closed in time");
    assert_eq!(closing.code, 421, "{}", closing.text);
}

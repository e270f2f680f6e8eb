//! Listeners, reload and admission on loopback: listeners matched by name
//! across reloads, a transparent listener that refuses to proxy to itself,
//! the login deadline, and eviction of silent sessions at the limits.

mod support;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use support::client::{Client, Mode};
use support::server::{Opts, TestServer};
use support::{data, explicit_rules, gateway, metric};
use tokio::net::TcpStream;

/// Every test here is bounded: a hang is a failure, not a stuck run.
async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test finished in time");
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A port free on `ip` right now (for rules that name a fixed address),
/// outside the data port ranges of these rules.
fn free_port(ip: IpAddr) -> u16 {
    occupied(ip).local_addr().unwrap().port()
}

/// One explicit listener's YAML.
fn listener(name: &str, listen: &str, upstream: SocketAddr) -> String {
    format!(
        "  - name: {name}\n    listen: {listen}\n    kind: explicit\n    upstream: {upstream}\n"
    )
}

/// A rules file with the given listeners.
fn rules_with(listeners: &[String], extra: &str) -> ftpalg::rules::Rules {
    let yaml = format!(
        "listeners:\n{}data:\n  client_ports: 42000-43999\n  server_ports: 44000-45999\n{extra}",
        listeners.concat()
    );
    let loaded = ftpalg::rules::from_str(&yaml);
    loaded
        .rules
        .unwrap_or_else(|| panic!("invalid test rules: {:?}", loaded.diagnostics))
}

/// Logs in through `at` as `user` and tells whether `server` saw that user.
async fn reaches(at: SocketAddr, user: &str, server: &TestServer) -> bool {
    let (mut c, hello) = Client::connect(at).await;
    assert_eq!(hello.code, 220, "{}", hello.text);
    c.login(user).await;
    server
        .commands()
        .iter()
        .any(|l| *l == format!("USER {user}"))
}

/// Waits until nothing accepts on `addr` any more.
async fn stops_accepting(addr: SocketAddr) -> bool {
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Two test servers, one for each of two listeners.
async fn two_servers() -> (TestServer, TestServer) {
    (
        TestServer::start(Opts::default()).await,
        TestServer::start(Opts::default()).await,
    )
}

/// A test server behind one passive listener with the given `limits:` YAML;
/// the server is returned so that it lives as long as the test needs it.
async fn limited(limits: &str) -> (TestServer, ftpalg::proxy::Handle) {
    let server = TestServer::start(Opts::default()).await;
    let gw = gateway(&explicit_rules(server.addr, "passive", limits)).await;
    (server, gw)
}

#[tokio::test]
async fn reordered_listeners_keep_their_own_upstreams_after_reload() {
    bounded(async {
        let (sa, sb) = two_servers().await;
        let la = listener("a", "127.0.0.1:0", sa.addr);
        let lb = listener("b", "127.0.0.2:0", sb.addr);
        let gw = ftpalg::proxy::start(rules_with(&[la.clone(), lb.clone()], ""))
            .await
            .unwrap();
        let (at_a, at_b) = (gw.addrs[0], gw.addrs[1]);
        assert!(reaches(at_a, "before-a", &sa).await);
        assert!(reaches(at_b, "before-b", &sb).await);
        gw.reload(rules_with(&[lb, la], ""));
        assert_eq!(
            metric(&gw, "ftpalg_reloads_total", &["result=\"ok\""]),
            1.0,
            "a reload through the API counts like one from a file"
        );
        assert!(
            reaches(at_a, "after-a", &sa).await,
            "a client of listener a went elsewhere after the reorder"
        );
        assert!(
            reaches(at_b, "after-b", &sb).await,
            "a client of listener b went elsewhere after the reorder"
        );
        assert!(!sb.commands().iter().any(|l| l == "USER after-a"));
        assert!(!sa.commands().iter().any(|l| l == "USER after-b"));
    })
    .await;
}

#[tokio::test]
async fn a_removed_listener_stops_accepting_and_its_sessions_go_on() {
    bounded(async {
        let (sa, sb) = two_servers().await;
        sa.put("f", data(5000, 1));
        let la = listener("a", "127.0.0.1:0", sa.addr);
        let lb = listener("b", "127.0.0.2:0", sb.addr);
        let gw = ftpalg::proxy::start(rules_with(&[la, lb.clone()], ""))
            .await
            .unwrap();
        let (at_a, at_b) = (gw.addrs[0], gw.addrs[1]);
        let (mut old, _) = Client::connect(at_a).await;
        old.login("old").await;
        // Listener a goes; b moves up to the first place; downloads are
        // denied from now on.
        let deny =
            "rules:\n  - name: no-downloads\n    match: { command: [RETR] }\n    action: deny\n";
        gw.reload(rules_with(&[lb], deny));
        assert!(
            stops_accepting(at_a).await,
            "the removed listener still accepts"
        );
        // Its session drains on the rules it started with.
        assert_eq!(old.cmd("NOOP").await.code, 200);
        assert_eq!(old.retr("f", Mode::Epsv).await.unwrap(), data(5000, 1));
        // The listener that stays serves new clients (no panic on its old
        // index), on the new rules.
        assert!(reaches(at_b, "new-b", &sb).await);
        let (mut new, _) = Client::connect(at_b).await;
        new.login("new-b2").await;
        assert_eq!(new.cmd("RETR f").await.code, 550);
        assert_eq!(old.cmd("QUIT").await.code, 221);
    })
    .await;
}

#[tokio::test]
async fn reload_binds_an_added_listener_and_rebinds_a_moved_one() {
    bounded(async {
        let (sa, sb) = two_servers().await;
        let la = listener("a", "127.0.0.1:0", sa.addr);
        let gw = ftpalg::proxy::start(rules_with(std::slice::from_ref(&la), ""))
            .await
            .unwrap();
        let old_a = gw.addrs[0];
        let new_a = SocketAddr::new(ip("127.0.0.4"), free_port(ip("127.0.0.4")));
        let at_b = SocketAddr::new(ip("127.0.0.3"), free_port(ip("127.0.0.3")));
        gw.reload(rules_with(
            &[
                listener("a", &new_a.to_string(), sa.addr),
                listener("b", &at_b.to_string(), sb.addr),
            ],
            "",
        ));
        let g = gw.gateway();
        assert_eq!(g.listener_addr("a"), Some(new_a));
        assert_eq!(g.listener_addr("b"), Some(at_b));
        assert!(reaches(at_b, "added-b", &sb).await, "added listener");
        assert!(reaches(new_a, "moved-a", &sa).await, "moved listener");
        assert!(
            stops_accepting(old_a).await,
            "the old address of a moved listener still accepts"
        );
    })
    .await;
}

/// A socket holding a port on `ip` outside the data port ranges.
fn occupied(ip: IpAddr) -> std::net::TcpListener {
    for _ in 0..100 {
        let l = std::net::TcpListener::bind((ip, 0)).unwrap();
        if !(42000..=45999).contains(&l.local_addr().unwrap().port()) {
            return l;
        }
    }
    panic!("no port outside the data ranges in 100 tries");
}

#[tokio::test]
async fn a_listener_that_cannot_be_bound_on_reload_stays_and_the_rest_applies() {
    bounded(async {
        let (sa, sb) = two_servers().await;
        let gw = ftpalg::proxy::start(rules_with(&[listener("a", "127.0.0.1:0", sa.addr)], ""))
            .await
            .unwrap();
        let old_a = gw.addrs[0];
        let (taken1, taken2) = (occupied(ip("127.0.0.5")), occupied(ip("127.0.0.5")));
        let (to1, to2) = (taken1.local_addr().unwrap(), taken2.local_addr().unwrap());
        // a moves to a taken address and now relays to sb; c is new, on
        // another taken address.
        gw.reload(rules_with(
            &[
                listener("a", &to1.to_string(), sb.addr),
                listener("c", &to2.to_string(), sa.addr),
            ],
            "",
        ));
        let g = gw.gateway();
        assert_eq!(g.listener_addr("a"), Some(old_a), "a stays where it was");
        assert_eq!(g.listener_addr("c"), None, "c could not be bound");
        assert!(
            reaches(old_a, "moved-nowhere", &sb).await,
            "the rest of the reload applies to a"
        );
        drop((taken1, taken2));
    })
    .await;
}

/// Connects straight to a transparent listener: its original destination is
/// then the listener itself.
async fn transparent_to_itself(listen: &str, tproxy: bool) {
    let yaml = format!(
        "listeners:\n  - name: tp\n    listen: {listen}\n    kind: transparent\n    tproxy: {tproxy}\ndata:\n  client_ports: 42000-43999\n  server_ports: 44000-45999\n"
    );
    let rules = ftpalg::rules::from_str(&yaml).rules.unwrap();
    let gw = match ftpalg::proxy::start(rules).await {
        Ok(g) => g,
        Err(e) if tproxy => {
            // IP_TRANSPARENT needs CAP_NET_ADMIN.
            eprintln!("skipping the TPROXY case: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    // A wildcard listener is reached at one of the host's addresses.
    let at = SocketAddr::new(ip("127.0.0.1"), gw.addrs[0].port());
    let (_c, hello) = Client::connect(at).await;
    assert_eq!(hello.code, 421, "{listen} tproxy {tproxy}: {}", hello.text);
    assert!(
        hello.text.contains("gateway itself"),
        "{listen} tproxy {tproxy}: {}",
        hello.text
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        metric(&gw, "ftpalg_sessions_total", &[]),
        1.0,
        "{listen} tproxy {tproxy}: the gateway connected to itself"
    );
    assert_eq!(
        metric(&gw, "ftpalg_denials_total", &[]),
        1.0,
        "{listen} tproxy {tproxy}"
    );
    assert_eq!(
        metric(
            &gw,
            "ftpalg_denials_total",
            &["reason=\"self-destination\""]
        ),
        1.0,
        "{listen} tproxy {tproxy}"
    );
}

#[tokio::test]
async fn a_transparent_listener_refuses_to_proxy_to_itself() {
    bounded(async {
        for listen in ["127.0.0.1:0", "0.0.0.0:0"] {
            transparent_to_itself(listen, false).await;
            transparent_to_itself(listen, true).await;
        }
    })
    .await;
}

#[tokio::test]
async fn the_login_deadline_closes_connections_that_do_not_log_in() {
    bounded(async {
        let (_server, gw) = limited("limits:\n  login_timeout: 500ms\n").await;
        let at = gw.addrs[0];
        let (mut silent, _) = Client::connect(at).await;
        let (mut chatty, _) = Client::connect(at).await;
        let (mut user, _) = Client::connect(at).await;
        user.login("u").await;
        let t0 = Instant::now();
        let r = silent.reply().await;
        assert_eq!(r.code, 421, "{}", r.text);
        assert!(r.text.contains("log in"), "{}", r.text);
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        // Talking without logging in does not move the deadline.
        let mut closed = false;
        for _ in 0..30 {
            if chatty.cmd("NOOP").await.code == 421 {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(closed, "a session that never logs in was not closed");
        assert_eq!(
            metric(&gw, "ftpalg_login_timeouts_total", &[]),
            2.0,
            "the silent and the chatty session, each counted once"
        );
        // A session that logged in is not touched by the deadline.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(user.cmd("NOOP").await.code, 200);
    })
    .await;
}

#[tokio::test]
async fn at_the_per_client_limit_the_longest_silent_session_makes_room() {
    bounded(async {
        let (_server, gw) = limited("limits:\n  sessions_per_client: 2\n").await;
        let at = gw.addrs[0];
        let (mut first, _) = Client::connect(at).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (mut second, _) = Client::connect(at).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The first speaks (without logging in): the second is now the
        // longest silent.
        assert_eq!(first.cmd("NOOP").await.code, 200);
        let (mut newcomer, hello) = Client::connect(at).await;
        assert_eq!(hello.code, 220, "newcomer refused: {}", hello.text);
        let r = second.reply().await;
        assert_eq!(r.code, 421, "{}", r.text);
        assert_eq!(first.cmd("NOOP").await.code, 200);
        newcomer.login("n").await;
        assert_eq!(
            metric(&gw, "ftpalg_sessions_evicted_total", &[]),
            1.0,
            "one eviction counted"
        );
        assert_eq!(gw.gateway().active_sessions(), 2);
    })
    .await;
}

#[tokio::test]
async fn logged_in_sessions_are_never_evicted_for_a_newcomer() {
    bounded(async {
        let (_server, gw) = limited("limits:\n  sessions_per_client: 2\n").await;
        let at = gw.addrs[0];
        let (mut a, _) = Client::connect(at).await;
        a.login("a").await;
        // `a` is now silent for longer than `b` will be, but logged in.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (mut b, _) = Client::connect(at).await;
        let (mut c, hc) = Client::connect(at).await;
        assert_eq!(hc.code, 220, "{}", hc.text);
        assert_eq!(b.reply().await.code, 421, "the silent one makes room");
        assert_eq!(a.cmd("NOOP").await.code, 200, "logged-in session kept");
        // With every session logged in, the newcomer is refused.
        c.login("c").await;
        let (_d, hd) = Client::connect(at).await;
        assert_eq!(hd.code, 421, "{}", hd.text);
        assert!(hd.text.contains("Too many sessions"), "{}", hd.text);
        assert_eq!(a.cmd("NOOP").await.code, 200);
        assert_eq!(c.cmd("NOOP").await.code, 200);
    })
    .await;
}

#[tokio::test]
async fn at_the_global_limit_a_silent_session_of_another_address_makes_room() {
    bounded(async {
        let (_server, gw) = limited("limits:\n  sessions: 2\n  sessions_per_client: 10\n").await;
        let at = gw.addrs[0];
        let (mut older, _) = Client::connect(at).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (mut younger, _) = Client::connect(at).await;
        let (mut other, hello) = Client::connect_from(ip("127.0.0.2"), at).await;
        assert_eq!(hello.code, 220, "newcomer refused: {}", hello.text);
        assert_eq!(older.reply().await.code, 421);
        assert_eq!(younger.cmd("NOOP").await.code, 200);
        other.login("o").await;
        assert_eq!(gw.gateway().active_sessions(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_connections_does_not_lock_out_a_user_behind_the_same_address() {
    bounded(async {
        let (_server, gw) = limited("limits:\n  sessions_per_client: 5\n").await;
        let at = gw.addrs[0];
        let flood = |n: usize| async move {
            let mut held = Vec::with_capacity(n);
            for i in 0..n {
                let (c, hello) = Client::connect(at).await;
                assert_eq!(hello.code, 220, "flood connection {i}: {}", hello.text);
                held.push(c);
            }
            held
        };
        let t0 = Instant::now();
        let first = flood(100).await;
        let flood_time = t0.elapsed();
        let (mut user, hello) = Client::connect(at).await;
        assert_eq!(hello.code, 220, "{}", hello.text);
        user.login("real").await;
        // The flood goes on; the logged-in user is never the one to go.
        let second = flood(50).await;
        assert_eq!(user.cmd("NOOP").await.code, 200);
        assert!(gw.gateway().active_sessions() <= 5);
        assert_eq!(
            metric(&gw, "ftpalg_sessions_evicted_total", &[]),
            (95 + 1 + 50) as f64
        );
        // Nobody was refused: every denial is a refused connection here.
        assert_eq!(metric(&gw, "ftpalg_denials_total", &[]), 0.0);
        eprintln!(
            "100 silent connections at sessions_per_client 5 admitted in {flood_time:?} ({:?} each)",
            flood_time / 100
        );
        drop((first, second));
    })
    .await;
}

/// A server address that never answers: a listener whose accept queue is
/// full drops further SYNs, so connecting to it hangs.
fn unanswering() -> (socket2::Socket, Vec<std::net::TcpStream>, SocketAddr) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(ip("127.0.0.1"), 0).into()).unwrap();
    s.listen(0).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    let mut fill = Vec::new();
    for _ in 0..4 {
        let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        if c.connect_timeout(&addr.into(), Duration::from_millis(200))
            .is_ok()
        {
            fill.push(c.into());
        }
    }
    (s, fill, addr)
}

#[tokio::test]
async fn a_session_still_connecting_to_its_server_makes_room_at_once() {
    bounded(async {
        let (_server, _fill, dead) = unanswering();
        let gw = gateway(&explicit_rules(
            dead,
            "passive",
            "limits:\n  sessions_per_client: 1\n  connect_timeout: 10s\n",
        ))
        .await;
        let at = gw.addrs[0];
        let mut first = TcpStream::connect(at).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _second = TcpStream::connect(at).await.unwrap();
        let t0 = Instant::now();
        let mut got = Vec::new();
        use tokio::io::AsyncReadExt;
        let _ = tokio::time::timeout(Duration::from_secs(8), first.read_to_end(&mut got)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("421 Too many sessions"),
            "after {:?}: {text:?}",
            t0.elapsed()
        );
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    })
    .await;
}

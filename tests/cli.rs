//! The `ftpalg` command as an operator uses it.

use std::process::Command;

fn ftpalg(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ftpalg"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ftpalg-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn check_accepts_every_shipped_example() {
    for f in [
        "default",
        "explicit-proxy",
        "cgnat-gateway",
        "cgnat-gateway-kernel",
        "server-behind-nat",
        "read-only-mirror",
    ] {
        let path = format!("rules/{f}.yaml");
        let (code, out, err) = ftpalg(&["check", "--rules", &path]);
        assert_eq!(code, 0, "{path}: {err}");
        assert!(out.contains(": ok ("), "{out}");
    }
}

#[test]
fn check_rejects_with_position_and_hint() {
    let p = temp("bad.yaml", "listeners:\n  - name: a\n    listen: 127.0.0.1:2121\n    kind: explicit\n    upstream: 198.51.100.10:21\ndata:\n  client_ports: 5000-4000\n");
    let (code, out, err) = ftpalg(&["check", "--rules", &p]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains(&format!(
            "{p}:7:17: error: client_ports '5000-4000' is empty"
        )),
        "{err}"
    );
    assert!(err.contains("hint: write FIRST-LAST"), "{err}");
}

#[test]
fn check_explain_matches_the_golden_text() {
    let (code, out, _) = ftpalg(&["check", "--rules", "rules/cgnat-gateway.yaml", "--explain"]);
    assert_eq!(code, 0);
    let golden = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/cgnat-gateway.explain"
    ))
    .unwrap();
    assert!(out.ends_with(&golden), "{out}");
}

#[test]
fn run_refuses_an_invalid_file_and_names_the_error() {
    let p = temp("typo.yaml", "listeners:\n  - name: a\n    listen: 127.0.0.1:0\n    kind: explicit\n    upstrem: 198.51.100.10:21\n");
    let (code, _, err) = ftpalg(&["run", "--rules", &p]);
    assert_ne!(code, 0);
    assert!(err.contains("5:5: error: unknown field `upstrem`"), "{err}");
}

#[test]
fn version_and_help() {
    let (code, out, _) = ftpalg(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ftpalg "), "{out}");
    let (code, out, _) = ftpalg(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("check") && out.contains("run"), "{out}");
}

mod support;

/// SIGTERM: no new sessions, the running transfer finishes, then exit 0.
#[test]
fn sigterm_drains_then_exits() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(support::server::TestServer::start(
        support::server::Opts::default(),
    ));
    let body = support::data(8 * 1024 * 1024, 5);
    server.put("f", body.clone());
    let port = 20000 + (std::process::id() % 20000) as u16;
    let rules = temp(
        "drain.yaml",
        &format!("listeners:\n  - name: t\n    listen: 127.0.0.1:{port}\n    kind: explicit\n    upstream: {}\ndata:\n  client_ports: 46000-46999\n  server_ports: 47000-47999\n", server.addr),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftpalg"))
        .args(["run", "--rules", &rules])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(addr).is_ok()
    });
    assert!(up, "gateway did not start");
    let pid = child.id() as libc::pid_t;
    let got = rt.block_on(async {
        let (mut c, _) = support::client::Client::connect(addr).await;
        c.login("u").await;
        c.read_delay = Some(std::time::Duration::from_millis(20));
        let transfer = tokio::spawn(async move { c.retr("f", support::client::Mode::Pasv).await });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "new sessions still accepted after SIGTERM"
        );
        transfer.await.unwrap()
    });
    let got = got.expect("the running transfer finishes");
    assert_eq!(support::sha256(&got), support::sha256(&body));
    let status = (0..200)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            child.try_wait().unwrap()
        })
        .expect("gateway exits after draining");
    assert!(status.success(), "{status:?}");
}

#[test]
fn check_reports_every_error_with_the_nearest_key() {
    let p = temp("many.yaml", "listeners:\n  - name: a\n    listen: 127.0.0.1:2121\n    kind: explicit\n    upstream: 198.51.100.10:21\ndata:\n  pinhole_timout: 30s\nlimits:\n  sesions: 4\n  connect_timeout: soon\n");
    let (code, out, err) = ftpalg(&["check", "--rules", &p]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains(&format!("{p}:7:3: error: unknown field `pinhole_timout`")),
        "{err}"
    );
    assert!(
        err.contains("hint: did you mean `pinhole_timeout`?"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{p}:9:3: error: unknown field `sesions`")),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `sessions`?"), "{err}");
    assert!(
        err.contains(&format!(
            "{p}:10:20: error: connect_timeout: 'soon' is not a duration"
        )),
        "{err}"
    );
}

/// What systemd's Type=notify relies on: READY=1 once the listeners are
/// bound, RELOADING=1 with the time then READY=1 around a SIGHUP reload,
/// STOPPING=1 on SIGTERM.
#[test]
fn tells_systemd_when_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;
    let dir = std::env::temp_dir().join(format!("ftpalg-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let rules = temp(
        "notify.yaml",
        "listeners:\n  - name: t\n    listen: 127.0.0.1:0\n    kind: explicit\n    upstream: 198.51.100.10:21\n",
    );
    /// Stops the gateway however the test ends, a failed assertion too.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Killed(
        Command::new(env!("CARGO_BIN_EXE_ftpalg"))
            .args(["run", "--rules", &rules])
            .env("NOTIFY_SOCKET", &sock_path)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = sock.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1\n");
    let pid = child.0.id() as libc::pid_t;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(next(), "READY=1\n");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(next(), "STOPPING=1\n");
    // While the stop waits for transfers, systemd is asked for more time,
    // so the unit's TimeoutStopSec does not cut a longer shutdown_grace.
    assert_eq!(next(), "EXTEND_TIMEOUT_USEC=15000000\n");
    drop(child);
}

/// Without --rules, ftpalg reads the installed rules, never a file
/// relative to wherever it was started (here the repository, which has a
/// rules/default.yaml).
#[test]
fn the_default_rules_are_the_installed_ones() {
    let (code, out, err) = ftpalg(&["check"]);
    let installed = std::path::Path::new("/etc/ftpalg/rules.yaml").exists();
    if installed {
        assert!(out.starts_with("/etc/ftpalg/rules.yaml: "), "{out}{err}");
    } else {
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains("cannot read /etc/ftpalg/rules.yaml"), "{err}");
    }
    assert!(!out.contains("rules/default.yaml"), "{out}");
    let (_, help, _) = ftpalg(&["run", "--help"]);
    assert!(help.contains("[default: /etc/ftpalg/rules.yaml]"), "{help}");
}

#[test]
fn a_fatal_start_up_error_follows_the_log_format() {
    let (code, _, err) = ftpalg(&[
        "--log-format",
        "json",
        "run",
        "--rules",
        "/nonexistent/rules.yaml",
    ]);
    assert_eq!(code, 1, "{err}");
    let line = err.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object");
    assert_eq!(v["level"], "ERROR", "{line}");
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("/nonexistent/rules.yaml"), "{line}");
    assert!(!error.contains("os error"), "{line}");
}

/// Runs `ftpalg run` on a missing file with stderr into a file, and
/// JOURNAL_STREAM naming that file (as systemd names the journal's stream)
/// when `journal`, or another file when not.
fn stderr_under(journal: bool, target: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let err = temp(&format!("stderr-{journal}-{target}"), "");
    let named = if journal {
        err.clone()
    } else {
        temp("other", "")
    };
    let meta = std::fs::metadata(&named).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_ftpalg"))
        .args([
            "--log-target",
            target,
            "run",
            "--rules",
            "/nonexistent.yaml",
        ])
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    std::fs::read_to_string(&err).unwrap()
}

#[test]
fn under_the_journal_each_line_carries_its_priority() {
    let err = stderr_under(true, "auto");
    assert!(err.starts_with("<3>"), "{err}");
    assert!(err.lines().all(|l| l.starts_with('<')), "{err}");
    // A stream that is not the journal's, or `stderr` asked for: plain.
    for err in [stderr_under(false, "auto"), stderr_under(true, "stderr")] {
        assert!(!err.starts_with('<'), "{err}");
        assert!(err.contains("ERROR"), "{err}");
    }
}

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

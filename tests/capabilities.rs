//! Capabilities are per thread: `ftpalg run`, started as root, keeps
//! CAP_NET_ADMIN only on the threads that need it (the one owning the
//! nftables table, the one making IP_TRANSPARENT sockets), and every other
//! thread, the tokio workers that parse clients' and servers' bytes among
//! them, has it in none of its sets. Each test runs the real
//! binary in a network namespace of its own and reads
//! `/proc/PID/task/*/status`.
mod kernel;

use ftpalg::dataplane::kernel::{KernelConfig, KernelTable};
use kernel::require_root;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// CAP_NET_ADMIN's bit in the `Cap*` masks of `/proc/PID/status`.
const NET_ADMIN: u64 = 1 << 12;

/// How long the gateway may take to say it is ready (a debug build on two
/// busy cores).
const READY_WITHIN: Duration = Duration::from_secs(20);

/// One thread of a process, as `/proc` shows it.
#[derive(Debug)]
struct Thread {
    tid: u32,
    comm: String,
    eff: u64,
    prm: u64,
    inh: u64,
    amb: u64,
}

impl Thread {
    /// Holds CAP_NET_ADMIN, or could get it back through an exec.
    fn holds_net_admin(&self) -> bool {
        (self.eff | self.prm | self.inh | self.amb) & NET_ADMIN != 0
    }
}

fn cap_field(status: &str, key: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {status}"));
    u64::from_str_radix(line.trim(), 16).expect("hex capability mask")
}

/// Every thread of `pid` with its name and capability sets.
fn threads(pid: u32) -> Vec<Thread> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task directory") {
        let dir = entry.expect("task entry").path();
        let tid = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .expect("numeric tid");
        // A thread may end between the listing and the read.
        let (Ok(comm), Ok(status)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue;
        };
        out.push(Thread {
            tid,
            comm: comm.trim().to_string(),
            eff: cap_field(&status, "CapEff:"),
            prm: cap_field(&status, "CapPrm:"),
            inh: cap_field(&status, "CapInh:"),
            amb: cap_field(&status, "CapAmb:"),
        });
    }
    assert!(!out.is_empty(), "no threads read for {pid}");
    out
}

/// A directory of its own under the temporary directory, removed when
/// dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ftpalg-caps-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        // The gateway may run as nobody: it must reach the notify socket.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `ftpalg run` in the calling thread's network namespace, killed (by its
/// PID) when dropped.
struct Gateway {
    child: Child,
    notify: UnixDatagram,
    rules: PathBuf,
    log: PathBuf,
    _dir: Scratch,
}

impl Gateway {
    /// Starts the gateway on `yaml` with `args` and returns once it told
    /// the notify socket it is ready (every listener bound).
    fn start(tag: &str, yaml: &str, args: &[&str]) -> Gateway {
        Gateway::start_under(tag, yaml, &[], args)
    }

    /// Like [`Gateway::start`], the command run by `prefix` (which must
    /// exec it, keeping the PID).
    fn start_under(tag: &str, yaml: &str, prefix: &[&str], args: &[&str]) -> Gateway {
        let dir = Scratch::new(tag);
        let rules = dir.0.join("rules.yaml");
        write_rules(&rules, yaml);
        let log = dir.0.join("log");
        let sock = dir.0.join("notify");
        let notify = UnixDatagram::bind(&sock).expect("notify socket");
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(env!("CARGO_BIN_EXE_ftpalg"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_ftpalg")),
        };
        let child = cmd
            .args(["run", "--rules"])
            .arg(&rules)
            .args(args)
            .env("NOTIFY_SOCKET", &sock)
            .env("FTPALG_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start ftpalg");
        let mut gw = Gateway {
            child,
            notify,
            rules,
            log,
            _dir: dir,
        };
        gw.wait_ready();
        gw
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `READY=1` on the notify socket.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        let mut buf = [0u8; 512];
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "ftpalg exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "ftpalg not ready within {READY_WITHIN:?}:\n{}",
                self.log()
            );
            self.notify
                .set_read_timeout(Some(left.min(Duration::from_millis(200))))
                .unwrap();
            if let Ok(n) = self.notify.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
                {
                    return;
                }
            }
        }
    }

    /// Replaces the rules file, sends SIGHUP and waits for the reload to
    /// be over.
    fn reload(&mut self, yaml: &str) {
        write_rules(&self.rules, yaml);
        // SAFETY: kill with the PID of our own child, which is still ours
        // (not reaped).
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGHUP) };
        assert_eq!(rc, 0, "SIGHUP: {}", std::io::Error::last_os_error());
        self.wait_ready();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_rules(path: &Path, yaml: &str) {
    std::fs::write(path, yaml).expect("rules file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Runs `f` on a thread in a network namespace of its own with loopback
/// up; the gateways it starts live there, and go with it.
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare on the calling thread only; no pointers.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        kernel::run(&["ip", "link", "set", "lo", "up"]);
        f()
    })
    .join()
    .expect("namespace thread")
}

/// Says which threads hold CAP_NET_ADMIN, for the failure messages.
fn show(ts: &[Thread]) -> String {
    ts.iter()
        .map(|t| {
            format!(
                "{} {:<16} eff {:016x} prm {:016x} inh {:016x} amb {:016x}\n",
                t.tid, t.comm, t.eff, t.prm, t.inh, t.amb
            )
        })
        .collect()
}

/// Checks that the threads named `privileged` (each present once) hold
/// CAP_NET_ADMIN effective, and that no other thread holds it in any set
/// (effective, permitted, inheritable, ambient); the runtime's workers
/// must be among those checked.
fn assert_only(pid: u32, privileged: &[&str], what: &str) {
    // A thread names itself once it runs, which may be after the gateway
    // said it is ready: wait (bounded) for the names.
    let deadline = Instant::now() + Duration::from_secs(5);
    let ts = loop {
        let ts = threads(pid);
        let named = privileged
            .iter()
            .all(|name| ts.iter().any(|t| t.comm == *name))
            && ts.iter().any(|t| t.comm.starts_with("tokio-"));
        if named || Instant::now() > deadline {
            break ts;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for name in privileged {
        let named: Vec<&Thread> = ts.iter().filter(|t| t.comm == *name).collect();
        assert_eq!(
            named.len(),
            1,
            "{what}: one {name} thread in\n{}",
            show(&ts)
        );
        assert!(
            named[0].eff & NET_ADMIN != 0,
            "{what}: {name} lacks CAP_NET_ADMIN:\n{}",
            show(&ts)
        );
    }
    assert!(
        ts.iter().any(|t| t.comm.starts_with("tokio-")),
        "{what}: no runtime worker among\n{}",
        show(&ts)
    );
    let holders: Vec<&Thread> = ts
        .iter()
        .filter(|t| !privileged.contains(&t.comm.as_str()) && t.holds_net_admin())
        .collect();
    assert!(
        holders.is_empty(),
        "{what}: threads other than {privileged:?} hold CAP_NET_ADMIN:\n{}",
        show(&ts)
    );
}

fn rules(path: &str, listeners: &str) -> String {
    format!("listeners:\n{listeners}data:\n  path: {path}\n  client_ports: 42000-42999\n  server_ports: 43000-43999\n")
}

const PLAIN: &str =
    "  - name: a\n    listen: 127.0.0.1:2121\n    kind: user-at-host\n    servers: [any]\n";

fn transparent(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    listen: 127.0.0.1:{port}\n    kind: transparent\n    tproxy: true\n"
    )
}

#[test]
fn only_the_kernel_thread_holds_net_admin() {
    if !require_root() {
        return;
    }
    in_netns(|| {
        for (tag, args) in [
            ("kernel-root", &[][..]),
            ("kernel-nobody", &["--user", "nobody"][..]),
        ] {
            let gw = Gateway::start(tag, &rules("kernel", PLAIN), args);
            assert!(
                gw.log().contains("kernel data path on"),
                "{tag}: the kernel data path did not start:\n{}",
                gw.log()
            );
            assert_only(gw.pid(), &["ftpalg-kernel"], tag);
        }
        // As systemd starts it: an unprivileged user with the capability
        // ambient (AmbientCapabilities=, NoNewPrivileges=yes).
        let gw = Gateway::start_under(
            "kernel-ambient",
            &rules("kernel", PLAIN),
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=+net_admin",
                "--ambient-caps=+net_admin",
                "--no-new-privs",
            ],
            &[],
        );
        assert!(
            gw.log().contains("kernel data path on"),
            "ambient: the kernel data path did not start:\n{}",
            gw.log()
        );
        assert_only(gw.pid(), &["ftpalg-kernel"], "ambient");
    });
}

#[test]
fn without_the_kernel_table_no_thread_holds_net_admin() {
    if !require_root() {
        return;
    }
    in_netns(|| {
        // Another process owns a table of ftpalg's name: the gateway cannot
        // replace it, so `auto` falls back to the relay.
        let (held, _) = KernelTable::open(KernelConfig::default()).expect("hold the table");
        let gw = Gateway::start("auto-unopened", &rules("auto", PLAIN), &[]);
        assert!(
            gw.log().contains("kernel data path unavailable"),
            "the table opened after all:\n{}",
            gw.log()
        );
        assert_only(gw.pid(), &[], "auto without the table");
        drop(gw);
        drop(held);
        let gw = Gateway::start("relay", &rules("relay", PLAIN), &[]);
        assert_only(gw.pid(), &[], "relay");
    });
}

#[test]
fn transparent_sockets_are_made_by_one_privileged_thread() {
    if !require_root() {
        return;
    }
    in_netns(|| {
        let mut gw = Gateway::start(
            "tproxy",
            &rules("relay", &transparent("tp1", 2121)),
            &["--user", "nobody"],
        );
        assert_only(gw.pid(), &["ftpalg-tproxy"], "tproxy at start");
        // A reload adds a second transparent listener: the workers cannot
        // set IP_TRANSPARENT themselves, yet it binds.
        let both = transparent("tp1", 2121) + &transparent("tp2", 2122);
        gw.reload(&rules("relay", &both));
        let deadline = Instant::now() + Duration::from_secs(5);
        let stream = loop {
            match TcpStream::connect("127.0.0.1:2122") {
                Ok(s) => break s,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "the reloaded tproxy listener is not there: {e}\n{}",
                        gw.log()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut hello = String::new();
        BufReader::new(&stream)
            .read_line(&mut hello)
            .expect("a greeting");
        // Reached directly, a transparent listener's original destination
        // is itself: served, and refused as aimed at the gateway.
        assert!(
            hello.starts_with("421") && hello.contains("gateway itself"),
            "{hello}"
        );
        let _ = (&stream).write_all(b"QUIT\r\n");
        assert_only(gw.pid(), &["ftpalg-tproxy"], "tproxy after a reload");
    });
}

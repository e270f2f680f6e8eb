//! Least privilege: the gateway keeps only the capabilities its rules need
//! and, started as root, runs as an unprivileged user.
//!
//! Capabilities belong to each thread, not to the process, and a new thread
//! starts with its maker's, so the switch must happen while the process has
//! one thread: before the async runtime starts. [`drop_for`] keeps exactly
//! the capabilities the rules need ([`needed`]), so binding after the switch
//! succeeds wherever binding before it would. CAP_NET_ADMIN, when needed,
//! is needed by two threads only, the one owning ftpalg's nftables table and
//! the one making IP_TRANSPARENT sockets: `ftpalg run` starts them with it,
//! then takes it from every other thread with [`drop_from_this_thread`]
//! (see `ftpalg::proxy::Privileged`).

use crate::rules::Rules;
use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Group, Uid, User};
use thiserror::Error;

/// Why the privileges could not be dropped. The gateway does not start
/// with more privilege than the operator asked for.
#[derive(Debug, Error)]
pub enum PrivilegeError {
    /// The user or group named does not exist.
    #[error("no such {kind}: {name}")]
    Unknown {
        /// `user` or `group`.
        kind: &'static str,
        /// The name given.
        name: String,
    },
    /// A user was named but the process was not started as root, so it
    /// cannot become that user.
    #[error("cannot run as {name} (uid {wanted}): started as uid {current}, not root")]
    NotRoot {
        /// The user named.
        name: String,
        /// Its uid.
        wanted: u32,
        /// The uid the process has.
        current: u32,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// Which step.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The switch seemed to work but the process can still regain root.
    #[error("privileges not dropped: {0}")]
    Incomplete(String),
}

fn sys<E: Into<std::io::Error>>(what: &'static str) -> impl FnOnce(E) -> PrivilegeError {
    move |e| PrivilegeError::Sys {
        what,
        source: e.into(),
    }
}

fn caps_err(what: &'static str) -> impl FnOnce(caps::errors::CapsError) -> PrivilegeError {
    move |e| PrivilegeError::Sys {
        what,
        source: std::io::Error::other(e.to_string()),
    }
}

/// The capabilities `rules` need: `CAP_NET_BIND_SERVICE` if a listener is
/// on a port below 1024, `CAP_NET_ADMIN` if one uses TPROXY (its sockets
/// are IP_TRANSPARENT) or the data path may be the kernel's (ftpalg manages
/// its own nftables table over netlink).
pub fn needed(rules: &Rules) -> CapsHashSet {
    let mut set = CapsHashSet::new();
    if rules.listeners.iter().any(|l| l.listen.port() < 1024) {
        set.insert(Capability::CAP_NET_BIND_SERVICE);
    }
    let kernel_path = matches!(
        rules.data.path,
        crate::rules::DataPath::Kernel | crate::rules::DataPath::Auto
    );
    if kernel_path || rules.listeners.iter().any(|l| l.tproxy) {
        set.insert(Capability::CAP_NET_ADMIN);
    }
    set
}

/// What [`drop_privileges`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Started as root: now runs as `uid`/`gid` with only `caps`.
    Switched {
        /// The new uid.
        uid: u32,
        /// The new gid.
        gid: u32,
        /// The capabilities kept.
        caps: Vec<String>,
    },
    /// Started as root with no user named: still uid 0, but with only
    /// `caps` (a root that cannot read other users' files or load modules).
    RootWithFewerCaps {
        /// The capabilities kept.
        caps: Vec<String>,
    },
    /// Not started as root: runs as it is, with what it was given (for
    /// example systemd's `AmbientCapabilities`).
    AsStarted {
        /// The uid.
        uid: u32,
    },
}

/// In plain words, for the log: `uid 998 gid 998, keeps CAP_NET_BIND_SERVICE`.
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn kept(caps: &[String]) -> String {
            match caps {
                [] => "no capabilities".into(),
                c => format!("keeps {}", c.join(", ")),
            }
        }
        match self {
            Outcome::Switched { uid, gid, caps } => {
                write!(f, "switched to uid {uid} gid {gid}, {}", kept(caps))
            }
            Outcome::RootWithFewerCaps { caps } => write!(f, "uid 0, {}", kept(caps)),
            Outcome::AsStarted { uid } => write!(f, "runs as started, uid {uid}"),
        }
    }
}

fn names(set: &CapsHashSet) -> Vec<String> {
    let mut v: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    v.sort();
    v
}

/// The account `name` (a name or a numeric uid) names.
pub(crate) fn resolve_user(name: &str) -> Result<User, PrivilegeError> {
    let found = match name.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)),
        Err(_) => User::from_name(name),
    };
    found
        .map_err(sys("looking up the user"))?
        .ok_or_else(|| PrivilegeError::Unknown {
            kind: "user",
            name: name.to_string(),
        })
}

/// The group `name` (a name or a numeric gid) names.
pub(crate) fn resolve_group(name: &str) -> Result<Gid, PrivilegeError> {
    let found = match name.parse::<u32>() {
        Ok(n) => Group::from_gid(Gid::from_raw(n)),
        Err(_) => Group::from_name(name),
    };
    found
        .map_err(sys("looking up the group"))?
        .map(|g| g.gid)
        .ok_or_else(|| PrivilegeError::Unknown {
            kind: "group",
            name: name.to_string(),
        })
}

/// Limits every capability set of this thread to `keep`, the bounding set
/// too, so that not even an exec could bring the others back.
fn limit_caps(keep: &CapsHashSet) -> Result<(), PrivilegeError> {
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(caps_err("dropping from the bounding set"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clearing the ambient set"))?;
    caps::clear(None, CapSet::Inheritable).map_err(caps_err("clearing the inheritable set"))?;
    caps::set(None, CapSet::Effective, keep).map_err(caps_err("setting the effective set"))?;
    caps::set(None, CapSet::Permitted, keep).map_err(caps_err("setting the permitted set"))?;
    Ok(())
}

fn set_keepcaps(on: bool) -> Result<(), PrivilegeError> {
    // SAFETY: prctl with PR_SET_KEEPCAPS takes one integer argument.
    let r = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(on), 0, 0, 0) };
    if r != 0 {
        return Err(PrivilegeError::Sys {
            what: "PR_SET_KEEPCAPS",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn no_new_privs() -> Result<(), PrivilegeError> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes the value 1 and zeros.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
    if r != 0 {
        return Err(PrivilegeError::Sys {
            what: "PR_SET_NO_NEW_PRIVS",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Drops to `user` (and `group`, or the user's primary group) keeping only
/// `keep`. Must be called before any other thread is started: see the
/// module's documentation.
pub fn drop_privileges(
    user: Option<&str>,
    group: Option<&str>,
    keep: &CapsHashSet,
) -> Result<Outcome, PrivilegeError> {
    let current = Uid::effective();
    let target = user.map(resolve_user).transpose()?;
    if !current.is_root() {
        if let Some(u) = &target {
            if u.uid != current {
                return Err(PrivilegeError::NotRoot {
                    name: u.name.clone(),
                    wanted: u.uid.as_raw(),
                    current: current.as_raw(),
                });
            }
        }
        return Ok(Outcome::AsStarted {
            uid: current.as_raw(),
        });
    }
    let Some(u) = target else {
        limit_caps(keep)?;
        no_new_privs()?;
        return Ok(Outcome::RootWithFewerCaps { caps: names(keep) });
    };
    let gid = match group {
        Some(g) => resolve_group(g)?,
        None => u.gid,
    };
    // The bounding set can only be narrowed while CAP_SETPCAP is held,
    // that is before the switch.
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(caps_err("dropping from the bounding set"))?;
        }
    }
    set_keepcaps(true)?;
    nix::unistd::setgroups(&[gid]).map_err(sys("setgroups"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(sys("setresgid"))?;
    nix::unistd::setresuid(u.uid, u.uid, u.uid).map_err(sys("setresuid"))?;
    set_keepcaps(false)?;
    limit_caps(keep)?;
    no_new_privs()?;
    if nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).is_ok() {
        return Err(PrivilegeError::Incomplete("uid 0 could be regained".into()));
    }
    let held =
        caps::read(None, CapSet::Permitted).map_err(caps_err("reading the permitted set"))?;
    if &held != keep {
        return Err(PrivilegeError::Incomplete(format!(
            "permitted capabilities are {:?}, wanted {:?}",
            names(&held),
            names(keep)
        )));
    }
    Ok(Outcome::Switched {
        uid: u.uid.as_raw(),
        gid: gid.as_raw(),
        caps: names(keep),
    })
}

/// Takes `cap` out of the calling thread's effective, permitted,
/// inheritable and ambient sets, and sets `no_new_privs` on it: neither the
/// thread nor any thread it starts afterwards holds `cap` or can regain it,
/// not even by exec. Threads started before keep theirs: that is how the
/// threads that need `cap` keep it (`ftpalg::proxy::Privileged`). Returns
/// whether the thread held `cap`; when it did not, it makes no system call
/// that a sandbox could refuse (systemd's `~@privileged` refuses `capset`).
pub fn drop_from_this_thread(cap: Capability) -> Result<bool, PrivilegeError> {
    let held = |set| caps::has_cap(None, set, cap).map_err(caps_err("reading the capability sets"));
    let ambient = caps::has_cap(None, CapSet::Ambient, cap).unwrap_or(false);
    if !ambient && !held(CapSet::Permitted)? && !held(CapSet::Inheritable)? {
        return Ok(false);
    }
    if ambient {
        caps::drop(None, CapSet::Ambient, cap).map_err(caps_err("lowering the ambient set"))?;
    }
    // The effective set must stay within the permitted one: it goes first.
    for set in [CapSet::Effective, CapSet::Inheritable, CapSet::Permitted] {
        caps::drop(None, set, cap).map_err(caps_err(
            "capset on this thread (under systemd, the unit needs SystemCallFilter=capset)",
        ))?;
    }
    no_new_privs()?;
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        if held(set)? {
            return Err(PrivilegeError::Incomplete(format!(
                "{cap} still in this thread's {set:?} set"
            )));
        }
    }
    Ok(true)
}

/// Drops privileges for `rules`, the user and group given on the command
/// line taking precedence over the rules' `run_as`.
pub fn drop_for(
    rules: &Rules,
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Outcome, PrivilegeError> {
    let user = user.or(rules.run_as.user.as_deref());
    let group = group.or(rules.run_as.group.as_deref());
    drop_privileges(user, group, &needed(rules))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Rules {
        crate::rules::from_str(text).rules.expect("valid rules")
    }

    #[test]
    fn needs_follow_the_listeners() {
        let low = rules("listeners:\n  - name: a\n    listen: 0.0.0.0:21\n    kind: user-at-host\n    servers: [any]\n");
        assert_eq!(
            needed(&low),
            [Capability::CAP_NET_BIND_SERVICE].into_iter().collect()
        );
        let high = rules("listeners:\n  - name: a\n    listen: 0.0.0.0:2121\n    kind: user-at-host\n    servers: [any]\n");
        assert!(needed(&high).is_empty());
        let tproxy = rules("listeners:\n  - name: a\n    listen: 0.0.0.0:2121\n    kind: transparent\n    tproxy: true\n");
        assert_eq!(
            needed(&tproxy),
            [Capability::CAP_NET_ADMIN].into_iter().collect()
        );
    }

    #[test]
    fn the_kernel_data_path_keeps_net_admin() {
        for path in ["kernel", "auto"] {
            let r = rules(&format!("listeners:\n  - name: a\n    listen: 0.0.0.0:2121\n    kind: user-at-host\n    servers: [any]\ndata:\n  path: {path}\n"));
            assert_eq!(
                needed(&r),
                [Capability::CAP_NET_ADMIN].into_iter().collect(),
                "path: {path}"
            );
        }
        let relay = rules("listeners:\n  - name: a\n    listen: 0.0.0.0:2121\n    kind: user-at-host\n    servers: [any]\ndata:\n  path: relay\n");
        assert!(needed(&relay).is_empty());
    }

    #[test]
    fn a_capability_dropped_from_one_thread_stays_with_the_threads_started_before() {
        // Root, on a thread of its own (the namespace is incidental).
        crate::dataplane::kernel::testing::in_fresh_netns(|| {
            let cap = Capability::CAP_NET_ADMIN;
            let holds = move || {
                [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable]
                    .map(|set| caps::has_cap(None, set, cap).expect("read"))
            };
            let (go, wait) = std::sync::mpsc::channel::<()>();
            let before = std::thread::spawn(move || {
                let _ = wait.recv();
                holds()
            });
            assert!(drop_from_this_thread(cap).expect("drop"), "root held it");
            assert_eq!(holds(), [false; 3], "this thread");
            assert_eq!(
                std::thread::spawn(holds).join().unwrap(),
                [false; 3],
                "a thread started after"
            );
            go.send(()).unwrap();
            assert!(before.join().unwrap()[1], "a thread started before lost it");
            assert!(!drop_from_this_thread(cap).expect("again"), "nothing left");
            // Permitted gone: the thread cannot raise it again.
            let mut eff = caps::read(None, CapSet::Effective).unwrap();
            eff.insert(cap);
            assert!(caps::set(None, CapSet::Effective, &eff).is_err());
        });
    }

    /// Makes `capset` fail with EPERM on the calling thread, as systemd's
    /// `SystemCallFilter=~@privileged` does.
    fn refuse_capset() {
        let stmt = |code: u32, k: u32| libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let mut prog = [
            // seccomp_data.nr is at offset 0.
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
            libc::sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                jt: 0,
                jf: 1,
                k: libc::SYS_capset as u32,
            },
            stmt(
                libc::BPF_RET | libc::BPF_K,
                libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
            ),
            stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        ];
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        no_new_privs().expect("no_new_privs");
        // SAFETY: a valid filter program that outlives the call; the
        // filter applies to the calling thread only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &fprog as *const libc::sock_fprog,
            )
        };
        assert_eq!(rc, 0, "seccomp: {}", std::io::Error::last_os_error());
    }

    #[test]
    fn a_refused_capset_is_an_error_that_names_the_unit_setting() {
        crate::dataplane::kernel::testing::in_fresh_netns(|| {
            refuse_capset();
            let e = drop_from_this_thread(Capability::CAP_NET_ADMIN).expect_err("capset refused");
            assert!(e.to_string().contains("SystemCallFilter=capset"), "{e}");
            // Nothing was dropped behind the error's back.
            assert!(caps::has_cap(None, CapSet::Permitted, Capability::CAP_NET_ADMIN).unwrap());
        });
    }

    #[test]
    fn an_unknown_user_is_refused() {
        let e = drop_privileges(Some("no-such-user-ftpalg-test"), None, &CapsHashSet::new());
        assert!(
            matches!(e, Err(PrivilegeError::Unknown { kind: "user", .. })),
            "{e:?}"
        );
    }
}

//! Helpers for tests that need a kernel of their own.

/// Runs `f` on a thread in a network namespace of its own (gone when
/// the thread ends); threads it spawns inherit it. Needs root; `None`
/// when skipped on purpose.
pub(crate) fn in_fresh_netns<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("FTPALG_SKIP_KERNEL_TESTS").is_some(),
            "kernel tests need root (set FTPALG_SKIP_KERNEL_TESTS=1 to skip them)"
        );
        return None;
    }
    let h = std::thread::spawn(move || {
        // SAFETY: unshare on the calling thread only; no pointers.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        f()
    });
    Some(h.join().expect("namespace thread"))
}

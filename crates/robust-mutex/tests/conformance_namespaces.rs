//! Conformance: PID namespaces (research §2.4, scenario 28, and issue 7 defect 1).
//!
//! Thread ids are namespace-local. A holder in another PID namespace must never be probed with
//! `tgkill` from ours (its ids name other threads, or none, here): the probe would answer ESRCH
//! and mark a live holder's lock owner-died, giving a second holder. These tests put a real
//! holder in a real new PID namespace (`unshare --pid --fork`, as root) and check that the host
//! waits for it instead.
//!
//! - a process that cannot read its own namespace (no `/proc`) is refused by default (`EPIDNS`):
//!   an unknown namespace is a mismatch, never a match;
//! - with `allow_foreign_pid_namespace`, a holder in another namespace (known or unknown) keeps
//!   the lock for as long as it holds it: waiters time out, nobody is told its owner died.

mod conformance_support;

use std::path::Path;
use std::time::{Duration, Instant};

use conformance_support::*;
use robust_mutex::{Error, OpenOptions, SharedMutex};

#[test]
#[ignore = "entry point of the helper processes, not a test"]
fn helper_entry() {
    helper_main(|role, args| match role {
        "ns-holder" => Some(ns_holder(Path::new(&args[0]), args[1] == "allow")),
        "fork-into-new-ns" => Some(fork_into_new_ns(Path::new(&args[0]), Path::new(&args[1]))),
        _ => None,
    });
}

/// Opens `path` (with `allow_foreign_pid_namespace` when `allow`), then a second thread (whose
/// id differs from the process id, as in most real holders) locks it and reports
/// `locked pid= tid=`; it releases on `release` and reports `released`. If the open fails it
/// reports `failed code=`.
fn ns_holder(path: &Path, allow: bool) -> i32 {
    let mutex = match OpenOptions::new().allow_foreign_pid_namespace(allow).open(path) {
        Ok(mutex) => mutex,
        Err(e) => {
            say(format!("failed code={}", e.code()));
            while read_command().is_some() {}
            return 0;
        }
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let guard = mutex.lock().expect("lock in the other namespace");
            say(format!("locked pid={} tid={}", std::process::id(), gettid()));
            assert_eq!(read_command().as_deref(), Some("release"));
            guard.release().expect("release");
            say("released");
        });
    });
    while read_command().is_some() {}
    0
}

/// Opens `known` (so this process has read its PID namespace), moves its future children into
/// a new PID namespace (`unshare(CLONE_NEWPID)`), forks, and the child creates `created`, then
/// reports `child exit=` with the child's status (0: created). The child inherits the parent's
/// memory: it must read its namespace again, not record the parent's.
fn fork_into_new_ns(known: &Path, created: &Path) -> i32 {
    let _primed = SharedMutex::open(known).expect("open in the host namespace");
    // SAFETY: unshare has no memory preconditions; CLONE_NEWPID affects only later children.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWPID) }, 0, "unshare(CLONE_NEWPID)");
    // SAFETY: this helper process runs one test on one thread (`--test-threads=1`), and the
    // child only opens a file and leaves with `_exit`.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            let code = if SharedMutex::open(created).is_ok() { 0 } else { 1 };
            // SAFETY: `_exit` has no preconditions; nothing of the parent's runs in the child.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
            let code = match status {
                nix::sys::wait::WaitStatus::Exited(_, code) => code,
                other => panic!("the child did not exit: {other:?}"),
            };
            say(format!("child exit={code}"));
            0
        }
    }
}

fn require_unshare() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "these tests need root (unshare --pid)");
    let ok = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "unshare --pid --fork must work here");
}

/// The host waits on a lock held in another PID namespace: it must time out (the holder is
/// alive), and never acquire with `owner_died`.
fn host_must_wait(mutex: &SharedMutex, holder: &mut Helper) {
    let started = Instant::now();
    match mutex.lock_timeout(Duration::from_millis(1_000)) {
        Err(Error::Timeout) => {}
        Ok(guard) => panic!(
            "two holders: the host acquired (owner_died={}) a lock held by a live thread in another \
             PID namespace after {:?}",
            guard.owner_died(),
            started.elapsed()
        ),
        Err(e) => panic!("unexpected error while the other namespace holds: {e:?}"),
    }
    assert!(holder.is_running(), "the holder is still alive");
    holder.send("release");
    holder.expect_within("released", PROMPT);
    let guard = mutex.lock_timeout(PROMPT).expect("free after the release");
    assert!(!guard.owner_died(), "a released lock is not an owner death");
}

#[test]
fn c28_holder_in_another_pid_namespace_is_never_declared_dead() {
    require_unshare();
    let dir = TempDir::new("pidns-known");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("create in the host namespace");
    let mut holder = Helper::spawn_wrapped(
        &["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"],
        "ns-holder",
        &[arg(&path), "allow".into()],
    );
    let line = holder.expect("locked");
    assert_eq!(num_field(&line, "pid"), 1, "the holder runs as pid 1 of a new namespace: {line}");
    host_must_wait(&mutex, &mut holder);
}

/// `unshare --mount --pid --fork` then `/proc` unmounted: the process cannot tell which PID
/// namespace it is in.
const NO_PROC: [&str; 9] =
    ["unshare", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", "umount -l /proc && exec \"$@\"", "sh"];

#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "file-lock backend: exclusion is by file locks, not thread ids, so the file records no PID namespace and every namespace may use it"
)]
fn c28_unknown_pid_namespace_is_refused_by_default() {
    require_unshare();
    let dir = TempDir::new("pidns-unknown");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("create in the host namespace");
    let mut holder = Helper::spawn_wrapped(&NO_PROC, "ns-holder", &[arg(&path), "deny".into()]);
    let line = holder.expect("");
    if line.starts_with("locked") {
        // What the old code did: it treated "unknown" as "same namespace". Show the harm.
        host_must_wait(&mutex, &mut holder);
        panic!("a process that cannot read its PID namespace opened the file: {line}");
    }
    assert_eq!(line, "failed code=EPIDNS", "an unknown namespace is a mismatch");
}

#[test]
fn c28_unknown_pid_namespace_allowed_explicitly_still_excludes() {
    require_unshare();
    let dir = TempDir::new("pidns-unknown-allowed");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("create in the host namespace");
    let mut holder = Helper::spawn_wrapped(&NO_PROC, "ns-holder", &[arg(&path), "allow".into()]);
    holder.expect("locked");
    host_must_wait(&mutex, &mut holder);
}

#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "file-lock backend: exclusion is by file locks, not thread ids, so the file records no PID namespace and every namespace may use it"
)]
fn c28_reset_from_another_namespace_keeps_the_files_namespace() {
    require_unshare();
    let dir = TempDir::new("pidns-reset");
    let path = dir.join("lock");
    // Created inside a new PID namespace.
    let mut creator = Helper::spawn_wrapped(
        &["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"],
        "ns-holder",
        &[arg(&path), "allow".into()],
    );
    creator.expect("locked");
    creator.send("release");
    creator.expect_within("released", PROMPT);
    creator.close_stdin();
    creator.expect_success();
    let err = SharedMutex::open(&path).expect_err("another namespace's file");
    assert_eq!(err.code(), "EPIDNS");
    // The host resets it while nobody uses it: re-initialised in place, still theirs.
    SharedMutex::reset(&path).expect("reset");
    let err = SharedMutex::open(&path).expect_err("still another namespace's file after reset");
    assert_eq!(err.code(), "EPIDNS");
}

/// A process that has read its PID namespace and then forks a child into a new one (the child of
/// an `unshare(CLONE_NEWPID)`): the child's file must record the child's namespace, so the host
/// refuses it. (The namespace is cached per process; a cache inherited across the fork would
/// have recorded the parent's, and the host would have shared thread ids with another namespace.)
#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "file-lock backend: exclusion is by file locks, not thread ids, so the file records no PID namespace and every namespace may use it"
)]
fn c28_a_fork_child_in_a_new_pid_namespace_records_its_own() {
    require_unshare();
    let dir = TempDir::new("pidns-fork");
    let known = dir.join("known");
    let created = dir.join("created");
    SharedMutex::open(&known).expect("create in the host namespace");
    let mut helper = Helper::spawn("fork-into-new-ns", &[arg(&known), arg(&created)]);
    let line = helper.expect("child exit=");
    assert_eq!(num_field(&line, "exit"), 0, "the child created its file: {line}");
    helper.close_stdin();
    helper.expect_success();
    let err = SharedMutex::open(&created).expect_err("a file of another PID namespace");
    assert_eq!(err.code(), "EPIDNS");
    SharedMutex::open(&known).expect("the host's own file still opens");
}

//! The Windows backend (a named kernel mutex), run under Wine on the Linux CI machine:
//!
//! ```text
//! CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine \
//!   cargo test -p robust-mutex --target x86_64-pc-windows-gnu --test windows_backend
//! ```
//!
//! Real helper processes (this test binary re-run in a role), killed with `TerminateProcess`
//! (`Child::kill`): the kernel abandons the mutex and the next wait returns `WAIT_ABANDONED`.
//! The Unix suites (fork, signals, /proc) do not build for Windows; this file holds the
//! scenarios that apply there.
#![cfg(windows)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use robust_mutex::{CancelToken, Error, SharedMutex};

const ROLE: &str = "ROBUST_MUTEX_WINDOWS_ROLE";
const PATH: &str = "ROBUST_MUTEX_WINDOWS_PATH";
const PROMPT: Duration = Duration::from_secs(20);

fn temp_path(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("robust-mutex-win-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("lock")
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "#win# {line}").unwrap();
    out.flush().unwrap();
}

#[test]
#[ignore = "entry point of the helper processes the tests spawn"]
fn helper_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let path = PathBuf::from(std::env::var_os(PATH).expect("path"));
    let mutex = SharedMutex::open(&path).expect("open");
    match role.as_str() {
        // Holds until killed.
        "hold" => {
            let guard = mutex.lock().expect("lock");
            say(&format!("locked pid={} token={}", std::process::id(), guard.fencing_token()));
            std::thread::sleep(Duration::from_secs(120));
        }
        // A thread locks and ends holding; the process lives on until killed.
        "thread-exit" => {
            let m = mutex.clone();
            std::thread::spawn(move || std::mem::forget(m.lock().expect("lock"))).join().unwrap();
            say("thread-ended");
            std::thread::sleep(Duration::from_secs(120));
        }
        // Exits (ExitProcess) while holding.
        "exit" => {
            let guard = mutex.lock().expect("lock");
            say("locked");
            std::mem::forget(guard);
            std::process::exit(0);
        }
        "poison" => {
            let mut guard = mutex.lock().expect("lock");
            guard.poison();
            let token = guard.fencing_token();
            guard.release().expect("release");
            say(&format!("poisoned token={token}"));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

struct Helper {
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl Helper {
    fn spawn(role: &str, path: &Path) -> Helper {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["helper_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
            .env(ROLE, role)
            .env(PATH, path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a helper");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Helper { child, lines }
    }

    /// The next line the helper reports (blocking; the helpers report at once).
    fn expect(&mut self, prefix: &str) -> String {
        for line in &mut self.lines {
            let line = line.expect("read");
            if let Some(rest) = line.strip_prefix("#win# ") {
                assert!(rest.starts_with(prefix), "expected {prefix}, got {rest}");
                return rest.to_string();
            }
        }
        panic!("the helper ended before reporting {prefix}");
    }

    fn kill(&mut self) {
        self.child.kill().expect("TerminateProcess");
        self.child.wait().expect("wait");
    }
}

/// A holder process killed with `TerminateProcess`: the next acquirer gets the lock with
/// `owner_died`, naming the dead process, in every acquire flavour.
#[test]
fn a_killed_holder_process_is_an_owner_death() {
    let path = temp_path("killed");
    let mutex = SharedMutex::open(&path).unwrap();
    type Acquire = fn(&SharedMutex) -> Result<robust_mutex::MutexGuard<'_>, Error>;
    let flavours: [(&str, Acquire); 3] = [
        ("try_lock", |m| m.try_lock().map(|g| g.expect("free after the kill"))),
        ("lock", |m| m.lock()),
        ("lock_timeout", |m| m.lock_timeout(PROMPT)),
    ];
    for (name, acquire) in flavours {
        let mut holder = Helper::spawn("hold", &path);
        holder.expect("locked");
        assert!(mutex.try_lock().unwrap().is_none(), "{name}: held by the helper");
        assert!(mutex.state().locked, "{name}");
        let pid = holder.child.id() as i32;
        holder.kill();
        let guard = acquire(&mutex).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(guard.owner_died(), "{name}");
        assert_eq!(guard.dead_owner().map(|d| d.pid), Some(pid), "{name}");
        drop(guard);
        assert!(!mutex.lock().unwrap().owner_died(), "{name}: healthy again");
    }
    assert_eq!(mutex.state().owner_deaths, 3);
}

/// A waiter already blocked when the holder process is killed gets the lock with `owner_died`.
#[test]
fn a_waiter_blocked_when_the_holder_is_killed_gets_owner_died() {
    let path = temp_path("waiter");
    let mutex = SharedMutex::open(&path).unwrap();
    let mut holder = Helper::spawn("hold", &path);
    holder.expect("locked");
    let waiter = {
        let mutex = mutex.clone();
        std::thread::spawn(move || mutex.lock_timeout(PROMPT).map(|g| g.owner_died()))
    };
    std::thread::sleep(Duration::from_millis(300));
    holder.kill();
    assert!(waiter.join().unwrap().expect("acquired"));
}

/// Timeouts and cancellation while another process holds the lock.
#[test]
fn timeouts_and_cancellation_while_another_process_holds() {
    let path = temp_path("timeout");
    let mutex = SharedMutex::open(&path).unwrap();
    let mut holder = Helper::spawn("hold", &path);
    holder.expect("locked");
    let started = Instant::now();
    assert!(matches!(mutex.lock_timeout(Duration::from_millis(300)), Err(Error::Timeout)));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(5), "{waited:?}");
    let cancel = CancelToken::new();
    let result = std::thread::scope(|s| {
        let waiter = s.spawn(|| mutex.lock_until(None, &cancel).map(drop));
        std::thread::sleep(Duration::from_millis(200));
        cancel.cancel();
        waiter.join().unwrap()
    });
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    holder.kill();
    assert!(mutex.lock().unwrap().owner_died());
}

/// A poison recorded by another process fails every acquire until `reset`.
#[test]
fn poison_from_another_process_until_reset() {
    let path = temp_path("poison");
    let mutex = SharedMutex::open(&path).unwrap();
    let mut poisoner = Helper::spawn("poison", &path);
    poisoner.expect("poisoned");
    poisoner.child.wait().unwrap();
    assert!(mutex.state().poisoned);
    assert!(matches!(mutex.lock(), Err(Error::NotRecoverable)));
    assert!(matches!(mutex.try_lock(), Err(Error::NotRecoverable)));
    let generation = mutex.state().generation;
    SharedMutex::reset(&path).unwrap();
    assert_eq!(mutex.state().generation, generation + 1);
    assert!(!mutex.lock().unwrap().owner_died());
}

/// A thread that ends holding, in another process that lives on and in this one: the kernel
/// abandons the mutex at thread exit.
#[test]
fn a_thread_that_ends_holding_is_an_owner_death() {
    let path = temp_path("thread-exit");
    let mutex = SharedMutex::open(&path).unwrap();
    let mut helper = Helper::spawn("thread-exit", &path);
    helper.expect("thread-ended");
    let guard = mutex.lock_timeout(PROMPT).expect("abandoned at thread exit");
    assert!(guard.owner_died());
    drop(guard);
    helper.kill();

    let m = mutex.clone();
    std::thread::spawn(move || std::mem::forget(m.lock().unwrap())).join().unwrap();
    assert!(mutex.lock_timeout(PROMPT).unwrap().owner_died());
}

/// Relocking by the holder is refused (the kernel mutex is recursive); other threads wait;
/// `destroy` is refused while held.
#[test]
fn relock_is_deadlock_and_destroy_waits_for_the_holder() {
    let path = temp_path("relock");
    let mutex = SharedMutex::open(&path).unwrap();
    let guard = mutex.lock().unwrap();
    assert!(matches!(mutex.lock(), Err(Error::Deadlock)));
    assert!(matches!(mutex.try_lock(), Err(Error::Deadlock)));
    let other = std::thread::scope(|s| s.spawn(|| mutex.try_lock().map(|g| g.is_some())).join().unwrap());
    assert!(!other.unwrap());
    assert_eq!(SharedMutex::destroy(&path).unwrap_err().code(), "EBUSY");
    drop(guard);
    drop(mutex);
    SharedMutex::destroy(&path).unwrap();
    assert!(!path.exists());
}

/// An anonymous mutex (a temporary file removed at once) works within the process; `state()`
/// and `reset_poison` through a handle.
#[test]
fn anonymous_state_and_reset_poison_through_a_handle() {
    let mutex = SharedMutex::anonymous().unwrap();
    assert!(mutex.path().is_none());
    let mut guard = mutex.lock().unwrap();
    let state = mutex.state();
    assert!(state.locked && !state.abandoned, "{state:?}");
    assert_eq!(state.owner.map(|o| o.pid), Some(std::process::id() as i32));
    guard.poison();
    drop(guard);
    assert!(mutex.state().poisoned && !mutex.state().locked);
    assert!(matches!(mutex.lock(), Err(Error::NotRecoverable)));
    mutex.reset_poison().unwrap();
    assert!(!mutex.lock().unwrap().owner_died());
    assert_eq!(mutex.state().acquisitions, 2);
}

/// Waiting without acquiring (the Node binding's contended lock): the watcher returns when the
/// holder process is killed, and the trylock that follows reports the death.
#[test]
fn a_watcher_returns_when_the_holder_is_killed_and_the_trylock_reports_it() {
    let path = temp_path("watch");
    let mutex = SharedMutex::open(&path).unwrap();
    let mut holder = Helper::spawn("hold", &path);
    holder.expect("locked");
    let watcher = {
        let mutex = mutex.clone();
        std::thread::spawn(move || mutex.wait_released(Some(Instant::now() + PROMPT), &CancelToken::new()))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(!watcher.is_finished(), "the watcher waits while the holder lives");
    holder.kill();
    watcher.join().unwrap().expect("returned when the holder died");
    let held = mutex.try_acquire_raw_after_wait().unwrap().expect("free");
    assert!(held.owner_died(), "the abandonment the watcher met is reported");
    // SAFETY: acquired just above on this thread from this mutex.
    unsafe { mutex.release_raw(held) }.unwrap();
    assert_eq!(mutex.state().contended, 1);
}

/// A holder process that exits (`ExitProcess`) while holding: the next acquirer is told.
#[test]
fn a_holder_that_exits_holding_is_an_owner_death() {
    let path = temp_path("exit");
    let mutex = SharedMutex::open(&path).unwrap();
    let mut holder = Helper::spawn("exit", &path);
    holder.expect("locked");
    let pid = holder.child.id() as i32;
    assert!(holder.child.wait().unwrap().success());
    let guard = mutex.lock_timeout(PROMPT).expect("abandoned at exit");
    assert!(guard.owner_died());
    assert_eq!(guard.dead_owner().map(|d| d.pid), Some(pid));
}

/// The `token=` of a helper's line.
fn token_of(line: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("token="))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no token in {line:?}"))
}

/// Fencing tokens strictly increase across processes, a killed holder, a poison and its reset,
/// and a file destroyed and created again at the same path.
#[test]
fn fencing_tokens_increase_across_processes_deaths_resets_and_recreation() {
    let path = temp_path("fencing");
    let mutex = SharedMutex::open(&path).unwrap();
    let first = mutex.lock().unwrap().fencing_token();
    let mut holder = Helper::spawn("hold", &path);
    let dead = token_of(&holder.expect("locked"));
    assert!(dead > first, "{dead} after {first}");
    holder.kill();
    assert_eq!(mutex.state().fencing_token, dead, "state() reports the last token issued");
    let guard = mutex.lock().unwrap();
    assert!(guard.owner_died());
    let after_death = guard.fencing_token();
    assert!(after_death > dead, "{after_death} after the killed holder's {dead}");
    drop(guard);

    let mut poisoner = Helper::spawn("poison", &path);
    let poisoned = token_of(&poisoner.expect("poisoned"));
    poisoner.child.wait().unwrap();
    assert!(poisoned > after_death);
    SharedMutex::reset(&path).unwrap();
    let after_reset = mutex.lock().unwrap().fencing_token();
    assert!(after_reset > poisoned, "{after_reset} after the reset of {poisoned}");
    drop(mutex);

    SharedMutex::destroy(&path).unwrap();
    let recreated = SharedMutex::open(&path).unwrap();
    let fresh = recreated.lock().unwrap().fencing_token();
    assert!(fresh > after_reset, "the re-created file's {fresh} is above the old file's {after_reset}");
}

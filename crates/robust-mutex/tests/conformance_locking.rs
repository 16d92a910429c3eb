//! Conformance, locking semantics (research §2.4, numbers in the test names): basic use across
//! processes (1), relock by the holder (2), release by a non-owner (3), a thread that ends
//! holding (4), a detached thread that ends holding (7), recovery (12), timeouts (16),
//! cancellation (17), close while held (20), one file opened twice in a process (21), different
//! mapping addresses across processes (22).
//!
//! Map of the whole suite: `conformance_death.rs` (5, 6, 8, 9, 11, 13, 14, 18),
//! `conformance_fork.rs` (10, with 15: a forked child's copy of an owner-died guard cannot mark
//! the parent's mutex consistent; and 16 processes counting under an anonymous mutex),
//! `conformance_files.rs` (23-26 and `destroy`). Not ported: 19 (robust-list limit), 27-28
//! (other toolchains, `unshare -p`; the torture suite covers 28), 29-31 (FUSE/NFS, qemu-user,
//! Node).
//!
//! Not tested here:
//! - 16, second half: "a MONOTONIC deadline survives a wall-clock jump" would need to set the
//!   system clock, which a test on a shared machine must not do. The crate tracks deadlines
//!   with `Instant` (CLOCK_MONOTONIC) and waits in slices, so a jump can stretch one slice only.
//! - 3 at run time: there is no way to call unlock without a guard, and a guard is `!Send`, so
//!   "release from a thread that does not hold it" cannot be written in safe Rust; this is
//!   checked at compile time below. The one run-time route to a foreign release, a guard copied
//!   into a child by `fork()`, is tested in `conformance_fork.rs` (number 10).

mod conformance_support;

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use conformance_support::{
    arg, describe, field, gettid, helper_main, num_field, say, spawn_locker, wait_until_blocked_in_futex,
    with_hang_guard, Helper, Mode, TempDir, ALL_MODES, PROMPT,
};
use robust_mutex::{CancelToken, Error, MutexGuard, OwnedMutexGuard, SharedMutex};

#[test]
#[ignore = "entry point of the helper processes the conformance tests spawn"]
fn helper_entry() {
    helper_main(|role, args| match role {
        "close-leaked" => Some(close_leaked(&args[0])),
        "shifted-locker" => Some(shifted_locker(&args[0])),
        _ => None,
    });
}

fn my_pid() -> i32 {
    std::process::id() as i32
}

/// Scenario 1: Create, lock and unlock with every acquire flavour; a second process opens the same file,
/// locks it (again with every flavour), and the lock excludes this process meanwhile.
#[test]
fn c01_basic_lock_unlock_and_a_second_process() {
    let dir = TempDir::new("c01");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 4096);
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(mutex.path(), Some(path.as_path()));

    for mode in ALL_MODES {
        let guard = mode.acquire(&mutex).unwrap();
        assert!(!guard.owner_died(), "{mode:?}");
        assert!(guard.dead_owner().is_none(), "{mode:?}");
        let state = mutex.state();
        assert!(state.locked && !state.abandoned && !state.poisoned, "{mode:?}: {state:?}");
        assert_eq!(state.holder_tid, Some(gettid()));
        assert_eq!(state.owner.unwrap().pid, my_pid());
        assert_eq!(state.owner.unwrap().tid, gettid());
        guard.release().unwrap();
        let state = mutex.state();
        assert!(!state.locked && state.owner.is_none(), "{mode:?}: {state:?}");
    }

    for mode in ALL_MODES {
        let mut helper = Helper::spawn("locker", &[arg(&path), mode.name().into()]);
        let opened = helper.expect("opened");
        let locked = helper.expect("locked");
        assert_eq!(field(&locked, "died"), "false", "{mode:?}");
        let state = mutex.state();
        assert!(state.locked, "{mode:?}");
        assert_eq!(state.holder_tid, Some(num_field(&opened, "tid") as i32));
        assert_eq!(state.owner.unwrap().pid, helper.pid);
        assert!(mutex.try_lock().unwrap().is_none(), "{mode:?}: the helper's lock must exclude this process");
        helper.send("release");
        helper.expect("released");
        let guard = mutex.try_lock().unwrap().expect("free once the helper released it");
        assert!(!guard.owner_died());
        drop(guard);
        helper.close_stdin();
        helper.expect_success();
    }
    let state = mutex.state();
    assert_eq!(state.acquisitions, 12, "4 here, 4 in helpers, 4 try_locks after them: {state:?}");
    assert_eq!(state.owner_deaths, 0);
    assert_eq!(state.generation, 1);
}

/// Scenario 2: The holding thread asking again gets `Deadlock` (EDEADLK) from every flavour, the lock
/// stays held, and nothing hangs. Also after an owner-died acquisition, and for an anonymous
/// mutex.
#[test]
fn c02_relock_by_the_holding_thread_is_edeadlk() {
    let dir = TempDir::new("c02");
    let path = dir.join("lock");
    with_hang_guard("relock", Duration::from_secs(60), move || {
        let file = SharedMutex::open(&path).unwrap();
        let anonymous = SharedMutex::anonymous().unwrap();
        for mutex in [&file, &anonymous] {
            for first in ALL_MODES {
                let guard = first.acquire(mutex).unwrap();
                assert_relock_refused(mutex, &format!("after {first:?}"));
                drop(guard);
            }
            // The owned guards, and a guard that recovered a dead thread's lock.
            let owned = mutex.try_lock_owned().unwrap().unwrap();
            assert_relock_refused(mutex, "after try_lock_owned");
            drop(owned);
            std::thread::scope(|s| {
                s.spawn(|| std::mem::forget(mutex.lock().unwrap()));
            });
            let recovered = mutex.lock().unwrap();
            assert!(recovered.owner_died());
            assert_relock_refused(mutex, "after an owner-died acquisition");
            drop(recovered);
            assert!(!mutex.lock().unwrap().owner_died());
        }
    });
}

fn assert_relock_refused(mutex: &SharedMutex, context: &str) {
    let before = mutex.state();
    let attempts: [(&str, Result<(), Error>); 8] = [
        ("lock", mutex.lock().map(drop)),
        ("try_lock", mutex.try_lock().map(|g| assert!(g.is_none(), "{context}: try_lock returned a guard"))),
        ("lock_timeout(0)", mutex.lock_timeout(Duration::ZERO).map(drop)),
        ("lock_timeout(200 ms)", mutex.lock_timeout(Duration::from_millis(200)).map(drop)),
        ("lock_until", mutex.lock_until(Instant::now() + Duration::from_secs(30), &CancelToken::new()).map(drop)),
        ("try_lock_owned", mutex.try_lock_owned().map(|g| assert!(g.is_none()))),
        ("lock_until_owned(None)", mutex.lock_until_owned(None, &CancelToken::new()).map(drop)),
        ("lock (again)", mutex.lock().map(drop)),
    ];
    for (what, result) in attempts {
        match result {
            Err(err) => {
                assert!(matches!(err, Error::Deadlock), "{context}: {what} gave {err:?}");
                assert_eq!(err.code(), "EDEADLK");
            }
            Ok(()) => panic!("{context}: {what} succeeded while this thread holds the lock"),
        }
    }
    let after = mutex.state();
    assert!(after.locked, "{context}: a refused relock released the lock");
    assert_eq!(after.holder_tid, Some(gettid()));
    assert_eq!(after.owner, before.owner, "{context}: a refused relock rewrote the owner");
    assert_eq!(after.acquisitions, before.acquisitions, "{context}: a refused relock was counted");
}

/// Compile-time proof that guards are `!Send`: if `T: Send`, the two blanket impls below both
/// apply and the method call is ambiguous, which fails to compile.
trait AmbiguousIfSend<Marker> {
    fn check() {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
struct IsSend;
impl<T: ?Sized + Send> AmbiguousIfSend<IsSend> for T {}
const _: fn() = || {
    <MutexGuard<'static> as AmbiguousIfSend<_>>::check();
    <OwnedMutexGuard as AmbiguousIfSend<_>>::check();
};

/// Scenario 3: Releasing from a thread that does not hold the lock is impossible by construction: a
/// guard cannot move to another thread (`!Send`, checked at compile time above), and there is no
/// unlock without a guard. At run time: another thread sees the lock held and cannot take it,
/// and the holder's own release succeeds.
#[test]
fn c03_only_the_holding_thread_can_release() {
    with_hang_guard("non-owner", Duration::from_secs(30), || {
        let mutex = SharedMutex::anonymous().unwrap();
        let guard = mutex.lock().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(mutex.try_lock().unwrap().is_none());
                let err = mutex.lock_timeout(Duration::from_millis(50)).unwrap_err();
                assert!(matches!(err, Error::Timeout), "{err:?}");
                assert!(mutex.state().locked);
            });
        });
        assert!(mutex.state().locked);
        guard.release().unwrap();
        assert!(!mutex.state().locked);
        std::thread::scope(|s| {
            s.spawn(|| assert!(!mutex.try_lock().unwrap().expect("free").owner_died()));
        });
    });
}

/// Scenario 4: A thread of this process ends while holding the lock: every acquire flavour then gets it
/// with `owner_died`, naming that thread.
#[test]
fn c04_thread_exits_holding_in_this_process() {
    let dir = TempDir::new("c04");
    let path = dir.join("lock");
    with_hang_guard("thread exit", Duration::from_secs(60), move || {
        let mutex = SharedMutex::open(&path).unwrap();
        for (round, mode) in ALL_MODES.into_iter().enumerate() {
            let dead_tid = std::thread::scope(|s| {
                s.spawn(|| {
                    std::mem::forget(mutex.lock().unwrap());
                    gettid()
                })
                .join()
                .unwrap()
            });
            let state = mutex.state();
            assert!(!state.locked && state.abandoned, "{mode:?}: {state:?}");
            let guard = mode.acquire(&mutex).unwrap();
            assert!(guard.owner_died(), "{mode:?}");
            let dead = guard.dead_owner().expect("the dead thread recorded itself");
            assert_eq!((dead.pid, dead.tid), (my_pid(), dead_tid), "{mode:?}");
            assert_eq!(mutex.state().owner_deaths, round as u64 + 1);
            drop(guard);
            let state = mutex.state();
            assert!(!state.locked && !state.abandoned, "{mode:?}: {state:?}");
            assert!(!mutex.lock().unwrap().owner_died(), "{mode:?}: healthy again after the release");
        }
    });
}

/// Scenario 4, across processes: a thread of another process ends holding; that process lives on.
#[test]
fn c04_thread_exits_holding_in_another_process() {
    let dir = TempDir::new("c04p");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let mut helper = Helper::spawn("thread-exit", &[arg(&path)]);
    let line = helper.expect("thread-ended");
    let guard = mutex.lock_timeout(PROMPT).expect("the lock of a thread that ended must be acquirable");
    assert!(guard.owner_died());
    let dead = guard.dead_owner().unwrap();
    assert_eq!((dead.pid, dead.tid), (helper.pid, num_field(&line, "tid") as i32));
    assert!(helper.is_running(), "the helper process itself must still be alive");
    drop(guard);
    helper.close_stdin();
    helper.expect_success();
}

/// Scenario 7 (musl's pthread-robust-detach): a detached thread (its `JoinHandle` dropped) ends
/// holding the lock; a waiter already blocked in `lock()` gets it with `owner_died`.
#[test]
fn c07_detached_thread_exits_holding() {
    with_hang_guard("detached holder", Duration::from_secs(30), || {
        let mutex = SharedMutex::anonymous().unwrap();
        let (locked_tx, locked_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let holder = mutex.clone();
        drop(std::thread::spawn(move || {
            std::mem::forget(holder.lock().unwrap());
            locked_tx.send(gettid()).unwrap();
            let _ = go_rx.recv();
        }));
        let dead_tid = locked_rx.recv().unwrap();
        let (tid_tx, tid_rx) = mpsc::channel();
        let waiter = {
            let mutex = mutex.clone();
            std::thread::spawn(move || {
                tid_tx.send(gettid()).unwrap();
                let guard = mutex.lock().unwrap();
                (guard.owner_died(), guard.dead_owner().map(|d| d.tid))
            })
        };
        wait_until_blocked_in_futex(my_pid(), tid_rx.recv().unwrap());
        drop(go_tx);
        assert_eq!(waiter.join().unwrap(), (true, Some(dead_tid)));
    });
}

/// Scenario 12: Once the guard that recovered a dead owner's lock is released, the mutex is healthy:
/// the next acquisitions, here and in another process, report no owner death.
#[test]
fn c12_recovered_lock_is_healthy_again() {
    let dir = TempDir::new("c12");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let (mut holder, _) = spawn_locker(&path, Mode::Lock);
    holder.expect("locked");
    holder.kill_and_reap();

    let recovered = mutex.lock_timeout(PROMPT).unwrap();
    assert!(recovered.owner_died());
    assert_eq!(recovered.dead_owner().unwrap().pid, holder.pid);
    drop(recovered);

    let state = mutex.state();
    assert!(!state.locked && !state.abandoned && !state.poisoned, "{state:?}");
    assert_eq!(state.owner_deaths, 1);
    for mode in ALL_MODES {
        let guard = mode.acquire(&mutex).unwrap();
        assert!(!guard.owner_died() && guard.dead_owner().is_none(), "{mode:?}");
    }
    let (mut next, _) = spawn_locker(&path, Mode::Lock);
    assert_eq!(field(&next.expect("locked"), "died"), "false");
    next.send("release");
    next.expect("released");
    assert_eq!(mutex.state().owner_deaths, 1);
}

/// Scenario 16: A timed acquire of a lock another process holds fails with `Timeout` (ETIMEDOUT), never
/// before its time; zero and past deadlines fail without waiting for a slice to pass; the holder
/// is unaffected.
#[test]
fn c16_timed_acquire_of_a_lock_held_by_another_process() {
    let dir = TempDir::new("c16");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let (mut holder, _) = spawn_locker(&path, Mode::Lock);
    holder.expect("locked");

    let guard_slack = Duration::from_secs(5);
    for timeout in [Duration::ZERO, Duration::from_millis(30), Duration::from_millis(250), Duration::from_millis(1300)]
    {
        let start = Instant::now();
        let err = mutex.lock_timeout(timeout).unwrap_err();
        let elapsed = start.elapsed();
        assert!(matches!(err, Error::Timeout), "{timeout:?}: {err:?}");
        assert_eq!(err.code(), "ETIMEDOUT");
        assert!(elapsed >= timeout, "lock_timeout({timeout:?}) gave up after {elapsed:?}");
        assert!(elapsed < timeout + guard_slack, "lock_timeout({timeout:?}) took {elapsed:?} (hang guard)");
    }
    let cancel = CancelToken::new();
    let past = Instant::now() - Duration::from_millis(10);
    assert!(matches!(mutex.lock_until(past, &cancel), Err(Error::Timeout)));
    let wait = Duration::from_millis(400);
    let start = Instant::now();
    let err = mutex.lock_until(start + wait, &cancel).unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert!(start.elapsed() >= wait && start.elapsed() < wait + guard_slack, "{:?}", start.elapsed());
    let start = Instant::now();
    assert!(matches!(mutex.lock_until_owned(Some(start + wait), &cancel), Err(Error::Timeout)));
    assert!(start.elapsed() >= wait);

    let state = mutex.state();
    assert!(state.locked);
    assert_eq!(state.owner.unwrap().pid, holder.pid, "timeouts must not disturb the holder");
    holder.send("release");
    holder.expect("released");
    let guard = mutex.lock_timeout(PROMPT).unwrap();
    assert!(!guard.owner_died());
}

/// Scenario 17 (Rust flavour of the AbortSignal case). A wait cancelled through its token fails with
/// `Cancelled` (ECANCELED) and leaves nothing held; the lock then works normally.
#[test]
fn c17_cancelled_wait_leaves_nothing_held() {
    let dir = TempDir::new("c17");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let (mut holder, _) = spawn_locker(&path, Mode::Lock);
    holder.expect("locked");
    let cancel = CancelToken::new();
    let (tid_tx, tid_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let waiter = {
        let (mutex, cancel) = (mutex.clone(), cancel.clone());
        std::thread::spawn(move || {
            tid_tx.send(gettid()).unwrap();
            let result = mutex.lock_until(Instant::now() + Duration::from_secs(120), &cancel).map(drop);
            done_tx.send(result).unwrap();
        })
    };
    wait_until_blocked_in_futex(my_pid(), tid_rx.recv().unwrap());
    cancel.cancel();
    let result = done_rx.recv_timeout(PROMPT).expect("a cancelled wait must end (hang guard)");
    waiter.join().unwrap();
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert_eq!(err.code(), "ECANCELED");
    assert_eq!(mutex.state().owner.unwrap().pid, holder.pid);
    holder.send("release");
    holder.expect("released");
    assert!(!mutex.state().locked, "the cancelled waiter must not have taken the lock");
    assert!(!mutex.lock_timeout(PROMPT).unwrap().owner_died());
}

/// Helper of 20: takes the lock through one of two handles, leaks the guard, closes the other
/// handle (fine: not the last), then the last one (`Busy`), and exits on command while holding.
fn close_leaked(path: &str) -> i32 {
    let first = SharedMutex::open(path).unwrap();
    let second = first.clone();
    std::mem::forget(first.lock().unwrap());
    let not_last = match second.close() {
        Ok(()) => "ok".to_string(),
        Err(e) => e.code().to_string(),
    };
    let last = match first.close() {
        Ok(()) => "ok".to_string(),
        Err(e) => e.code().to_string(),
    };
    say(format!("closed not_last={not_last} last={last}"));
    match conformance_support::read_command().as_deref() {
        Some("exit") | None => std::process::exit(0),
        Some(other) => panic!("unknown command {other}"),
    }
}

/// Scenario 20: Closing the last handle while a leaked guard holds the lock is refused (`Busy`) and keeps
/// the mapping, so when the holder then ends (here: the process exits), the next locker is told
/// its owner died instead of finding the lock held forever.
#[test]
fn c20_close_while_holding_is_refused_and_death_is_still_reported() {
    let dir = TempDir::new("c20");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let mut helper = Helper::spawn("close-leaked", &[arg(&path)]);
    let line = helper.expect("closed");
    assert_eq!(field(&line, "not_last"), "ok");
    assert_eq!(field(&line, "last"), "EBUSY");
    assert!(mutex.state().locked);
    helper.send("exit");
    helper.expect_success();
    let guard = mutex.lock_timeout(PROMPT).expect("the lock of a process that exited must be acquirable");
    assert!(guard.owner_died());
    assert_eq!(guard.dead_owner().unwrap().pid, helper.pid);
}

/// Scenario 20, in this process: a thread holds through a leaked guard, closes its only handle (`Busy`),
/// and ends; a new handle to the file then gets the lock with `owner_died`.
#[test]
fn c20_close_while_holding_in_this_process() {
    let dir = TempDir::new("c20t");
    let path = dir.join("lock");
    let thread_path = path.clone();
    let (code, dead_tid) = with_hang_guard("close while held", Duration::from_secs(30), move || {
        std::thread::spawn(move || {
            let only = SharedMutex::open(&thread_path).unwrap();
            std::mem::forget(only.lock().unwrap());
            (only.close().unwrap_err().code(), gettid())
        })
        .join()
        .unwrap()
    });
    assert_eq!(code, "EBUSY");
    let mutex = SharedMutex::open(&path).unwrap();
    let guard = mutex.lock_timeout(PROMPT).expect("the ended thread's lock must be acquirable");
    assert!(guard.owner_died());
    assert_eq!(guard.dead_owner().unwrap().tid, dead_tid);
    drop(guard);
    mutex.close().unwrap();
}

/// Scenario 21: Two handles to one file in one process share one lock (one mapping): a lock through the
/// first shows through the second, the holding thread gets `Deadlock` through the second, and
/// another thread waiting through the second gets the lock once the first is released.
#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: compares the address of the pthread mutex in the mappings (the file-lock backend shares one Inner per file the same way; see c02/c20)"
)]
fn c21_same_file_opened_twice_in_one_process() {
    let dir = TempDir::new("c21");
    let path = dir.join("lock");
    with_hang_guard("two handles", Duration::from_secs(60), move || {
        let one = SharedMutex::open(&path).unwrap();
        let two = SharedMutex::open(&path).unwrap();
        let three = SharedMutex::from_fd(one.as_fd().try_clone_to_owned().unwrap()).unwrap();
        assert_eq!(conformance_support::dev_ino(&one), conformance_support::dev_ino(&two));
        assert_eq!(
            conformance_support::raw_mutex_ptr(&one),
            conformance_support::raw_mutex_ptr(&two),
            "handles to one file must share one mapping"
        );
        assert_eq!(conformance_support::raw_mutex_ptr(&one), conformance_support::raw_mutex_ptr(&three));

        let guard = one.lock().unwrap();
        for other in [&two, &three] {
            let state = other.state();
            assert!(state.locked);
            assert_eq!(state.holder_tid, Some(gettid()));
            assert!(matches!(other.lock(), Err(Error::Deadlock)));
            assert!(matches!(other.try_lock(), Err(Error::Deadlock)));
            assert!(matches!(other.lock_timeout(Duration::from_millis(100)), Err(Error::Deadlock)));
        }
        let (tid_tx, tid_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(two.try_lock().unwrap().is_none());
                tid_tx.send(gettid()).unwrap();
                let got = two.lock().unwrap();
                done_tx.send((got.owner_died(), two.state().holder_tid == Some(gettid()))).unwrap();
            });
            wait_until_blocked_in_futex(my_pid(), tid_rx.recv().unwrap());
            assert!(done_rx.try_recv().is_err(), "the second handle's waiter got a held lock");
            drop(guard);
            let (died, holds) = done_rx.recv_timeout(PROMPT).expect("the waiter must get the released lock");
            assert!(!died && holds);
        });
        assert!(!three.state().locked);
    });
}

/// Helper of 22: moves its address space layout by mapping some memory first, then opens the
/// mutex, reports where it is mapped, locks it and waits to be killed.
fn shifted_locker(path: &str) -> i32 {
    let mut keep = Vec::new();
    for size in [3usize << 20, 5 << 20, 1 << 16] {
        keep.push(vec![1u8; size]);
    }
    let mutex = SharedMutex::open(path).unwrap();
    let addr = conformance_support::raw_mutex_ptr(&mutex) as usize;
    let guard = mutex.lock().unwrap();
    say(format!("locked addr={addr} {}", describe(&guard)));
    while conformance_support::read_command().is_some() {}
    drop(keep);
    0
}

/// Scenario 22: Processes map the file at different addresses (the robust-list pointers in the mutex are
/// only meaningful to the current owner); owner death is still reported across them.
#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: the robust-list pointers inside the pthread mutex; the file-lock backend's file has no pointers"
)]
fn c22_processes_map_the_mutex_at_different_addresses() {
    let dir = TempDir::new("c22");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let here = conformance_support::raw_mutex_ptr(&mutex) as usize;
    let mut helper = Helper::spawn("shifted-locker", &[arg(&path)]);
    let line = helper.expect("locked");
    let there = num_field(&line, "addr") as usize;
    assert_ne!(here, there, "the helper mapped the mutex at this process's address; the test proves nothing");
    helper.kill_and_reap();
    let guard = mutex.lock_timeout(PROMPT).unwrap();
    assert!(guard.owner_died());
    assert_eq!(guard.dead_owner().unwrap().pid, helper.pid);
    drop(guard);
    assert!(!mutex.state().abandoned);
}

/// `state().owner.since` of a fresh holder is never earlier than its acquisition: a waiter's (or
/// `state()`'s) stamp of the previous holder's time that lands after that holder released must
/// not be inherited. Two threads stamp continuously while a third locks and releases.
#[test]
fn owner_since_is_never_older_than_the_acquisition() {
    let mutex = SharedMutex::anonymous().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // The coarse clock used for stamps lags the precise one by up to a scheduler tick.
    let slack = Duration::from_millis(15);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = mutex.state();
                }
            });
        }
        let mut worst = Duration::ZERO;
        let mut stamped = 0;
        for _ in 0..150 {
            std::thread::sleep(Duration::from_millis(25));
            let before = std::time::SystemTime::now();
            let guard = mutex.lock().unwrap();
            if let Some(since) = mutex.state().owner.and_then(|o| o.since) {
                worst = worst.max(before.duration_since(since).unwrap_or_default());
                assert!(since <= std::time::SystemTime::now(), "held since a time to come");
                stamped += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
            drop(guard);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(worst <= slack, "a holder was reported held since {worst:?} before it locked");
        assert!(stamped > 0, "state() stamps the holding time of a lock it sees held");
    });
}

/// `Debug` of a handle names its path and its file's (dev, ino), so logs tell handles apart.
#[test]
fn debug_output_names_the_path_and_the_file() {
    let dir = TempDir::new("debug");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let st = nix::sys::stat::fstat(mutex.as_fd()).unwrap();
    let text = format!("{mutex:?}");
    assert!(text.contains(&format!("dev_ino: ({}, {})", st.st_dev, st.st_ino)), "{text}");
    assert!(text.contains("lock"), "{text}");
}

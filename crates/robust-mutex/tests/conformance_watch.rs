//! Waiting without acquiring (`wait_released`), the primitive under the Node binding's
//! contended `lock()`: the waiting thread only watches, the thread that wants the lock takes it
//! with `try_acquire_raw_after_wait`. Real helper processes and real SIGKILL; C-library sleepers
//! (`pthread_mutex_lock` with no time limit) must never be stranded by a watcher.
//!
//! On the file-lock backend the watcher polls the lock (there is no lock word); the tests with
//! C-library sleepers on the pthread mutex are ignored there.

mod conformance_support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use conformance_support::{gettid, helper_main, spawn_locker, wait_until_blocked_in_futex, Mode, TempDir, PROMPT};
use robust_mutex::{CancelToken, Error, SharedMutex};

#[test]
#[ignore = "entry point of the helper processes the conformance tests spawn"]
fn helper_entry() {
    helper_main(|_, _| None);
}

fn my_pid() -> i32 {
    std::process::id() as i32
}

/// Starts a thread that watches `mutex`; returns its tid and the channel of its result.
fn spawn_watcher(mutex: &SharedMutex, deadline: Option<Instant>) -> (i32, mpsc::Receiver<Result<(), Error>>) {
    let mutex = mutex.clone();
    let (tid_tx, tid_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        tid_tx.send(gettid()).unwrap();
        let _ = tx.send(mutex.wait_released(deadline, &CancelToken::new()));
    });
    (tid_rx.recv().unwrap(), rx)
}

/// Starts a thread that locks with the C library alone (no slices, no time limit) and unlocks
/// at once; returns its tid and a channel that says when it got the lock.
fn spawn_c_sleeper(mutex: &SharedMutex) -> (i32, mpsc::Receiver<i32>) {
    let ptr = conformance_support::raw_mutex_ptr(mutex) as usize;
    let keep = mutex.clone();
    let (tid_tx, tid_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _keep = keep;
        tid_tx.send(gettid()).unwrap();
        let ptr = ptr as *mut libc::pthread_mutex_t;
        // SAFETY: `ptr` is the live mutex of `_keep`'s mapping, which this thread keeps alive.
        let rc = unsafe { libc::pthread_mutex_lock(ptr) };
        // SAFETY: as above; unlocks what this thread just locked.
        unsafe { libc::pthread_mutex_unlock(ptr) };
        let _ = tx.send(rc);
    });
    (tid_rx.recv().unwrap(), rx)
}

#[test]
fn watch_returns_when_a_holder_in_another_process_releases() {
    let dir = TempDir::new("watch-release");
    let path = dir.join("m");
    let mutex = SharedMutex::open(&path).unwrap();
    let (mut holder, _) = spawn_locker(&path, Mode::Lock);
    holder.expect("locked");
    let (tid, watched) = spawn_watcher(&mutex, None);
    wait_until_blocked_in_futex(my_pid(), tid);
    assert!(watched.recv_timeout(Duration::from_millis(250)).is_err(), "returned while held");
    assert!(mutex.state().locked, "a watcher must not take the lock");
    holder.send("release");
    holder.expect("released");
    watched.recv_timeout(PROMPT).expect("watcher never returned").unwrap();
    let held = mutex.try_acquire_raw_after_wait().unwrap().expect("free after the watch");
    assert!(!held.owner_died());
    // SAFETY: acquired just above on this thread.
    unsafe { mutex.release_raw(held) }.unwrap();
    holder.kill_and_reap();
}

#[test]
fn watch_returns_when_the_holder_is_killed_and_the_trylock_reports_its_death() {
    let dir = TempDir::new("watch-kill");
    let path = dir.join("m");
    let mutex = SharedMutex::open(&path).unwrap();
    let (mut holder, _) = spawn_locker(&path, Mode::Lock);
    holder.expect("locked");
    let (tid, watched) = spawn_watcher(&mutex, None);
    wait_until_blocked_in_futex(my_pid(), tid);
    let holder_pid = holder.pid;
    holder.sigkill();
    holder.wait();
    watched.recv_timeout(PROMPT).expect("watcher never returned").unwrap();
    assert!(mutex.state().abandoned, "the watch must leave the owner-died mark for the acquirer");
    let held = mutex.try_acquire_raw_after_wait().unwrap().expect("free after the death");
    assert!(held.owner_died());
    assert_eq!(held.dead_owner().map(|d| d.pid), Some(holder_pid));
    // SAFETY: acquired just above on this thread.
    unsafe { mutex.release_raw(held) }.unwrap();
    assert!(!mutex.state().abandoned);
}

#[test]
fn watch_honours_its_deadline_and_poison() {
    let mutex = SharedMutex::anonymous().unwrap();
    let held = mutex.lock().unwrap();
    let started = Instant::now();
    let (_, watched) = spawn_watcher(&mutex, Some(Instant::now() + Duration::from_millis(150)));
    assert!(matches!(watched.recv_timeout(PROMPT).unwrap(), Err(Error::Timeout)));
    assert!(started.elapsed() >= Duration::from_millis(150));
    let (tid, watched) = spawn_watcher(&mutex, None);
    wait_until_blocked_in_futex(my_pid(), tid);
    let mut held = held;
    held.poison();
    drop(held);
    // Released and poisoned at once: either answer is a prompt return; the acquire then refuses.
    let _ = watched.recv_timeout(PROMPT).expect("watcher never returned");
    assert!(matches!(mutex.try_acquire_raw_after_wait(), Err(Error::NotRecoverable)));
}

/// The unlock woke the watcher (FIFO among equal sleepers), whose caller then never acquires
/// (it gave up, or its process exited): unless the watch itself passed the wake on, the
/// C-library sleeper would sleep forever on a free lock.
#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: C-library sleepers in pthread_mutex_lock on the pthread mutex; the file-lock backend has none, and its waiters poll (no wake to pass on)"
)]
fn a_watcher_whose_caller_never_acquires_leaves_no_c_library_sleeper_stranded() {
    let mutex = SharedMutex::anonymous().unwrap();
    let held = mutex.lock().unwrap();
    let (watcher_tid, watched) = spawn_watcher(&mutex, None);
    wait_until_blocked_in_futex(my_pid(), watcher_tid);
    let (sleeper_tid, slept) = spawn_c_sleeper(&mutex);
    wait_until_blocked_in_futex(my_pid(), sleeper_tid);
    drop(held);
    watched.recv_timeout(PROMPT).expect("watcher never returned").unwrap();
    // The caller does not acquire after all (its request was aborted, its process exited).
    assert_eq!(slept.recv_timeout(PROMPT).expect("the C sleeper was stranded"), 0);
}

/// The watcher's thread acquires with a trylock (which does not set the waiters flag): its
/// unlock must still wake the C-library sleeper whose flag the previous unlock consumed.
#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: C-library sleepers in pthread_mutex_lock on the pthread mutex; the file-lock backend has none, and its waiters poll (no wake to pass on)"
)]
fn an_acquire_after_a_watch_keeps_other_sleepers_wakeable() {
    let mutex = SharedMutex::anonymous().unwrap();
    let held = mutex.lock().unwrap();
    let (watcher_tid, watched) = spawn_watcher(&mutex, None);
    wait_until_blocked_in_futex(my_pid(), watcher_tid);
    let (sleeper_tid, slept) = spawn_c_sleeper(&mutex);
    wait_until_blocked_in_futex(my_pid(), sleeper_tid);
    drop(held);
    watched.recv_timeout(PROMPT).expect("watcher never returned").unwrap();
    let Some(mine) = mutex.try_acquire_raw_after_wait().unwrap() else {
        // The sleeper was woken instead and holds it now: nothing stranded either.
        assert_eq!(slept.recv_timeout(PROMPT).unwrap(), 0);
        return;
    };
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY: acquired just above on this thread.
    unsafe { mutex.release_raw(mine) }.unwrap();
    assert_eq!(slept.recv_timeout(PROMPT).expect("the C sleeper was stranded"), 0);
}

#[test]
fn an_unused_owner_died_acquisition_handed_back_is_reported_to_the_next_acquirer() {
    let dir = TempDir::new("watch-hand-back");
    let path = dir.join("m");
    let mutex = SharedMutex::open(&path).unwrap();
    let (mut holder, _) = spawn_locker(&path, Mode::Lock);
    holder.expect("locked");
    let holder_pid = holder.pid;
    holder.sigkill();
    holder.wait();
    let held = mutex.try_acquire_raw().unwrap().expect("free after the death");
    assert!(held.owner_died());
    // SAFETY: acquired just above on this thread.
    unsafe { mutex.hand_back_raw(held) }.unwrap();
    let state = mutex.state();
    assert!(!state.locked && state.abandoned);
    let next = std::thread::scope(|s| {
        s.spawn(|| {
            let guard = mutex.lock().unwrap();
            (guard.owner_died(), guard.dead_owner().map(|d| d.pid))
        })
        .join()
        .unwrap()
    });
    assert_eq!(next, (true, Some(holder_pid)));
    assert!(!mutex.state().abandoned, "reported once, then healthy");
    assert_eq!(mutex.state().owner_deaths, 1, "one death, counted once");
}

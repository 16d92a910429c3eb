//! Conformance: recovery and administration (issue 7, defects 2 and 3).
//!
//! - A pthread user outside this library (C, the interop the README supports) that gets
//!   `EOWNERDEAD` and unlocks without `pthread_mutex_consistent` leaves the pthread mutex
//!   ENOTRECOVERABLE. Every acquire must then report [`Error::NotRecoverable`] (never a deadlock,
//!   never a timeout), and `reset` must bring the mutex back by re-initialising it while nobody
//!   uses it. No administrative call may wait without a deadline.
//! - `reset` clears poison only: a mutex whose holder died stays abandoned, and the next
//!   acquirer is told so.

mod conformance_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use conformance_support::*;
use robust_mutex::{Error, SharedMutex};

#[test]
#[ignore = "entry point of the helper processes, not a test"]
fn helper_entry() {
    helper_main(|_, _| None);
}

struct RawPtr(*mut libc::pthread_mutex_t);
// SAFETY: the pointer is only used while the mapping it points into is alive (the test keeps
// its handle), and pthread mutex calls are thread-safe.
unsafe impl Send for RawPtr {}
// SAFETY: as above.
unsafe impl Sync for RawPtr {}

/// Does what a C user of the mutex does wrong: a thread locks it and exits (owner death), then
/// another thread locks it (`EOWNERDEAD`) and unlocks without `pthread_mutex_consistent`. That
/// thread then tries the library's `try_lock` twice and a timed lock, and reports the codes.
fn make_not_recoverable(mutex: &SharedMutex) -> Vec<String> {
    let ptr = RawPtr(conformance_support::raw_mutex_ptr(mutex));
    std::thread::scope(|s| {
        let p = &ptr;
        s.spawn(move || {
            // SAFETY: a live, initialised robust mutex; the thread exits holding it on purpose.
            assert_eq!(unsafe { libc::pthread_mutex_lock(p.0) }, 0);
        })
        .join()
        .unwrap();
        s.spawn(move || {
            // SAFETY: as above.
            assert_eq!(unsafe { libc::pthread_mutex_lock(p.0) }, libc::EOWNERDEAD);
            // SAFETY: this thread holds it; unlocking without consistent is the C user's choice.
            assert_eq!(unsafe { libc::pthread_mutex_unlock(p.0) }, 0);
            let first = mutex.try_lock().map(|g| g.is_some());
            let second = mutex.try_lock().map(|g| g.is_some());
            let timed = mutex.lock_timeout(Duration::from_millis(300)).map(drop);
            [code(first), code(second), code(timed)].into()
        })
        .join()
        .unwrap()
    })
}

fn code<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => e.code().to_string(),
    }
}

/// `reset(path)` under a hang guard: it must return, whatever it answers.
fn reset_guarded(path: &Path) -> Result<(), Error> {
    let path = path.to_path_buf();
    with_hang_guard("reset", Duration::from_secs(60), move || SharedMutex::reset(&path))
}

#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: a pthread-level unrecoverable mutex (a C user's unlock after EOWNERDEAD without pthread_mutex_consistent); the file-lock backend has no pthread mutex"
)]
fn c32_pthread_level_unrecoverable_mutex_fails_every_acquire() {
    let dir = TempDir::new("notrecoverable");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("create");
    let token_before = mutex.lock().expect("lock").fencing_token();
    let codes = make_not_recoverable(&mutex);
    assert_eq!(codes, ["ENOTRECOVERABLE"; 3], "try_lock, try_lock again, lock_timeout in the C user's thread");
    // That thread has exited: nothing may be left locked by it.
    let state = mutex.state();
    assert!(!state.locked, "nobody holds an unrecoverable mutex: {state:?}");
    assert_eq!(code(mutex.try_lock().map(|g| g.is_some())), "ENOTRECOVERABLE");
    let started = Instant::now();
    assert_eq!(code(mutex.lock_timeout(Duration::from_secs(2)).map(drop)), "ENOTRECOVERABLE");
    assert!(started.elapsed() < Duration::from_secs(1), "reported at once, not after the timeout");
    for mode in ALL_MODES {
        let (mut other, _) = spawn_locker(&path, mode);
        other.expect_within("failed code=ENOTRECOVERABLE", PROMPT);
    }
    // While a handle is open, reset cannot re-initialise: it answers within its deadline.
    let started = Instant::now();
    let err = SharedMutex::reset_timeout(&path, Duration::from_millis(500))
        .expect_err("a mapped, unrecoverable mutex cannot be reset");
    assert!(started.elapsed() < Duration::from_secs(5), "reset kept to its deadline");
    assert!(matches!(err, Error::NotRecoverable | Error::Busy { .. }), "{err:?}");
    drop(mutex);
    let generation_before = {
        let bytes = std::fs::read(&path).unwrap();
        u64::from_ne_bytes(bytes[72..80].try_into().unwrap())
    };
    reset_guarded(&path).expect("reset re-initialises an unrecoverable mutex nobody uses");
    let mutex = SharedMutex::open(&path).expect("open");
    let guard = mutex.lock_timeout(PROMPT).expect("usable again after reset");
    assert!(!guard.owner_died(), "the C user declared it unrecoverable; reset is the repair");
    assert!(guard.fencing_token() > token_before, "the re-initialisation kept the tokens going up");
    drop(guard);
    assert_eq!(mutex.state().generation, generation_before + 1);
    drop(mutex);
    destroy_unused(&path);
}

#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: a pthread-level unrecoverable mutex; the file-lock backend has no pthread mutex"
)]
fn c32_destroy_retires_a_pthread_level_unrecoverable_mutex() {
    let dir = TempDir::new("notrecoverable-destroy");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("create");
    make_not_recoverable(&mutex);
    drop(mutex);
    destroy_unused(&path);
    assert!(!path.exists());
}

/// A helper process locks `path` and exits holding it; returns its pid.
fn die_holding(path: &Path) -> i32 {
    let (mut holder, _) = spawn_locker(path, Mode::Lock);
    holder.expect("locked");
    holder.send("exit");
    holder.expect_success();
    holder.pid
}

fn assert_next_lock_reports(path: &PathBuf, dead_pid: i32) {
    let mutex = SharedMutex::open(path).expect("open");
    let guard = mutex.lock_timeout(PROMPT).expect("lock");
    assert!(guard.owner_died(), "reset must not swallow an owner death");
    assert_eq!(guard.dead_owner().map(|o| o.pid), Some(dead_pid));
    drop(guard);
    assert_eq!(mutex.state().owner_deaths, 1, "the death is counted once, by the acquirer it was reported to");
    let again = mutex.lock().expect("lock");
    assert!(!again.owner_died(), "reported once");
}

#[test]
fn c33_reset_keeps_an_abandoned_mutex_abandoned_while_in_use() {
    let dir = TempDir::new("reset-abandoned-in-use");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("create");
    let dead = die_holding(&path);
    let generation = mutex.state().generation;
    reset_guarded(&path).expect("reset");
    assert_eq!(mutex.state().generation, generation + 1);
    assert!(mutex.state().abandoned, "still abandoned after reset");
    assert_next_lock_reports(&path, dead);
}

#[test]
fn c33_reset_keeps_an_abandoned_mutex_abandoned_when_unused() {
    let dir = TempDir::new("reset-abandoned-unused");
    let path = dir.join("lock");
    drop(SharedMutex::open(&path).expect("create"));
    let dead = die_holding(&path);
    reset_guarded(&path).expect("reset");
    assert_next_lock_reports(&path, dead);
}

#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: the poisoner dies by a pthread-level unlock through the raw mutex; on the file-lock backend a poisoned mutex refuses before recording a holder (c13/c14 cover poison and reset)"
)]
fn c33_reset_of_a_poisoned_mutex_whose_poisoner_died_reports_the_death() {
    let dir = TempDir::new("reset-poisoned-abandoned");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("create");
    let mut guard = mutex.lock().unwrap();
    guard.poison();
    drop(guard);
    // Poisoned, then a raw user (who ignores our header) dies holding it.
    let ptr = RawPtr(conformance_support::raw_mutex_ptr(&mutex));
    std::thread::scope(|s| {
        let p = &ptr;
        // SAFETY: a live robust mutex; the thread exits holding it on purpose.
        s.spawn(move || assert_eq!(unsafe { libc::pthread_mutex_lock(p.0) }, 0)).join().unwrap();
    });
    assert_eq!(code(mutex.lock().map(drop)), "ENOTRECOVERABLE");
    reset_guarded(&path).expect("reset");
    let guard = mutex.lock().expect("poison cleared");
    assert!(guard.owner_died(), "the death is still reported after reset");
}

#[test]
fn c34_no_administrative_call_waits_past_its_deadline() {
    let dir = TempDir::new("admin-deadline");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("create");
    let (mut holder, _) = spawn_locker(&path, Mode::Lock);
    holder.expect("locked");
    let started = Instant::now();
    let err = SharedMutex::reset_timeout(&path, Duration::from_millis(300)).expect_err("held by a live process");
    assert_eq!(err.code(), "ETIMEDOUT");
    let err = mutex.reset_poison_timeout(Duration::from_millis(300)).expect_err("held by a live process");
    assert_eq!(err.code(), "ETIMEDOUT");
    assert!(started.elapsed() < Duration::from_secs(5), "both kept to their deadlines");
    holder.send("release");
    holder.expect_within("released", PROMPT);
    mutex.reset_poison_timeout(PROMPT).expect("free: reset at once");
}

/// `Duration::MAX` means "no limit" for the administrative waits too (no overflow, no
/// immediate timeout): reset waits for a holder that releases.
#[test]
fn c34_reset_with_an_unbounded_timeout_waits_for_the_holder() {
    let dir = TempDir::new("admin-unbounded");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("create");
    let (mut holder, _) = spawn_locker(&path, Mode::Lock);
    holder.expect("locked");
    let generation = mutex.state().generation;
    std::thread::scope(|s| {
        let reset = s.spawn(|| SharedMutex::reset_timeout(&path, Duration::MAX));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!reset.is_finished(), "reset waits for the holder");
        holder.send("release");
        holder.expect_within("released", PROMPT);
        reset.join().unwrap().expect("reset after the release");
    });
    assert_eq!(mutex.state().generation, generation + 1);
}

/// A pthread-level unrecoverable mutex still open elsewhere: reset waits (within its deadline)
/// for the other users to close it, then re-initialises it.
#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: a pthread-level unrecoverable mutex; the file-lock backend has no pthread mutex"
)]
fn c32_reset_waits_for_the_last_user_of_an_unrecoverable_mutex() {
    let dir = TempDir::new("notrecoverable-wait");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("create");
    make_not_recoverable(&mutex);
    drop(mutex);
    let (mut user, _) = spawn_locker(&path, Mode::Lock);
    user.expect_within("failed code=ENOTRECOVERABLE", PROMPT);
    std::thread::scope(|s| {
        let reset = s.spawn(|| SharedMutex::reset_timeout(&path, Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!reset.is_finished(), "reset waits while another process has it open");
        user.close_stdin();
        user.expect_success();
        reset.join().unwrap().expect("reset once the last user is gone");
    });
    let mutex = SharedMutex::open(&path).expect("open");
    drop(mutex.lock_timeout(PROMPT).expect("usable again"));
}

/// The administrative wait goes through POISONED (it is there to clear it): a reset of a
/// poisoned mutex that a raw pthread user holds waits for the release, then clears the poison.
#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: the raw pthread user that holds the poisoned mutex; c14 covers reset on the file-lock backend"
)]
fn c34_reset_of_a_poisoned_mutex_waits_through_the_poison() {
    let mutex = SharedMutex::anonymous().expect("create");
    let mut guard = mutex.lock().unwrap();
    guard.poison();
    drop(guard);
    let ptr = RawPtr(conformance_support::raw_mutex_ptr(&mutex));
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let p = &ptr;
        s.spawn(move || {
            // SAFETY: a live robust mutex; released below on this same thread.
            assert_eq!(unsafe { libc::pthread_mutex_lock(p.0) }, 0);
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(400));
            // SAFETY: locked above on this thread.
            assert_eq!(unsafe { libc::pthread_mutex_unlock(p.0) }, 0);
        });
        locked_rx.recv().unwrap();
        mutex.reset_poison_timeout(Duration::from_secs(30)).expect("reset waits for the raw holder");
    });
    assert!(!mutex.state().poisoned);
    drop(mutex.lock().expect("usable after the reset"));
}

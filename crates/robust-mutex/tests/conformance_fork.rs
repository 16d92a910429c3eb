//! Conformance, `fork()` (research §2.4 number 10, and the Lamport-bakery use case): the test
//! process forks directly, so these tests live in their own binary and take a lock that
//! serialises their forks.
//!
//! The test harness runs tests on several threads; a forked child has only the forking thread
//! and must not touch anything another thread may have held at the fork. So a child here does
//! nothing but lock, try, release through the crate (no allocation on those paths), atomic loads
//! and stores, a futex wait, and `_exit`: it reports through its exit status, never by printing,
//! and never returns into the harness.

mod conformance_support;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use robust_mutex::{Error, MutexGuard, SharedMutex};

/// Serialises the forks of this binary's tests.
static FORKS: Mutex<()> = Mutex::new(());

const HANG_GUARD: Duration = Duration::from_secs(60);

fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Waits for a forked child and returns its exit code; kills it and fails after the hang guard.
fn exit_code(child: Pid) -> i32 {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)).expect("waitpid") {
            WaitStatus::Exited(_, code) => return code,
            WaitStatus::Signaled(_, signal, _) => panic!("child {child} was killed by {signal:?}"),
            _ => {}
        }
        if Instant::now() > deadline {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            panic!("child {child} did not finish within {HANG_GUARD:?} (hang guard)");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Ends a forked child without running anything of the parent's (destructors, atexit, the
/// harness).
fn exit_child(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions; it is the way out of a forked child.
    unsafe { libc::_exit(code) }
}

/// What a child of a holder checks, as an exit code: 0, or the number of the failed check.
fn child_of_holder(mutex: &SharedMutex, inherited: MutexGuard<'_>) -> i32 {
    // The child does not own the parent's lock: try fails (no error), a timed wait times out.
    match mutex.try_lock() {
        Ok(None) => {}
        Ok(Some(_)) => return 2,
        Err(_) => return 3,
    }
    match mutex.lock_timeout(Duration::from_millis(150)) {
        Err(Error::Timeout) => {}
        Ok(_) => return 4,
        Err(_) => return 5,
    }
    // Its copy of the parent's guard cannot release the parent's lock (EPERM), and must leave
    // the parent's lock and records alone.
    match inherited.release() {
        Err(Error::NotOwner) => {}
        Ok(()) => return 6,
        Err(_) => return 7,
    }
    match mutex.try_lock() {
        Ok(None) => 0,
        Ok(Some(_)) => 8,
        Err(_) => 9,
    }
}

/// Scenario 10 (tst-robust-fork): the parent holds and forks. The child does not hold the lock
/// (try_lock gives `None`, a timed wait `Timeout`) and releasing its copy of the parent's guard
/// fails with `NotOwner` (EPERM) without disturbing the parent, which still holds the lock with
/// its owner records and releases it normally. A child that dies holding is reported to the
/// parent as an owner death, with the child's pid. The same with a guard that had recovered an
/// owner death when the parent forked, which is also scenario 15: the child's copy of that guard
/// must not mark the parent's mutex consistent (glibc would let it). For a file and for an
/// anonymous mutex.
#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "file-lock backend: a fork() child shares its parent's open file description, hence its file lock; it cannot lock through inherited handles (Error::Unsupported) and must open the mutex again"
)]
fn c10_fork_while_holding() {
    let _serial = FORKS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = conformance_support::TempDir::new("c10");
    let path = dir.join("lock");
    let file = SharedMutex::open(&path).unwrap();
    let anonymous = SharedMutex::anonymous().unwrap();
    for (kind, mutex) in [("file", &file), ("anonymous", &anonymous)] {
        // A healthy lock held across fork.
        let guard = mutex.lock().unwrap();
        // SAFETY: the child only runs `child_of_holder` (crate lock calls, no allocation) and
        // `_exit`; see the module comment.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => exit_child(child_of_holder(mutex, guard)),
            ForkResult::Parent { child } => {
                assert_eq!(exit_code(child), 0, "{kind}: failed check in the child of a holder");
                assert_parent_still_holds(mutex, kind);
                guard.release().unwrap_or_else(|e| panic!("{kind}: the parent's release failed: {e:?}"));
            }
        }

        // A child that dies holding.
        // SAFETY: as above; the child locks and exits.
        let dead = match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = match mutex.lock() {
                    Ok(guard) if !guard.owner_died() => {
                        std::mem::forget(guard);
                        0
                    }
                    _ => 1,
                };
                exit_child(code)
            }
            ForkResult::Parent { child } => child,
        };
        assert_eq!(exit_code(dead), 0, "{kind}: the child could not lock");
        let recovered = mutex.lock_timeout(Duration::from_secs(5)).expect("the dead child's lock must be free");
        assert!(recovered.owner_died(), "{kind}");
        assert_eq!(recovered.dead_owner().unwrap().pid, dead.as_raw(), "{kind}: the child recorded its own pid");

        // Fork while holding that recovered (still inconsistent) lock.
        // SAFETY: as above.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => exit_child(child_of_holder(mutex, recovered)),
            ForkResult::Parent { child } => {
                assert_eq!(exit_code(child), 0, "{kind}: failed check in the child of a recovering holder");
                assert_parent_still_holds(mutex, kind);
                recovered.release().unwrap_or_else(|e| panic!("{kind}: the recovering release failed: {e:?}"));
            }
        }
        let state = mutex.state();
        assert!(!state.locked && !state.abandoned, "{kind}: {state:?}");
        let again = mutex.lock_timeout(Duration::from_secs(5)).unwrap();
        assert!(!again.owner_died(), "{kind}: the recovered lock was marked consistent");
    }
    drop(file);
    conformance_support::destroy_unused(&path);
}

fn assert_parent_still_holds(mutex: &SharedMutex, kind: &str) {
    let state = mutex.state();
    assert!(state.locked, "{kind}: {state:?}");
    assert_eq!(state.holder_tid, Some(gettid()), "{kind}");
    let owner = state.owner.unwrap_or_else(|| panic!("{kind}: the child erased the holder's record: {state:?}"));
    assert_eq!((owner.pid, owner.tid), (std::process::id() as i32, gettid()), "{kind}");
    assert!(!state.poisoned, "{kind}");
}

const PROCESSES: usize = 16;
const INCREMENTS: u64 = 10_000;

/// A page of anonymous shared memory, inherited by forked children.
struct SharedPage(std::ptr::NonNull<u8>);

impl SharedPage {
    fn new() -> SharedPage {
        let len = NonZeroUsize::new(4096).unwrap();
        // SAFETY: a fresh anonymous shared mapping chosen by the kernel; it aliases nothing.
        let page = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                len,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_SHARED,
            )
        }
        .expect("mmap");
        SharedPage(page.cast())
    }

    fn u64_at(&self, index: usize) -> &AtomicU64 {
        assert!(index < 512);
        // SAFETY: inside the live 4096-byte page, 8-byte aligned; accessed only atomically.
        unsafe { &*self.0.as_ptr().cast::<AtomicU64>().add(index) }
    }

    fn u32_at(&self, index: usize) -> &AtomicU32 {
        assert!(index < 1024);
        // SAFETY: inside the live 4096-byte page, 4-byte aligned; accessed only atomically.
        unsafe { &*self.0.as_ptr().cast::<AtomicU32>().add(index) }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length; nothing borrows it any more.
        let _ = unsafe { nix::sys::mman::munmap(self.0.cast(), 4096) };
    }
}

// Words of the shared page.
const COUNTER: usize = 0;
const INSIDE: usize = 1;
/// The fencing token of the last acquisition, in the order the lock was taken.
const LAST_TOKEN: usize = 2;
/// 32-bit word index of the start gate (byte 64).
const GATE: usize = 16;

fn futex(word: &AtomicU32, op: libc::c_int, value: u32) {
    // SAFETY: FUTEX_WAIT/FUTEX_WAKE on a live, aligned 32-bit word with no timeout; the kernel
    // only reads the word.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), op, value, std::ptr::null::<libc::timespec>());
    }
}

/// A counting child: waits at the gate, then adds one `INCREMENTS` times under the lock with a
/// separate load and store (concurrent holders would lose updates) and checks nobody else is
/// inside and that its fencing token is greater than the previous holder's. Returns 0, or the
/// number of the failed check.
fn count(mutex: &SharedMutex, page: &SharedPage) -> i32 {
    let gate = page.u32_at(GATE);
    while gate.load(Ordering::Acquire) == 0 {
        futex(gate, libc::FUTEX_WAIT, 0);
    }
    for i in 0..INCREMENTS {
        let Ok(guard) = mutex.lock() else { return 10 };
        if guard.owner_died() {
            return 11;
        }
        if page.u64_at(INSIDE).swap(1, Ordering::Relaxed) != 0 {
            return 12;
        }
        if guard.fencing_token() <= page.u64_at(LAST_TOKEN).load(Ordering::Relaxed) {
            return 13;
        }
        page.u64_at(LAST_TOKEN).store(guard.fencing_token(), Ordering::Relaxed);
        let value = page.u64_at(COUNTER).load(Ordering::Relaxed);
        if i % 512 == 0 {
            // Give the scheduler a chance to run someone else inside the critical section.
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
        page.u64_at(COUNTER).store(value + 1, Ordering::Relaxed);
        page.u64_at(INSIDE).store(0, Ordering::Relaxed);
        drop(guard);
    }
    0
}

/// The bakery seed's use case: 16 processes forked from this one share one
/// `SharedMutex::anonymous()` and each add 10,000 to a counter in shared memory under the lock;
/// the total must be exactly 160,000, nobody may ever be inside with someone else, the
/// mutex must have counted exactly 160,000 acquisitions, and their fencing tokens must have
/// increased in the order the lock was taken (160,000 of them, one each).
#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "file-lock backend: a fork() child shares its parent's open file description, hence its file lock; it cannot lock through inherited handles (Error::Unsupported) and must open the mutex again"
)]
fn sixteen_forked_processes_count_to_160000_under_an_anonymous_mutex() {
    let _serial = FORKS.lock().unwrap_or_else(|p| p.into_inner());
    let mutex = SharedMutex::anonymous().unwrap();
    let page = SharedPage::new();
    // Lock once before forking, so the fork handling of the crate's cached ids is exercised.
    drop(mutex.lock().unwrap());
    let before = mutex.state().acquisitions;
    let token_before = mutex.state().fencing_token;
    page.u64_at(LAST_TOKEN).store(token_before, Ordering::Relaxed);

    let mut children = Vec::new();
    for _ in 0..PROCESSES {
        // SAFETY: the child only runs `count` (futex wait, crate lock/unlock, atomics) and
        // `_exit`; see the module comment.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => exit_child(count(&mutex, &page)),
            Ok(ForkResult::Parent { child }) => children.push(child),
            Err(e) => {
                for child in &children {
                    let _ = kill(*child, Signal::SIGKILL);
                    let _ = waitpid(*child, None);
                }
                panic!("fork: {e}");
            }
        }
    }
    page.u32_at(GATE).store(1, Ordering::Release);
    futex(page.u32_at(GATE), libc::FUTEX_WAKE, i32::MAX as u32);

    let codes: Vec<i32> = children.iter().map(|child| exit_code(*child)).collect();
    assert!(codes.iter().all(|&c| c == 0), "exit codes of the counting children: {codes:?}");
    assert_eq!(page.u64_at(COUNTER).load(Ordering::Relaxed), PROCESSES as u64 * INCREMENTS);
    let state = mutex.state();
    assert_eq!(state.acquisitions - before, PROCESSES as u64 * INCREMENTS, "{state:?}");
    assert_eq!(state.fencing_token, page.u64_at(LAST_TOKEN).load(Ordering::Relaxed), "{state:?}");
    assert_eq!(state.fencing_token - token_before, PROCESSES as u64 * INCREMENTS, "one token per acquisition");
    assert!(!state.locked && state.owner_deaths == 0 && !state.poisoned, "{state:?}");
}

/// A child may drop the handles it inherited even when another thread of the parent held the
/// process-wide registry lock at the fork (the child never gets it back): here a thread opens
/// and closes another file without pause while the test forks, and each child drops its last
/// handle to a third file, which unregisters it. A child that hangs fails the test.
#[test]
fn a_fork_child_drops_inherited_handles_whatever_other_threads_held() {
    let _serial = FORKS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = conformance_support::TempDir::new("fork-registry");
    let busy_path = dir.join("busy");
    let victim_path = dir.join("victim");
    drop(SharedMutex::open(&busy_path).unwrap());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                drop(SharedMutex::open(&busy_path).unwrap());
            }
        });
        let mut hung = 0;
        for _ in 0..100 {
            let victim = SharedMutex::open(&victim_path).unwrap();
            // SAFETY: the child only drops a handle (munmap, close, a registry try-lock) and
            // calls _exit.
            match unsafe { fork() }.expect("fork") {
                ForkResult::Child => {
                    drop(victim);
                    exit_child(0);
                }
                ForkResult::Parent { child } => {
                    drop(victim);
                    let deadline = Instant::now() + Duration::from_secs(5);
                    loop {
                        match waitpid(child, Some(WaitPidFlag::WNOHANG)).expect("waitpid") {
                            WaitStatus::Exited(_, code) => {
                                assert_eq!(code, 0);
                                break;
                            }
                            WaitStatus::Signaled(_, signal, _) => panic!("child killed by {signal:?}"),
                            _ => {}
                        }
                        if Instant::now() > deadline {
                            let _ = kill(child, Signal::SIGKILL);
                            let _ = waitpid(child, None);
                            hung += 1;
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert_eq!(hung, 0, "{hung} of 100 children hung dropping an inherited handle");
    });
}

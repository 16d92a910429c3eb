//! The model: the futex lock word, the kernel's futex queue, the C library's robust lock, trylock
//! and unlock, the kernel's owner-death handling, our watcher (`wait_released`), and the Node
//! binding's JavaScript side (`index.ts`: `#serve`, `#startWatching`, `#giveUp`, `close`), each
//! step written after the code it stands for. Every access to shared state is a loom operation,
//! so loom explores every interleaving of them.
//!
//! Ghost state (who holds, whether an owner death is still to be reported) uses plain std
//! atomics: it is bookkeeping for the assertions, not part of the protocol, and loom does not
//! explore its interleavings.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool as GhostBool, AtomicUsize as GhostUsize};

use loom::sync::atomic::{AtomicBool, AtomicU32};
use loom::sync::{Condvar, Mutex};
// std's Arc, not loom's: loom's would check for leaks, and its drop, run while unwinding from a
// reported deadlock, aborts the test process instead of failing the test.
use loom::thread;
use std::sync::Arc;

// All model accesses are SeqCst: the protocol's shared state is one word (whose read-modify-
// writes are totally ordered whatever the ordering) plus the kernel's queue under its lock, and
// the real futex syscalls are full barriers. Weak-memory effects are not what this model checks.
use std::sync::atomic::Ordering::SeqCst;

/// Kernel robust-futex bits of the lock word (as in `raw.rs`).
pub const TID_MASK: u32 = 0x3fff_ffff;
pub const OWNER_DIED: u32 = 0x4000_0000;
pub const WAITERS: u32 = 0x8000_0000;

/// Thread ids of the actors.
pub const HOLDER: u32 = 1;
pub const SLEEPER: u32 = 2;
pub const JS1: u32 = 3;
pub const JS2: u32 = 4;

/// Which parked waiter a `FUTEX_WAKE` picks. Linux wakes in priority order, FIFO among equal
/// priorities (every non-real-time task); LIFO covers the other choice for two waiters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeOrder {
    Fifo,
    Lifo,
}

/// The protocol's steps that the mutation tests remove, and the fixes. `REAL` is the code as it
/// is; `BEFORE_REVIEW` the code this model was first written against (its bugs are kept as
/// tests); `FIXED` the fix first proposed for them.
#[derive(Clone, Copy, Debug)]
pub struct Protocol {
    /// `try_acquire_raw_after_wait` sets WAITERS after a successful trylock
    /// (`RawMutex::keep_waiters_flagged`).
    pub keep_waiters_flagged: bool,
    /// `wait_released` ends a cancelled or timed-out watch with `pass_wake`.
    pub watcher_passes_wake: bool,
    /// `wait_released` also passes the wake on when it returns because the lock is free, so a
    /// caller that then never acquires (it gave up, closed, or its worker ended) strands nobody.
    pub watcher_passes_wake_on_success: bool,
    /// `index.ts`: a watch that resolves after it was stopped passes the wake on
    /// (`if (!this.#closed) binding.passWake`).
    pub js_passes_stale_wake: bool,
    /// `index.ts` `close()`: `if (this.#stoppedWatch) binding.passWake`.
    pub close_passes_wake: bool,
    /// Proposed fix (not in the code): a watch whose token was cancelled by the time its wait
    /// returned passes the wake itself (in `wait_released`, or in the watcher thread's loop).
    pub fix_watcher_checks_cancel_after_wait: bool,
    /// Proposed fix (not in the code): the environment teardown hook (`stop_all_watches`)
    /// passes a wake for each watch it stops, as `close()` does.
    pub fix_teardown_passes_wake: bool,
    /// Mutation only: `hand_back_raw` records ABANDONED for an acquisition that found its owner
    /// dead (real: true).
    pub hand_back_records_death: bool,
    /// Mutation only (real: false): after a watch, the JS thread takes the lock with a plain
    /// store of its tid instead of a trylock, trusting the watch's "free".
    pub js_trusts_the_watch: bool,
}

impl Protocol {
    pub const REAL: Protocol = Protocol {
        keep_waiters_flagged: true,
        watcher_passes_wake: true,
        watcher_passes_wake_on_success: true,
        js_passes_stale_wake: false,
        close_passes_wake: false,
        fix_watcher_checks_cancel_after_wait: false,
        fix_teardown_passes_wake: false,
        hand_back_records_death: true,
        js_trusts_the_watch: false,
    };
    pub const BEFORE_REVIEW: Protocol = Protocol {
        watcher_passes_wake_on_success: false,
        js_passes_stale_wake: true,
        close_passes_wake: true,
        ..Protocol::REAL
    };
    pub const FIXED: Protocol = Protocol {
        fix_watcher_checks_cancel_after_wait: true,
        fix_teardown_passes_wake: true,
        ..Protocol::BEFORE_REVIEW
    };
}

/// How the lock was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    Clean,
    /// `EOWNERDEAD`: the word carried OWNER_DIED.
    OwnerDied,
}

/// The kernel's futex hash bucket for the word: parked waiters in arrival order.
struct Kernel {
    queue: Vec<usize>,
    woken: Vec<bool>,
}

/// Ghost state for the assertions.
#[derive(Default)]
struct Ghost {
    holders: GhostUsize,
    death_pending: GhostBool,
    died: GhostBool,
    acquisitions: GhostUsize,
}

/// One mutex: its lock word, the kernel's queue of sleepers on it, and the header's
/// ABANDONED state (set by `hand_back_raw`).
pub struct Lock {
    word: AtomicU32,
    kernel: Mutex<Kernel>,
    parked: Condvar,
    abandoned: AtomicBool,
    order: WakeOrder,
    pub proto: Protocol,
    ghost: Ghost,
}

/// How a futex wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The word did not hold the expected value: never parked.
    Mismatch,
    Woken,
    TimedOut,
}

impl Lock {
    /// A lock held by `HOLDER` (the state every scenario starts from).
    pub fn held_by_holder(order: WakeOrder, proto: Protocol) -> Arc<Lock> {
        let lock = Lock {
            word: AtomicU32::new(HOLDER),
            kernel: Mutex::new(Kernel { queue: Vec::new(), woken: Vec::new() }),
            parked: Condvar::new(),
            abandoned: AtomicBool::new(false),
            order,
            proto,
            ghost: Ghost::default(),
        };
        lock.ghost.holders.store(1, SeqCst);
        Arc::new(lock)
    }

    // ----- the kernel -----

    /// `FUTEX_WAIT`: under the bucket lock, parks only if the word still equals `expected`. A
    /// timed wait (a slice) may end at any moment after parking: the thread simply runs on
    /// whenever the scheduler picks it, and leaves the queue unless a wake already took it out.
    pub fn futex_wait(&self, expected: u32, timed: bool) -> Wait {
        let mut k = self.kernel.lock().unwrap();
        if self.word.load(SeqCst) != expected {
            return Wait::Mismatch;
        }
        let ticket = k.woken.len();
        k.woken.push(false);
        k.queue.push(ticket);
        if timed {
            drop(k);
            let mut k = self.kernel.lock().unwrap();
            if k.woken[ticket] {
                Wait::Woken
            } else {
                k.queue.retain(|&t| t != ticket);
                Wait::TimedOut
            }
        } else {
            while !k.woken[ticket] {
                k = self.parked.wait(k).unwrap();
            }
            Wait::Woken
        }
    }

    /// `FUTEX_WAKE n`: unparks up to `n` parked waiters.
    pub fn futex_wake(&self, n: usize) {
        let mut k = self.kernel.lock().unwrap();
        let mut woken = 0;
        while woken < n && !k.queue.is_empty() {
            let ticket = match self.order {
                WakeOrder::Fifo => k.queue.remove(0),
                WakeOrder::Lifo => k.queue.pop().unwrap(),
            };
            k.woken[ticket] = true;
            woken += 1;
        }
        if woken > 0 {
            self.parked.notify_all();
        }
    }

    /// The kernel's `handle_futex_death` for a thread that dies holding the lock: the tid is
    /// replaced by OWNER_DIED (WAITERS kept), and one sleeper is woken if WAITERS was set.
    pub fn die(&self, me: u32) {
        assert_eq!(self.ghost.holders.fetch_sub(1, SeqCst), 1);
        self.ghost.death_pending.store(true, SeqCst);
        self.ghost.died.store(true, SeqCst);
        let mut old = self.word.load(SeqCst);
        loop {
            assert_eq!(old & TID_MASK, me, "a dying holder's tid is in the word");
            let marked = (old & WAITERS) | OWNER_DIED;
            match self.word.compare_exchange(old, marked, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
        if old & WAITERS != 0 {
            self.futex_wake(1);
        }
    }

    // ----- the C library (glibc's robust mutex) -----

    /// `pthread_mutex_lock` on a robust mutex, without a time limit (glibc >= 2.25,
    /// `pthread_mutex_lock.c`, the PTHREAD_MUTEX_ROBUST_* case): CAS 0 → tid; take an OWNER_DIED
    /// word; else set WAITERS, sleep, and from then on acquire with tid|WAITERS.
    pub fn c_lock(&self, me: u32) -> Acquired {
        let mut assume_other_waiters = 0;
        let mut old = self.word.load(SeqCst);
        loop {
            if old == 0 {
                match self.word.compare_exchange(0, me | assume_other_waiters, SeqCst, SeqCst) {
                    Ok(_) => return Acquired::Clean,
                    Err(now) => old = now,
                }
            }
            if old & OWNER_DIED != 0 {
                let new = me | (old & WAITERS) | assume_other_waiters;
                match self.word.compare_exchange(old, new, SeqCst, SeqCst) {
                    Ok(_) => return Acquired::OwnerDied,
                    Err(now) => {
                        old = now;
                        continue;
                    }
                }
            }
            assert_ne!(old & TID_MASK, me, "relock by the holder");
            if old & WAITERS == 0 {
                if let Err(now) = self.word.compare_exchange(old, old | WAITERS, SeqCst, SeqCst) {
                    old = now;
                    continue;
                }
                old |= WAITERS;
            }
            assume_other_waiters = WAITERS;
            self.futex_wait(old, false);
            old = self.word.load(SeqCst);
        }
    }

    /// `pthread_mutex_trylock` on a robust mutex: take an OWNER_DIED word (keeping WAITERS),
    /// else CAS 0 → tid (no WAITERS).
    pub fn c_trylock(&self, me: u32) -> Option<Acquired> {
        let mut old = self.word.load(SeqCst);
        loop {
            if old & OWNER_DIED != 0 {
                match self.word.compare_exchange(old, me | (old & WAITERS), SeqCst, SeqCst) {
                    Ok(_) => return Some(Acquired::OwnerDied),
                    Err(now) => {
                        old = now;
                        continue;
                    }
                }
            }
            match self.word.compare_exchange(0, me, SeqCst, SeqCst) {
                Ok(_) => return Some(Acquired::Clean),
                Err(now) if now & OWNER_DIED != 0 => old = now,
                Err(_) => return None,
            }
        }
    }

    /// `pthread_mutex_unlock` (after `pthread_mutex_consistent` when needed, which does not
    /// touch the word): exchange 0, wake one if WAITERS was set.
    pub fn c_unlock(&self, me: u32) {
        let old = self.word.swap(0, SeqCst);
        // Mutual exclusion, second check: the word still names the thread that unlocks.
        assert_eq!(old & TID_MASK, me, "mutual exclusion: the word names another holder at unlock");
        if old & WAITERS != 0 {
            self.futex_wake(1);
        }
    }

    // ----- robust_mutex's bookkeeping around the C library -----

    /// `Inner::admit`: the lock is ours. Checks mutual exclusion and that an owner death is
    /// reported to exactly the first acquirer after it (from EOWNERDEAD, or from the header's
    /// ABANDONED left by a hand-back). Returns `owner_died`.
    pub fn admit(&self, how: Acquired) -> bool {
        assert_eq!(self.ghost.holders.fetch_add(1, SeqCst), 0, "mutual exclusion: two holders");
        self.ghost.acquisitions.fetch_add(1, SeqCst);
        let mut owner_died = how == Acquired::OwnerDied;
        if self.abandoned.load(SeqCst) {
            owner_died = true;
            self.abandoned.store(false, SeqCst);
        }
        let pending = self.ghost.death_pending.swap(false, SeqCst);
        assert_eq!(owner_died, pending, "an owner death must be reported to exactly one acquirer");
        owner_died
    }

    /// `release_raw`: unlock.
    pub fn release(&self, me: u32) {
        assert_eq!(self.ghost.holders.fetch_sub(1, SeqCst), 1);
        self.c_unlock(me);
    }

    /// `hand_back_raw`: an unused acquisition that found its owner dead records ABANDONED so
    /// that the next acquirer is told, then unlocks.
    pub fn hand_back(&self, me: u32, owner_died: bool) {
        assert_eq!(self.ghost.holders.fetch_sub(1, SeqCst), 1);
        if owner_died {
            self.ghost.death_pending.store(true, SeqCst);
            if self.proto.hand_back_records_death {
                self.abandoned.store(true, SeqCst);
            }
        }
        self.c_unlock(me);
    }

    /// A C-library locker (no time limit) with our bookkeeping: lock, critical section, unlock.
    pub fn c_lock_and_release(&self, me: u32) {
        let how = self.c_lock(me);
        self.admit(how);
        self.release(me);
    }

    // ----- the watch (crates/robust-mutex/src/raw.rs and watch.rs) -----

    /// `RawMutex::wait_released_slice`.
    pub fn wait_released_slice(&self) -> bool {
        let current = self.word.load(SeqCst);
        if current & TID_MASK == 0 {
            return true;
        }
        let expected = current | WAITERS;
        if current != expected && self.word.compare_exchange(current, expected, SeqCst, SeqCst).is_err() {
            return false;
        }
        self.futex_wait(expected, true);
        self.word.load(SeqCst) & TID_MASK == 0
    }

    /// `RawMutex::pass_wake`.
    pub fn pass_wake(&self) {
        self.futex_wake(1);
    }

    /// `SharedMutex::wait_released`, with at most `slices` slices: running out of them stands
    /// for a deadline (`Error::Timeout`), which ends the watch like a cancellation.
    pub fn wait_released(&self, cancel: &AtomicBool, slices: usize) -> Result<(), WatchEnd> {
        let mut left = slices;
        let result = loop {
            if cancel.load(SeqCst) {
                break Err(WatchEnd::Cancelled);
            }
            if left == 0 {
                break Err(WatchEnd::Timeout);
            }
            left -= 1;
            if self.wait_released_slice() {
                if self.proto.fix_watcher_checks_cancel_after_wait && cancel.load(SeqCst) {
                    break Err(WatchEnd::Cancelled);
                }
                if self.proto.watcher_passes_wake_on_success {
                    self.pass_wake();
                }
                return Ok(());
            }
        };
        if self.proto.watcher_passes_wake {
            self.pass_wake();
        }
        result
    }

    /// `try_acquire_raw_after_wait` (`tryLockAfterWait`): trylock, admit, keep WAITERS set.
    pub fn try_lock_after_wait(&self, me: u32) -> Option<bool> {
        let how = self.c_trylock(me)?;
        let owner_died = self.admit(how);
        if self.proto.keep_waiters_flagged {
            self.word.fetch_or(WAITERS, SeqCst);
        }
        Some(owner_died)
    }

    /// `#serve` right after a watch returned: `tryLockAfterWait` (or, as a mutation, taking
    /// the lock without looking).
    pub fn try_lock_after_watch(&self, me: u32) -> Option<bool> {
        if !self.proto.js_trusts_the_watch {
            return self.try_lock_after_wait(me);
        }
        let old = self.word.swap(me | WAITERS, SeqCst);
        let how = if old & OWNER_DIED != 0 { Acquired::OwnerDied } else { Acquired::Clean };
        Some(self.admit(how))
    }

    /// What every execution must end with, checked once every thread has finished. (An
    /// execution in which a sleeper stays parked never gets here: loom reports it as a
    /// deadlock, the lost wake-up.)
    pub fn check_end(&self) {
        assert_eq!(self.ghost.holders.load(SeqCst), 0, "a hold outlived its actor");
        let word = self.word.load(SeqCst);
        assert_eq!(word & TID_MASK, 0, "the lock is free at the end");
        let k = self.kernel.lock().unwrap();
        assert!(k.queue.is_empty(), "nobody is left parked");
        if self.ghost.died.load(SeqCst) && self.ghost.acquisitions.load(SeqCst) > 0 {
            // Somebody acquired after the death (the holder held from the start): the death
            // was reported unless the last report was handed back and nobody came after.
            assert!(
                !self.ghost.death_pending.load(SeqCst) || self.abandoned.load(SeqCst),
                "an owner death was never reported"
            );
        }
    }
}

/// Why a watch ended without the lock being free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEnd {
    Cancelled,
    Timeout,
}

// ----- the actors -----

/// What the holder does with the lock it holds at the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HolderEnd {
    /// `pthread_mutex_unlock`.
    Unlock,
    /// Dies holding it (SIGKILL): the kernel marks OWNER_DIED.
    Die,
    /// Unlocks, then barges in again with a plain C-library lock and unlocks again.
    UnlockRelockUnlock,
}

/// What a JavaScript `lock()` call does after it found the lock held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Js {
    /// Waits for the lock (watch, `tryLockAfterWait`, watch again if someone barged in, at
    /// most `rounds` trylocks), then releases it. The watch and the JS thread's steps run
    /// on one model thread: with no abort, the JS thread only waits for the watch's result.
    Acquire { rounds: usize },
    /// As `Acquire`, but a lock that found its owner dead is handed back (`handBack`, as
    /// `lockSync` does when its worker is terminated), passing the death on.
    AcquireHandBack { rounds: usize },
    /// The waiter times out or is aborted (`#giveUp`) at any moment of the watch; the watch's
    /// late result is then handled as `#startWatching`'s callback does.
    GiveUp,
    /// The abort and the watch's result race: whichever the JS thread sees first decides.
    GiveUpOrAcquire,
    /// `#giveUp`, then `close()` at once; the watch's result arrives after the close.
    GiveUpThenClose,
    /// The worker is terminated while the watch runs: the environment teardown hook cancels
    /// the watch and no JavaScript runs again.
    Terminate,
}

/// Runs one JavaScript `lock()` of thread `me` (spawning its watcher thread where the plan
/// needs one). Returns the threads to join.
pub fn spawn_js(lock: &Arc<Lock>, me: u32, plan: Js, slices: usize) -> thread::JoinHandle<()> {
    let lock = lock.clone();
    thread::spawn(move || match plan {
        Js::Acquire { rounds } => js_acquire(&lock, me, rounds, slices, false),
        Js::AcquireHandBack { rounds } => js_acquire(&lock, me, rounds, slices, true),
        _ => js_with_watcher_thread(&lock, me, plan, slices),
    })
}

/// `#serve` / `#startWatching` for a waiter that is never aborted.
fn js_acquire(lock: &Lock, me: u32, rounds: usize, slices: usize, hand_back: bool) {
    let never = AtomicBool::new(false);
    for round in 0..rounds {
        let acquired = if round == 0 { lock.try_lock_after_wait(me) } else { lock.try_lock_after_watch(me) };
        if let Some(owner_died) = acquired {
            if hand_back {
                lock.hand_back(me, owner_died);
            } else {
                lock.release(me);
            }
            return;
        }
        if round + 1 == rounds {
            return; // out of model rounds: stop right after a failed trylock (no wake taken)
        }
        if lock.wait_released(&never, slices).is_err() {
            return; // the watch failed: the waiter is rejected (the wake was passed on inside)
        }
    }
}

/// A `lock()` whose waiter may give up: the JS thread and the handle's watcher thread.
fn js_with_watcher_thread(lock: &Arc<Lock>, me: u32, plan: Js, slices: usize) {
    // #serve: the first attempt.
    if lock.try_lock_after_wait(me).is_some() {
        lock.release(me);
        return;
    }
    // #startWatching: the watcher thread runs `serve` (watcher.rs) for this request.
    let cancel = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (lock, cancel, done) = (lock.clone(), cancel.clone(), done.clone());
        thread::spawn(move || {
            let result = lock.wait_released(&cancel, slices);
            cancel.store(true, SeqCst); // finished: no longer busy
            done.store(true, SeqCst); // the deferred is settled (the callback is queued)
            result
        })
    };
    // The JS thread's events, in the order it sees them.
    let closed = match plan {
        Js::GiveUp => {
            give_up(&cancel);
            false
        }
        Js::GiveUpOrAcquire => {
            if done.load(SeqCst) {
                // The watch's result came first: `#startWatching`'s callback, then `#serve`.
                match watcher.join().unwrap() {
                    Ok(()) => {
                        if lock.try_lock_after_watch(me).is_some() {
                            lock.release(me);
                        } else {
                            // #serve would watch again; the abort fires now instead: the new
                            // watch is stopped before it starts and passes a wake.
                            if lock.proto.watcher_passes_wake {
                                lock.pass_wake();
                            }
                        }
                    }
                    Err(_) => {} // rejected; wait_released passed the wake
                }
                return;
            }
            give_up(&cancel);
            false
        }
        Js::GiveUpThenClose => {
            give_up(&cancel);
            // close(): the queue is empty, the watch already stopped.
            if lock.proto.close_passes_wake {
                lock.pass_wake();
            }
            true
        }
        Js::Terminate => {
            // stop_all_watches(): cancel; the JS thread never runs again.
            cancel.store(true, SeqCst);
            if lock.proto.fix_teardown_passes_wake {
                lock.pass_wake();
            }
            let _ = watcher.join();
            return;
        }
        Js::Acquire { .. } | Js::AcquireHandBack { .. } => unreachable!(),
    };
    // `#startWatching`'s callback for a watch stopped meanwhile (`this.#watch !== cancel`).
    let result = watcher.join().unwrap();
    if result.is_ok() && !closed && lock.proto.js_passes_stale_wake {
        lock.pass_wake();
    }
}

/// `#giveUp` of the only waiter: the queue is empty, so `#stopWatching` cancels the watch.
fn give_up(cancel: &AtomicBool) {
    cancel.store(true, SeqCst);
}

/// Every schedule with at most this many preemptions (switches away from a thread that could
/// have gone on) is explored: 3 with one JavaScript `lock()`, 2 with two (each extra
/// preemption multiplies the executions by about eight; unbounded exploration takes hours). The
/// bugs the mutation tests plant need two or three. `LOOM_MAX_PREEMPTIONS` overrides it.
pub fn default_preemption_bound(js_calls: usize) -> usize {
    if js_calls <= 1 {
        3
    } else {
        2
    }
}

/// A scenario: the holder (the model's main thread) holds the lock at the start; the other
/// actors start against it; then the holder ends its hold.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub holder: HolderEnd,
    /// A C-library sleeper (`pthread_mutex_lock` without a time limit).
    pub c_sleeper: bool,
    pub js: Vec<Js>,
    /// Slices per watch before it stops as if its deadline passed.
    pub slices: usize,
    pub order: WakeOrder,
    pub proto: Protocol,
    /// loom's preemption bound (`None`: every interleaving; see `default_preemption_bound`).
    pub preemption_bound: Option<usize>,
}

impl Scenario {
    pub fn new(holder: HolderEnd, c_sleeper: bool, js: &[Js]) -> Scenario {
        Scenario {
            holder,
            c_sleeper,
            js: js.to_vec(),
            slices: 2,
            order: WakeOrder::Fifo,
            proto: Protocol::REAL,
            preemption_bound: Some(default_preemption_bound(js.len())),
        }
    }

    pub fn order(mut self, order: WakeOrder) -> Scenario {
        self.order = order;
        self
    }

    pub fn proto(mut self, proto: Protocol) -> Scenario {
        self.proto = proto;
        self
    }

    pub fn slices(mut self, slices: usize) -> Scenario {
        self.slices = slices;
        self
    }

    pub fn preemptions(mut self, bound: Option<usize>) -> Scenario {
        self.preemption_bound = bound;
        self
    }

    /// Explores every execution (within the preemption bound); panics on the first that
    /// breaks a property.
    pub fn check(&self) {
        let mut builder = loom::model::Builder::new();
        if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
            builder.preemption_bound = self.preemption_bound;
        }
        let scenario = self.clone();
        let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = executions.clone();
        let started = std::time::Instant::now();
        builder.check(move || {
            count.fetch_add(1, SeqCst);
            scenario.run_once()
        });
        eprintln!(
            "holder {:?}, C sleeper {}, js {:?}, {} slices, {:?}, preemption bound {:?}: {} executions in {:.1?}",
            self.holder,
            self.c_sleeper,
            self.js,
            self.slices,
            self.order,
            builder.preemption_bound,
            executions.load(SeqCst),
            started.elapsed()
        );
    }

    fn run_once(&self) {
        let lock = Lock::held_by_holder(self.order, self.proto);
        let mut threads = Vec::new();
        if self.c_sleeper {
            let lock = lock.clone();
            threads.push(thread::spawn(move || lock.c_lock_and_release(SLEEPER)));
        }
        for (i, &plan) in self.js.iter().enumerate() {
            threads.push(spawn_js(&lock, JS1 + i as u32, plan, self.slices));
        }
        match self.holder {
            HolderEnd::Unlock => lock.release(HOLDER),
            HolderEnd::Die => lock.die(HOLDER),
            HolderEnd::UnlockRelockUnlock => {
                lock.release(HOLDER);
                lock.c_lock_and_release(HOLDER);
            }
        }
        for t in threads {
            t.join().unwrap();
        }
        lock.check_end();
    }
}

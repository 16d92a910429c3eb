//! The pthread layer: one robust, process-shared, error-checking `pthread_mutex_t` in shared
//! memory, and the few calls made on it. No policy lives here; `mutex.rs` decides what the
//! results mean.
//!
//! pthread functions return their error number instead of setting `errno`.

use std::ffi::c_int;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::sys;

/// How a lock call that succeeded got the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The previous holder released it.
    Clean,
    /// The previous holder died holding it (`EOWNERDEAD`): we own it, the mutex is inconsistent
    /// until `pthread_mutex_consistent`.
    OwnerDied,
}

/// Kernel robust-futex bits of the lock word.
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
/// Set by a sleeping waiter so that the unlocking thread (or the kernel, for a dying holder)
/// issues a wake; musl uses the same bit.
const FUTEX_WAITERS: u32 = 0x8000_0000;
/// The thread id musl writes into the word of a mutex made unrecoverable (glibc keeps it in
/// `__owner` and leaves the word 0): no thread has it.
pub(crate) const NOT_RECOVERABLE_TID: i32 = 0x3fff_ffff;

/// Offset of the futex word inside `pthread_mutex_t`: glibc's `__lock` is the first int, musl's
/// `_m_lock` the second.
const LOCK_WORD_OFFSET: usize = if cfg!(target_env = "musl") { 4 } else { 0 };

/// A robust mutex living in memory this process does not own alone, borrowed from the mapping
/// it lives in (`'map`), so it cannot outlive the page.
#[derive(Clone, Copy)]
pub(crate) struct RawMutex<'map> {
    ptr: *mut libc::pthread_mutex_t,
    _mapping: PhantomData<&'map ()>,
}

// SAFETY: a process-shared pthread mutex is designed to be used from any thread of any process;
// the pointer stays valid for 'map (from_ptr's contract).
unsafe impl Send for RawMutex<'_> {}
// SAFETY: as above; every operation goes through the thread-safe pthread functions or atomics.
unsafe impl Sync for RawMutex<'_> {}

type ClockLockFn = unsafe extern "C" fn(*mut libc::pthread_mutex_t, libc::clockid_t, *const libc::timespec) -> c_int;

/// `pthread_mutex_clocklock` when the C library has it (glibc >= 2.30), looked up at run time so
/// that the binary keeps loading on older glibc and on musl.
fn clocklock() -> Option<ClockLockFn> {
    static FOUND: OnceLock<Option<ClockLockFn>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no other precondition.
        let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"pthread_mutex_clocklock".as_ptr()) };
        if sym.is_null() {
            None
        } else {
            // SAFETY: the symbol is glibc's pthread_mutex_clocklock, whose C signature is exactly
            // `int (pthread_mutex_t *, clockid_t, const struct timespec *)`.
            Some(unsafe { std::mem::transmute::<*mut libc::c_void, ClockLockFn>(sym) })
        }
    })
}

impl<'map> RawMutex<'map> {
    /// # Safety
    /// `ptr` must point to a `pthread_mutex_t`-sized, suitably aligned region of a shared mapping
    /// that stays mapped for `'map`.
    pub(crate) unsafe fn from_ptr(ptr: *mut libc::pthread_mutex_t) -> RawMutex<'map> {
        RawMutex { ptr, _mapping: PhantomData }
    }

    /// Initialises the mutex in place: robust, process-shared, error-checking.
    ///
    /// # Safety
    /// Nobody may be using the mutex (it is in a private file, or every user is excluded).
    pub(crate) unsafe fn init(&self) -> Result<(), Errno> {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: pthread_mutexattr_init initialises the attribute object it is given.
        check(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) })?;
        let attr_ptr = attr.as_mut_ptr();
        // SAFETY: attr was initialised above and the setters only write to it; the mutex
        // memory is unused by anyone else (this function's contract), so initialising it in
        // place is sound.
        let configured = unsafe {
            check(libc::pthread_mutexattr_setpshared(attr_ptr, libc::PTHREAD_PROCESS_SHARED))
                .and_then(|_| check(libc::pthread_mutexattr_setrobust(attr_ptr, libc::PTHREAD_MUTEX_ROBUST)))
                .and_then(|_| check(libc::pthread_mutexattr_settype(attr_ptr, libc::PTHREAD_MUTEX_ERRORCHECK)))
                .and_then(|_| check(libc::pthread_mutex_init(self.ptr, attr_ptr)))
        };
        // SAFETY: attr is initialised; destroying it does not affect the mutex.
        unsafe { libc::pthread_mutexattr_destroy(attr_ptr) };
        configured
    }

    /// One non-blocking attempt. `Ok(None)` means someone else holds it.
    #[inline]
    pub(crate) fn try_lock(&self) -> Result<Option<Acquired>, Errno> {
        // SAFETY: self.ptr is a live, initialised process-shared mutex (from_ptr's contract).
        match unsafe { libc::pthread_mutex_trylock(self.ptr) } {
            libc::ENOTRECOVERABLE => Err(self.not_recoverable()),
            rc => acquired(rc),
        }
    }

    /// glibc's `pthread_mutex_trylock` answers ENOTRECOVERABLE *after* its compare-and-swap put
    /// our thread id in the lock word, and (unlike `pthread_mutex_lock`) never takes it out
    /// again; the mutex is not on our robust list either, so the word would name us until we
    /// exit and then a dead thread forever: every later acquire in every process would wait or
    /// fail with EDEADLK. Give the word back as `pthread_mutex_lock` does (musl never sets it,
    /// so the word does not name us there and nothing is done).
    #[cold]
    fn not_recoverable(&self) -> Errno {
        let word = self.word();
        let me = sys::tid() as u32;
        let current = word.load(Ordering::Relaxed);
        if current & FUTEX_TID_MASK == me
            && word.compare_exchange(current, 0, Ordering::Release, Ordering::Relaxed).is_ok()
            && current & FUTEX_WAITERS != 0
        {
            sys::futex_wake_all(self.futex_word_ptr());
        }
        Errno::ENOTRECOVERABLE
    }

    /// Waits at most `slice`. `Ok(None)` means the slice ran out.
    #[cold]
    pub(crate) fn lock_slice(&self, slice: Duration) -> Result<Option<Acquired>, Errno> {
        let Some(clocklock) = clocklock() else { return self.lock_slice_futex(slice) };
        let until = sys::timespec_after(sys::now(libc::CLOCK_MONOTONIC), slice);
        // SAFETY: live mutex as above; `until` is a normalised timespec on the stack.
        match unsafe { clocklock(self.ptr, libc::CLOCK_MONOTONIC, &until) } {
            libc::ETIMEDOUT => Ok(None),
            libc::ENOTRECOVERABLE => Err(self.not_recoverable()),
            rc => acquired(rc),
        }
    }

    /// Without `pthread_mutex_clocklock` (musl, glibc < 2.30) the only timed lock takes a
    /// CLOCK_REALTIME deadline, and a backward wall-clock jump would stretch the slice by the
    /// size of the jump. So wait on the lock word directly, with a relative futex timeout (the
    /// kernel measures it on CLOCK_MONOTONIC): announce the wait with the waiters bit, which both
    /// C libraries' unlock answer with a wake, and try again when woken. The slice is bounded by
    /// `slice` whatever the wall clock does.
    #[cold]
    fn lock_slice_futex(&self, slice: Duration) -> Result<Option<Acquired>, Errno> {
        let until = Instant::now() + slice;
        let word = self.word();
        let mut slept = false;
        loop {
            if let Some(how) = self.try_lock()? {
                if slept {
                    // Our trylock replaced a word that may have carried the waiters bit of
                    // others still asleep: carry it on, so our unlock wakes one of them.
                    word.fetch_or(FUTEX_WAITERS, Ordering::Relaxed);
                }
                return Ok(Some(how));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let seen = word.load(Ordering::Relaxed);
            if seen & FUTEX_TID_MASK == 0 {
                // Released between the attempt and the load: try again at once.
                std::thread::yield_now();
                continue;
            }
            let waiting = seen | FUTEX_WAITERS;
            if seen != waiting && word.compare_exchange(seen, waiting, Ordering::Relaxed, Ordering::Relaxed).is_err() {
                continue;
            }
            sys::futex_wait(self.futex_word_ptr(), waiting, left);
            slept = true;
        }
    }

    /// Releases the lock, first marking it consistent when it was acquired with owner death.
    ///
    /// # Safety
    /// The calling thread must hold the lock.
    #[inline]
    pub(crate) unsafe fn unlock(&self, make_consistent: bool) -> Result<(), Errno> {
        if make_consistent {
            // SAFETY: we hold the lock (caller's contract) and it is inconsistent.
            unsafe { self.make_consistent() }?;
        }
        // SAFETY: we hold the lock (caller's contract).
        check(unsafe { libc::pthread_mutex_unlock(self.ptr) })
    }

    pub(crate) fn as_ptr(&self) -> *mut libc::pthread_mutex_t {
        self.ptr
    }

    /// # Safety
    /// The calling thread must hold the lock, acquired with EOWNERDEAD.
    #[cold]
    unsafe fn make_consistent(&self) -> Result<(), Errno> {
        // SAFETY: the caller's contract is pthread_mutex_consistent's precondition.
        check(unsafe { libc::pthread_mutex_consistent(self.ptr) })
    }

    pub(crate) fn futex_word_ptr(&self) -> *const AtomicU32 {
        self.word()
    }

    fn word(&self) -> &AtomicU32 {
        // SAFETY: the futex word is an aligned 32-bit int inside the live mutex; the kernel and
        // the C library update it atomically, so atomic access observes and writes valid values.
        unsafe { &*(self.ptr.cast::<u8>().add(LOCK_WORD_OFFSET).cast::<AtomicU32>()) }
    }

    /// A snapshot of the kernel-visible lock word: (holder tid or 0, owner-died bit).
    pub(crate) fn lock_word(&self) -> (i32, bool) {
        let value = self.word().load(Ordering::Relaxed);
        ((value & FUTEX_TID_MASK) as i32, value & FUTEX_OWNER_DIED != 0)
    }

    /// Does for a vanished holder what the kernel does for a dying one: if the lock word still
    /// names `tid`, replace the tid with the owner-died bit (keeping the waiters bit), so the
    /// next lock attempt acquires with `EOWNERDEAD`. Returns whether it did.
    ///
    /// Only for a holder known to be gone (the kernel skipped it: see `Inner::wait`).
    #[cold]
    pub(crate) fn mark_owner_died(&self, tid: i32) -> bool {
        let word = self.word();
        let current = word.load(Ordering::Relaxed);
        if (current & FUTEX_TID_MASK) as i32 != tid || tid == 0 {
            return false;
        }
        let marked = (current & !FUTEX_TID_MASK) | FUTEX_OWNER_DIED;
        word.compare_exchange(current, marked, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }
}

/// Waiting for the lock without taking it, for a thread that is not the one that will acquire
/// (the Node binding's native waiter: the JS thread acquires itself). Compatible with the C
/// library's protocol: a sleeper sets the waiters bit, every unlock that sees it wakes one.
impl RawMutex<'_> {
    /// Sleeps at most `slice` while a thread holds the lock. Returns whether the lock word then
    /// names no holder (released, or marked owner-died by the kernel): a moment to try the lock.
    #[cold]
    pub(crate) fn wait_released_slice(&self, slice: Duration) -> bool {
        let word = self.word();
        let current = word.load(Ordering::Acquire);
        if current & FUTEX_TID_MASK == 0 {
            return true;
        }
        let expected = current | FUTEX_WAITERS;
        if current != expected
            && word.compare_exchange(current, expected, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            // Changed under us (released, or another waiter flagged it): let the caller look again.
            return false;
        }
        sys::futex_wait(self.futex_word_ptr(), expected, slice);
        word.load(Ordering::Acquire) & FUTEX_TID_MASK == 0
    }

    /// After acquiring with a plain trylock following a wait: the unlock that woke us cleared the
    /// waiters bit, and a trylock does not set it, so other sleepers would never be woken by our
    /// unlock. Set it back, as the C library's own lock does after sleeping.
    ///
    /// # Safety
    /// The calling thread holds the lock (so the tid bits are ours and stay put).
    #[cold]
    pub(crate) unsafe fn keep_waiters_flagged(&self) {
        self.word().fetch_or(FUTEX_WAITERS, Ordering::Relaxed);
    }

    /// Passes on a wake that a waiter consumed without acquiring (it gave up): one other sleeper
    /// gets the chance the unlock meant for it. A spurious wake is harmless (sleepers re-check).
    #[cold]
    pub(crate) fn pass_wake(&self) {
        sys::futex_wake(self.futex_word_ptr(), 1);
    }
}

#[inline]
fn acquired(rc: c_int) -> Result<Option<Acquired>, Errno> {
    match rc {
        0 => Ok(Some(Acquired::Clean)),
        libc::EOWNERDEAD => Ok(Some(Acquired::OwnerDied)),
        libc::EBUSY => Ok(None),
        rc => Err(Errno::from_raw(rc)),
    }
}

#[inline]
fn check(rc: c_int) -> Result<(), Errno> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw(rc))
    }
}

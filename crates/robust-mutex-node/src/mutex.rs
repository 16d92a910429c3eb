//! The binding's functions: argument conversion and thread hand-off over
//! `robust_mutex::SharedMutex`. Every lock is acquired by the JS thread that will release it:
//! `tryLock`/`tryLockAfterWait` and `lockSync` on the calling thread, and a contended `lock()`
//! as a native *watch* (see `watcher.rs`) followed by `tryLockAfterWait` on the JS thread.
//!
//! Functions are plain napi functions over handle numbers (see `handles.rs`); every one catches
//! panics at the boundary (`catch_unwind`), so none can abort the process.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use robust_mutex::{CancelToken, OpenOptions, RawAcquisition, SharedMutex};

use crate::env_state::stopping;
use crate::errors::{coded, to_napi, Fallible};
use crate::handles::{self, register, with_handle};
use crate::os;
use crate::token::Token;
use crate::watcher::{Resolver, Watch};

/// How often a blocked `lockSync` looks whether its worker is being terminated.
const SYNC_SLICE: Duration = Duration::from_millis(100);

/// Options of `open`, as passed by `index.ts` (which validates them first).
#[napi(object)]
pub struct NativeOpenOptions {
    /// Permission bits of a created file (default 0o600).
    pub mode: Option<u32>,
    /// Create the file when missing (default true).
    pub create: Option<bool>,
    /// Accept a file from another PID namespace.
    pub allow_foreign_pid_namespace: Option<bool>,
    /// Accept network and FUSE filesystems.
    pub allow_network_filesystem: Option<bool>,
    /// Accept a file owned by another user.
    pub allow_other_owner: Option<bool>,
}

/// The holder as recorded in the header.
#[napi(object)]
pub struct NativeOwner {
    /// Process id.
    pub pid: i32,
    /// Kernel thread id.
    pub tid: i32,
    /// Held at least since (ms since the epoch), when someone observed it held.
    pub since_ms: Option<f64>,
}

impl From<robust_mutex::OwnerInfo> for NativeOwner {
    fn from(o: robust_mutex::OwnerInfo) -> NativeOwner {
        NativeOwner {
            pid: o.pid,
            tid: o.tid,
            since_ms: o
                .since
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64() * 1000.0),
        }
    }
}

/// `state()` as plain data.
#[napi(object)]
pub struct NativeState {
    /// A live thread holds the lock.
    pub locked: bool,
    /// Thread id in the lock word.
    pub holder_tid: Option<i32>,
    /// The last holder died holding it.
    pub abandoned: bool,
    /// The recorded holder.
    pub owner: Option<NativeOwner>,
    /// Poisoned until reset.
    pub poisoned: bool,
    /// Re-initialisations and resets.
    pub generation: f64,
    /// Successful acquisitions.
    pub acquisitions: f64,
    /// Acquisitions that waited.
    pub contended: f64,
    /// Acquisitions that found the holder dead.
    pub owner_deaths: f64,
    /// The last fencing token issued.
    pub fencing_token: BigInt,
}

/// A cancellation handle for one native watch.
#[napi]
pub struct NativeCancel {
    token: CancelToken,
}

#[napi]
impl NativeCancel {
    /// A fresh, uncancelled handle.
    #[napi(constructor)]
    pub fn new() -> NativeCancel {
        NativeCancel { token: CancelToken::new() }
    }

    /// Stops the watch (noticed within one 100 ms slice; a wake it consumed is passed on).
    #[napi]
    pub fn cancel(&self) {
        self.token.cancel();
    }
}

impl Default for NativeCancel {
    fn default() -> Self {
        NativeCancel::new()
    }
}

/// Milliseconds to a deadline. `None`, `Infinity`, and timeouts too far away to represent
/// (centuries) mean no deadline. `index.ts` rejects negative and non-numbers first.
fn deadline_after(timeout_ms: Option<f64>) -> Result<Option<Instant>> {
    match timeout_ms {
        None => Ok(None),
        Some(ms) if ms >= 0.0 => {
            Ok(Duration::try_from_secs_f64(ms / 1000.0).ok().and_then(|d| Instant::now().checked_add(d)))
        }
        Some(ms) => Err(coded("EINVAL", format!("timeout must be a non-negative number of milliseconds, got {ms}"))),
    }
}

/// The deadline has not passed (there is none, or it is still ahead).
fn before(deadline: Option<Instant>) -> bool {
    match deadline {
        Some(deadline) => Instant::now() < deadline,
        None => true,
    }
}

fn path_from(path: Either<String, Buffer>) -> Result<PathBuf> {
    match path {
        Either::A(s) => Ok(PathBuf::from(s)),
        Either::B(bytes) => os::path_from_bytes(&bytes),
    }
}

/// Opens or creates a mutex file; returns a handle.
#[napi(catch_unwind)]
pub fn open(env: Env, path: Either<String, Buffer>, options: Option<NativeOpenOptions>) -> Result<u32> {
    let mut open = OpenOptions::new();
    if let Some(o) = options {
        if let Some(mode) = o.mode {
            open.mode(mode);
        }
        if let Some(create) = o.create {
            open.create(create);
        }
        open.allow_foreign_pid_namespace(o.allow_foreign_pid_namespace.unwrap_or(false))
            .allow_network_filesystem(o.allow_network_filesystem.unwrap_or(false))
            .allow_other_owner(o.allow_other_owner.unwrap_or(false));
    }
    register(&env, open.open(path_from(path)?).map_err(to_napi)?)
}

/// A nameless mutex (memfd) to share with child processes through its `fd`.
#[napi(catch_unwind)]
pub fn anonymous(env: Env) -> Result<u32> {
    register(&env, SharedMutex::anonymous().map_err(to_napi)?)
}

/// Opens the mutex behind an inherited descriptor (which stays the caller's: it is duplicated).
#[napi(catch_unwind)]
pub fn from_fd(env: Env, fd: i32) -> Result<u32> {
    register(&env, os::open_inherited(fd)?)
}

/// Retires and removes a mutex file (EBUSY while in use).
#[napi(catch_unwind)]
pub fn destroy(path: Either<String, Buffer>) -> Result<()> {
    SharedMutex::destroy(path_from(path)?).map_err(to_napi)
}

/// Clears POISONED on a mutex file, waiting at most `timeoutMs` for the lock; ETERMINATED when
/// the worker is being terminated meanwhile.
#[napi(catch_unwind)]
pub fn reset(env: Env, path: Either<String, Buffer>, timeout_ms: Option<f64>) -> Result<()> {
    let path = path_from(path)?;
    in_slices(&env, deadline_after(timeout_ms)?, reset_not_yet, |until| {
        SharedMutex::reset_timeout(&path, until.saturating_duration_since(Instant::now()))
    })
}

/// Clears POISONED through a handle, as `reset`.
#[napi(catch_unwind)]
pub fn reset_poison(env: Env, handle: u32, timeout_ms: Option<f64>) -> Result<()> {
    let deadline = deadline_after(timeout_ms)?;
    with_handle(handle, |h| {
        in_slices(&env, deadline, reset_not_yet, |until| {
            h.mutex.reset_poison_timeout(until.saturating_duration_since(Instant::now()))
        })
    })
}

/// Runs a blocking `attempt` bounded by deadlines at most `SYNC_SLICE` apart, until it succeeds,
/// fails for good, `deadline` passes (its last error) or this thread's environment is stopping
/// (ETERMINATED): a worker blocked here still ends promptly when it is terminated. `not_yet`
/// says which errors of a slice mean "try the next slice" while time remains.
fn in_slices<T>(
    env: &Env,
    deadline: Option<Instant>,
    not_yet: fn(&robust_mutex::Error) -> bool,
    mut attempt: impl FnMut(Instant) -> std::result::Result<T, robust_mutex::Error>,
) -> Result<T> {
    loop {
        let slice_end = Instant::now() + SYNC_SLICE;
        let until = deadline.map_or(slice_end, |d| d.min(slice_end));
        match attempt(until) {
            Ok(done) => return Ok(done),
            Err(err) if not_yet(&err) && before(deadline) => {
                if stopping(env) {
                    return Err(terminating());
                }
            }
            Err(err) => return Err(to_napi(err)),
        }
    }
}

/// An acquire slice that ran out.
fn slice_ran_out(err: &robust_mutex::Error) -> bool {
    matches!(err, robust_mutex::Error::Timeout)
}

/// A reset slice that ran out, or that still waits for the last user of an unrecoverable mutex.
fn reset_not_yet(err: &robust_mutex::Error) -> bool {
    matches!(err, robust_mutex::Error::Timeout | robust_mutex::Error::NotRecoverable)
}

fn terminating() -> napi::Error {
    coded("ETERMINATED", "the thread is being terminated")
}

/// The path, or null for anonymous and inherited mutexes.
#[napi(catch_unwind)]
pub fn path_of(handle: u32) -> Result<Option<String>> {
    with_handle(handle, |h| Ok(h.mutex.path().map(|p| p.to_string_lossy().into_owned())))
}

/// The descriptor, to pass to child processes.
#[napi(catch_unwind)]
pub fn fd_of(handle: u32) -> Result<i32> {
    with_handle(handle, |h| Ok(os::fd_of(&h.mutex)))
}

/// The fast path: one trylock on the calling JS thread. Returns a lock token, or 0 when held
/// elsewhere; throws EDEADLK when this thread holds it. (`tryLockFast` is its raw twin.)
#[napi(catch_unwind)]
pub fn try_lock(env: Env, handle: u32) -> Result<f64> {
    try_lock_token(env.raw(), handle).map_err(|err| *err)
}

/// [`try_lock`] for the raw callbacks, its error boxed (see `Fallible`).
#[inline(always)]
pub(crate) fn try_lock_token(env: napi::sys::napi_env, handle: u32) -> Fallible<f64> {
    acquire_token(env, handle, SharedMutex::try_acquire_raw)
}

/// `tryLock` after a watch: counts as contended and keeps other sleepers wakeable.
#[napi(catch_unwind)]
pub fn try_lock_after_wait(env: Env, handle: u32) -> Result<f64> {
    try_lock_after_wait_token(env.raw(), handle).map_err(|err| *err)
}

/// [`try_lock_after_wait`] for the raw callbacks, its error boxed (see `Fallible`). A refusal
/// strands no other sleeper: the watch passed its wake on (`wait_released_then`).
#[inline(always)]
pub(crate) fn try_lock_after_wait_token(env: napi::sys::napi_env, handle: u32) -> Fallible<f64> {
    acquire_token(env, handle, SharedMutex::try_acquire_raw_after_wait)
}

/// One non-blocking `attempt` on `handle`, once its ids allow: a lock token, 0 when held
/// elsewhere.
#[inline(always)]
fn acquire_token(
    env: napi::sys::napi_env,
    handle: u32,
    // A generic, not a fn pointer: each caller gets its own copy with the attempt inlined.
    attempt: impl FnOnce(&SharedMutex) -> std::result::Result<Option<RawAcquisition>, robust_mutex::Error>,
) -> Fallible<f64> {
    with_handle(handle, |h| {
        h.ids_left()?;
        match attempt(&h.mutex).map_err(to_napi)? {
            Some(held) => Ok(h.hold(env, held)),
            None => Ok(0.0),
        }
    })
}

/// Blocks the JS thread until acquired (`timeoutMs` optional). Returns a token. Gives up with
/// ETERMINATED when its worker is being terminated, handing back a lock it got meanwhile (a
/// thread that never entered its critical section is no owner death).
#[napi(catch_unwind)]
pub fn lock_sync(env: Env, handle: u32, timeout_ms: Option<f64>) -> Result<f64> {
    let deadline = deadline_after(timeout_ms)?;
    let never = CancelToken::new();
    with_handle(handle, |h| {
        h.ids_left()?;
        let held = in_slices(&env, deadline, slice_ran_out, |until| h.mutex.acquire_raw_until(Some(until), &never))?;
        if stopping(&env) {
            // SAFETY: acquired just above by this thread from this handle's mutex.
            unsafe { h.mutex.hand_back_raw(held) }.map_err(to_napi)?;
            return Err(terminating());
        }
        Ok(h.hold(env.raw(), held))
    })
}

/// Watches the lock on the handle's watcher thread: resolves once nobody holds it (released,
/// or its holder died), so that the JS thread can `tryLockAfterWait`. Rejects with
/// ENOTRECOVERABLE / ESTALE, or ECANCELED after `cancel.cancel()`.
#[napi(catch_unwind, ts_return_type = "Promise<void>")]
pub fn watch<'env>(env: &'env Env, handle: u32, cancel: &NativeCancel) -> Result<Object<'env>> {
    let (deferred, promise) = env.create_deferred::<(), Resolver>()?;
    let request = Watch { cancel: cancel.token.clone(), deferred };
    with_handle(handle, |h| h.watcher.submit(&h.mutex, request))?;
    Ok(promise)
}

/// Unlocks the lock of `token` (marking it consistent after an owner death, or poisoned when
/// `poison`). ERELEASED if the token was already released. (`releaseFast` is its raw twin.)
#[napi(catch_unwind)]
pub fn release(handle: u32, token: f64, poison: bool) -> Result<()> {
    release_token(handle, Token::decode(token)?, poison).map_err(|err| *err)
}

/// [`release`] of a decoded token, its error boxed (see `Fallible`).
#[inline(always)]
pub(crate) fn release_token(handle: u32, token: Token, poison: bool) -> Fallible<()> {
    with_handle(handle, |h| h.release(token.id, poison))
}

/// Who died holding the lock before `token` acquired it, as it recorded itself.
#[napi(catch_unwind)]
pub fn dead_owner(handle: u32, token: f64) -> Result<Option<NativeOwner>> {
    let token = Token::decode(token)?;
    with_handle(handle, |h| Ok(h.dead_owner(token.id).map(NativeOwner::from)))
}

/// A snapshot of the lock and its counters.
#[napi(catch_unwind)]
pub fn state(handle: u32) -> Result<NativeState> {
    with_handle(handle, |h| {
        let s = h.mutex.state();
        Ok(NativeState {
            locked: s.locked,
            holder_tid: s.holder_tid,
            abandoned: s.abandoned,
            owner: s.owner.map(NativeOwner::from),
            poisoned: s.poisoned,
            generation: s.generation as f64,
            acquisitions: s.acquisitions as f64,
            contended: s.contended as f64,
            owner_deaths: s.owner_deaths as f64,
            fencing_token: BigInt::from(s.fencing_token),
        })
    })
}

/// The file was deleted or replaced at its path.
#[napi(catch_unwind)]
pub fn is_stale(handle: u32) -> Result<bool> {
    with_handle(handle, |h| Ok(h.mutex.is_stale()))
}

/// Closes a handle; EBUSY while one of its locks is held or a watch is running. Closing a
/// closed handle does nothing.
#[napi(catch_unwind)]
pub fn close(handle: u32) -> Result<()> {
    let removed = handles::remove(handle, |h| {
        if h.holds_any() {
            return Err(coded("EBUSY", "a lock guard of this handle is still held; release it first"));
        }
        if h.watcher.busy() {
            return Err(coded("EBUSY", "a lock() of this handle is still pending"));
        }
        Ok(())
    })?;
    if let Some(h) = removed {
        let mutex = h.mutex.clone();
        drop(h);
        mutex.close().map_err(to_napi)?;
    }
    Ok(())
}

/// Panics on purpose, to test that no panic crosses into Node (it becomes an exception).
#[napi(catch_unwind)]
pub fn panic_for_testing() -> Result<()> {
    panic!("deliberate panic (test hook)")
}

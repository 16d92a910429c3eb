//! The binding's functions: argument conversion and thread hand-off over
//! `robust_mutex::SharedMutex`.
//!
//! Handles are small integers into a per-thread table, and the functions are plain napi
//! functions rather than class methods: a napi-rs class method call costs ~0.5 µs here (type-tag
//! check, unwrap, borrow tracking), several times the whole lock/unlock budget. The table is
//! thread-local because each JS thread (main or worker) is its own lock owner; a worker's table
//! dies with its thread.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use napi::bindgen_prelude::*;
use napi::CleanupEnvHook;
use napi_derive::napi;
use robust_mutex::{CancelToken, OpenOptions, RawAcquisition, SharedMutex};

use crate::errors::{closed, coded, to_napi};
use crate::token::Token;
use crate::waiter::{Request, WaiterShared};

/// Options of `NativeMutex.open`, as passed by `index.ts`.
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
}

/// A cancellation handle for one pending `lockAsync`.
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

    /// Cancels the wait (noticed within one 100 ms slice).
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

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// A lock held by the JS thread itself (fast path or `lockSync`). The table being thread-local,
/// every entry was acquired by the thread that can see it.
struct Local {
    id: u64,
    held: RawAcquisition,
}

/// One open handle in this thread's table.
struct Handle {
    mutex: SharedMutex,
    shared: Arc<WaiterShared>,
    /// Locks held by this JS thread through this handle (rarely more than one).
    local: Vec<Local>,
    next_local_id: u64,
    cleanup: Option<CleanupEnvHook<Arc<WaiterShared>>>,
}

impl Handle {
    #[inline]
    fn hold(&mut self, held: RawAcquisition) -> f64 {
        self.next_local_id += 1;
        let id = self.next_local_id;
        let owner_died = held.owner_died();
        self.local.push(Local { id, held });
        Token { id, remote: false, owner_died }.encode()
    }

    #[inline]
    fn take_local(&mut self, id: u64) -> Result<RawAcquisition> {
        match self.local.iter().position(|l| l.id == id) {
            Some(index) => Ok(self.local.swap_remove(index).held),
            None => Err(coded("ERELEASED", "the lock guard was already released")),
        }
    }

    #[inline]
    fn release_local(&mut self, id: u64, poison: bool) -> Result<()> {
        let mut held = self.take_local(id)?;
        if poison {
            held.poison();
        }
        // SAFETY: `held` was acquired from `self.mutex` by this thread: the table is
        // thread-local, so only the acquiring thread can reach the entry.
        unsafe { self.mutex.release_raw(held) }.map_err(to_napi)
    }
}

impl Drop for Handle {
    /// The thread ends (or its table is dropped) while it still holds: the critical section
    /// never finished, so the lock is not unlocked (dropping a `RawAcquisition` keeps it held);
    /// the thread's exit makes the kernel report the owner death to the next acquirer.
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

thread_local! {
    static HANDLES: RefCell<Vec<Option<Handle>>> = const { RefCell::new(Vec::new()) };
}

fn with_handle<T>(handle: u32, f: impl FnOnce(&mut Handle) -> Result<T>) -> Result<T> {
    HANDLES.with(|table| {
        let mut table = table.borrow_mut();
        match table.get_mut(handle as usize).and_then(Option::as_mut) {
            Some(h) => f(h),
            None => Err(closed()),
        }
    })
}

fn register(env: &Env, mutex: SharedMutex) -> Result<u32> {
    let shared = Arc::new(WaiterShared::default());
    // A worker that terminates (or an env torn down) while the waiter thread holds for it must
    // abandon that lock, so that others see the owner death.
    let cleanup = env.add_env_cleanup_hook(Arc::clone(&shared), |shared| shared.abandon_all())?;
    let handle = Handle { mutex, shared, local: Vec::new(), next_local_id: 0, cleanup: Some(cleanup) };
    HANDLES.with(|table| {
        let mut table = table.borrow_mut();
        let slot = table.iter().position(Option::is_none).unwrap_or_else(|| {
            table.push(None);
            table.len() - 1
        });
        table[slot] = Some(handle);
        Ok(slot as u32)
    })
}

fn deadline_after(timeout_ms: Option<f64>) -> Result<Option<Instant>> {
    match timeout_ms {
        None => Ok(None),
        Some(ms) if ms == f64::INFINITY => Ok(None),
        Some(ms) if ms.is_finite() && ms >= 0.0 => {
            Ok(Instant::now().checked_add(Duration::from_secs_f64(ms / 1000.0)))
        }
        Some(ms) => Err(coded("EINVAL", format!("timeout must be a non-negative number of milliseconds, got {ms}"))),
    }
}

/// Opens or creates a mutex file; returns a handle.
#[napi]
pub fn open(env: Env, path: String, options: Option<NativeOpenOptions>) -> Result<u32> {
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
    register(&env, open.open(&path).map_err(to_napi)?)
}

/// A nameless mutex (memfd) to share with child processes through its `fd`.
#[napi]
pub fn anonymous(env: Env) -> Result<u32> {
    register(&env, SharedMutex::anonymous().map_err(to_napi)?)
}

/// Opens the mutex behind an inherited descriptor (which stays the caller's: it is duplicated).
#[napi]
pub fn from_fd(env: Env, fd: i32) -> Result<u32> {
    if fd < 0 {
        return Err(coded("EBADF", format!("{fd} is not a file descriptor")));
    }
    // SAFETY: only borrowed for the duplication below; `fcntl(F_DUPFD_CLOEXEC)` reports a closed
    // descriptor as EBADF instead of misbehaving.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let owned = borrowed
        .try_clone_to_owned()
        .map_err(|e| coded("EBADF", format!("cannot use file descriptor {fd}: {e}")))?;
    register(&env, SharedMutex::from_fd(owned).map_err(to_napi)?)
}

/// Retires and removes a mutex file (EBUSY while in use).
#[napi]
pub fn destroy(path: String) -> Result<()> {
    SharedMutex::destroy(&path).map_err(to_napi)
}

/// Clears POISONED on a mutex file.
#[napi]
pub fn reset(path: String) -> Result<()> {
    SharedMutex::reset(&path).map_err(to_napi)
}

/// Clears POISONED through a handle.
#[napi]
pub fn reset_poison(handle: u32) -> Result<()> {
    with_handle(handle, |h| h.mutex.reset_poison().map_err(to_napi))
}

/// The path, or null for anonymous and inherited mutexes.
#[napi]
pub fn path_of(handle: u32) -> Result<Option<String>> {
    with_handle(handle, |h| Ok(h.mutex.path().map(|p| p.to_string_lossy().into_owned())))
}

/// The descriptor, to pass to child processes.
#[napi]
pub fn fd_of(handle: u32) -> Result<i32> {
    with_handle(handle, |h| Ok(h.mutex.as_fd().as_raw_fd()))
}

/// The fast path: one trylock on the calling JS thread. Returns a lock token, or 0 when held
/// elsewhere; throws EDEADLK when this thread holds it.
#[napi]
pub fn try_lock(handle: u32) -> Result<f64> {
    with_handle(handle, |h| match h.mutex.try_acquire_raw().map_err(to_napi)? {
        Some(held) => Ok(h.hold(held)),
        None => Ok(0.0),
    })
}

/// Blocks the JS thread until acquired (sliced waits; `timeoutMs` optional). Returns a token.
#[napi]
pub fn lock_sync(handle: u32, timeout_ms: Option<f64>) -> Result<f64> {
    let deadline = deadline_after(timeout_ms)?;
    with_handle(handle, |h| {
        if h.shared.holding() {
            return Err(to_napi(robust_mutex::Error::Deadlock));
        }
        let held = h.mutex.acquire_raw_until(deadline, &CancelToken::new()).map_err(to_napi)?;
        Ok(h.hold(held))
    })
}

/// Waits on the handle's waiter thread; the promise resolves with a token on the JS thread.
#[napi(ts_return_type = "Promise<number>")]
pub fn lock_async<'env>(
    env: &'env Env,
    handle: u32,
    cancel: &NativeCancel,
    timeout_ms: Option<f64>,
) -> Result<Object<'env>> {
    let deadline = deadline_after(timeout_ms)?;
    let (deferred, promise) = env.create_deferred()?;
    let request =
        Request { id: REQUEST_IDS.fetch_add(1, Ordering::Relaxed), deadline, cancel: cancel.token.clone(), deferred };
    with_handle(handle, |h| h.shared.submit(&h.mutex, request))?;
    Ok(promise)
}

/// Unlocks the lock of `token` on the thread that holds it (marking it consistent after an owner
/// death, or poisoned when `poison`). Returns once the lock is free; ERELEASED if the token was
/// already released.
#[napi]
pub fn release(handle: u32, token: f64, poison: bool) -> Result<()> {
    let token = Token::decode(token)?;
    with_handle(handle, |h| {
        if token.remote {
            return h.shared.release(token.id, poison);
        }
        h.release_local(token.id, poison)
    })
}

/// For a grant that arrived after its request was aborted, or whose guard object was collected
/// unreleased: give it back. With `abandon` (or an owner death) a waiter-thread lock is
/// abandoned, so the next acquirer is told its owner died; a JS-thread lock that cannot be
/// released cleanly stays held until the thread exits.
#[napi]
pub fn give_back(handle: u32, token: f64, abandon: bool) -> Result<()> {
    let token = Token::decode(token)?;
    with_handle(handle, |h| {
        if token.remote {
            h.shared.give_back(token.id, abandon || token.owner_died);
        } else if abandon || token.owner_died {
            // Dropping the raw acquisition keeps the lock held until this thread exits.
            drop(h.take_local(token.id));
        } else {
            let _ = h.release_local(token.id, false);
        }
        Ok(())
    })
}

/// Who died holding the lock before `token` acquired it, as it recorded itself.
#[napi]
pub fn dead_owner(handle: u32, token: f64) -> Result<Option<NativeOwner>> {
    let token = Token::decode(token)?;
    with_handle(handle, |h| {
        let owner = if token.remote {
            h.shared.dead_owner(token.id)
        } else {
            h.local.iter().find(|l| l.id == token.id).and_then(|l| l.held.dead_owner())
        };
        Ok(owner.map(NativeOwner::from))
    })
}

/// A snapshot of the lock and its counters.
#[napi]
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
        })
    })
}

/// The file was deleted or replaced at its path.
#[napi]
pub fn is_stale(handle: u32) -> Result<bool> {
    with_handle(handle, |h| Ok(h.mutex.is_stale()))
}

/// Closes a handle; EBUSY while one of its locks is held or a wait is pending. Closing a closed
/// handle does nothing.
#[napi]
pub fn close(env: Env, handle: u32) -> Result<()> {
    let removed = HANDLES.with(|table| {
        let mut table = table.borrow_mut();
        let Some(slot) = table.get_mut(handle as usize) else { return Ok(None) };
        let Some(h) = slot.as_ref() else { return Ok(None) };
        if !h.local.is_empty() || h.shared.holding() {
            return Err(coded("EBUSY", "a lock guard of this handle is still held; release it first"));
        }
        if h.shared.has_pending() {
            return Err(coded("EBUSY", "a lock() of this handle is still pending"));
        }
        Ok(slot.take())
    })?;
    if let Some(mut h) = removed {
        if let Some(hook) = h.cleanup.take() {
            env.remove_env_cleanup_hook(hook)?;
        }
        h.shared.shutdown();
        let mutex = h.mutex.clone();
        drop(h);
        mutex.close().map_err(to_napi)?;
    }
    Ok(())
}

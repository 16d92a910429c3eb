//! `NativeMutex`: argument conversion and thread hand-off over `robust_mutex::SharedMutex`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use napi::bindgen_prelude::*;
use napi::CleanupEnvHook;
use napi_derive::napi;
use robust_mutex::{CancelToken, OpenOptions, SharedMutex};

use crate::errors::{closed, coded, to_napi};
use crate::guard::NativeGuard;
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

/// One handle to a mutex file (or anonymous mutex) in one JS environment.
#[napi]
pub struct NativeMutex {
    mutex: Option<SharedMutex>,
    shared: Arc<WaiterShared>,
    path: Option<String>,
    cleanup: Option<CleanupEnvHook<Arc<WaiterShared>>>,
}

fn deadline_after(timeout_ms: Option<f64>) -> Result<Option<Instant>> {
    match timeout_ms {
        None => Ok(None),
        Some(ms) if ms.is_finite() && ms >= 0.0 => {
            Ok(Instant::now().checked_add(Duration::from_secs_f64(ms / 1000.0)))
        }
        Some(ms) if ms == f64::INFINITY => Ok(None),
        Some(ms) => Err(coded("EINVAL", format!("timeout must be a non-negative number of milliseconds, got {ms}"))),
    }
}

impl NativeMutex {
    fn wrap(env: &Env, mutex: SharedMutex) -> Result<NativeMutex> {
        let shared = Arc::new(WaiterShared::default());
        // A worker that terminates (or an env torn down) while a waiter thread holds for it
        // must abandon that lock, so that others see the owner death.
        let cleanup = env.add_env_cleanup_hook(Arc::clone(&shared), |shared| shared.abandon_all())?;
        let path = mutex.path().map(|p| p.to_string_lossy().into_owned());
        Ok(NativeMutex { mutex: Some(mutex), shared, path, cleanup: Some(cleanup) })
    }

    fn mutex(&self) -> Result<&SharedMutex> {
        self.mutex.as_ref().ok_or_else(closed)
    }
}

#[napi]
impl NativeMutex {
    /// Opens or creates a mutex file.
    #[napi(factory)]
    pub fn open(env: Env, path: String, options: Option<NativeOpenOptions>) -> Result<NativeMutex> {
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
        let mutex = open.open(&path).map_err(to_napi)?;
        NativeMutex::wrap(&env, mutex)
    }

    /// A nameless mutex (memfd) to share with child processes through its `fd`.
    #[napi(factory)]
    pub fn anonymous(env: Env) -> Result<NativeMutex> {
        NativeMutex::wrap(&env, SharedMutex::anonymous().map_err(to_napi)?)
    }

    /// Opens the mutex behind an inherited descriptor (which stays the caller's: it is
    /// duplicated).
    #[napi(factory)]
    pub fn from_fd(env: Env, fd: i32) -> Result<NativeMutex> {
        if fd < 0 {
            return Err(coded("EBADF", format!("{fd} is not a file descriptor")));
        }
        // SAFETY: only borrowed for the duplication below; `fcntl(F_DUPFD_CLOEXEC)` reports a
        // closed descriptor as EBADF instead of misbehaving.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let owned = borrowed
            .try_clone_to_owned()
            .map_err(|e| coded("EBADF", format!("cannot use file descriptor {fd}: {e}")))?;
        NativeMutex::wrap(&env, SharedMutex::from_fd(owned).map_err(to_napi)?)
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

    /// Clears POISONED through this handle.
    #[napi]
    pub fn reset_poison(&self) -> Result<()> {
        self.mutex()?.reset_poison().map_err(to_napi)
    }

    /// The path, or null for anonymous and inherited mutexes.
    #[napi(getter)]
    pub fn path(&self) -> Option<String> {
        self.path.clone()
    }

    /// The descriptor, to pass to child processes (-1 once closed).
    #[napi(getter)]
    pub fn fd(&self) -> i32 {
        self.mutex.as_ref().map_or(-1, |m| m.as_fd().as_raw_fd())
    }

    /// The fast path: one trylock on the calling JS thread. Null when held elsewhere; throws
    /// EDEADLK when this thread holds it.
    #[napi]
    pub fn try_lock(&self) -> Result<Option<NativeGuard>> {
        let guard = self.mutex()?.try_lock_owned().map_err(to_napi)?;
        Ok(guard.map(|g| NativeGuard::js_thread(g, Arc::clone(&self.shared))))
    }

    /// Blocks the JS thread until acquired (sliced waits; `timeoutMs` optional).
    #[napi]
    pub fn lock_sync(&self, timeout_ms: Option<f64>) -> Result<NativeGuard> {
        let mutex = self.mutex()?;
        if self.shared.holding.load(Ordering::Acquire) {
            return Err(to_napi(robust_mutex::Error::Deadlock));
        }
        let deadline = deadline_after(timeout_ms)?;
        let guard = mutex.lock_until_owned(deadline, &CancelToken::new()).map_err(to_napi)?;
        Ok(NativeGuard::js_thread(guard, Arc::clone(&self.shared)))
    }

    /// Waits on this handle's waiter thread; the promise resolves on the JS thread.
    #[napi(ts_return_type = "Promise<NativeGuard>")]
    pub fn lock_async<'env>(
        &self,
        env: &'env Env,
        cancel: &NativeCancel,
        timeout_ms: Option<f64>,
    ) -> Result<Object<'env>> {
        let mutex = self.mutex()?;
        let deadline = deadline_after(timeout_ms)?;
        let (deferred, promise) = env.create_deferred()?;
        let request = Request {
            id: REQUEST_IDS.fetch_add(1, Ordering::Relaxed),
            deadline,
            cancel: cancel.token.clone(),
            deferred,
        };
        self.shared.submit(mutex, request)?;
        Ok(promise)
    }

    /// A snapshot of the lock and its counters.
    #[napi]
    pub fn state(&self) -> Result<NativeState> {
        let s = self.mutex()?.state();
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
    }

    /// The file was deleted or replaced at its path.
    #[napi]
    pub fn is_stale(&self) -> Result<bool> {
        Ok(self.mutex()?.is_stale())
    }

    /// Closes the handle; EBUSY while one of its guards is unreleased or a wait is pending.
    #[napi]
    pub fn close(&mut self, env: Env) -> Result<()> {
        if self.mutex.is_none() {
            return Ok(());
        }
        if self.shared.held.load(Ordering::Acquire) > 0 {
            return Err(coded("EBUSY", "a lock guard of this handle is still held; release it first"));
        }
        if self.shared.has_pending() {
            return Err(coded("EBUSY", "a lock() of this handle is still pending"));
        }
        self.shared.shutdown();
        if let Some(hook) = self.cleanup.take() {
            env.remove_env_cleanup_hook(hook)?;
        }
        if let Some(mutex) = self.mutex.take() {
            mutex.close().map_err(to_napi)?;
        }
        Ok(())
    }
}

impl Drop for NativeMutex {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

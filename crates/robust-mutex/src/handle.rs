//! `SharedMutex`: the public handle, the same on every platform. What it does is the per-OS
//! backend's (`crate::backend::Inner`): on Linux the robust pthread mutex in `mutex.rs`,
//! elsewhere `sys/unsupported.rs`, whose constructors fail with `Error::Unsupported`.

use std::fmt;
#[cfg(unix)]
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::Inner;
use crate::cancel::CancelToken;
use crate::error::Error;
use crate::guard::{Acquisition, MutexGuard, OwnedMutexGuard};
use crate::options::OpenOptions;
use crate::state::MutexState;

/// Longest single futex wait. Every wait is a series of slices so that deadlines, cancellation
/// and poisoning are noticed within one slice, and so that no lost wake-up (of the C library or
/// an old kernel) can block a waiter for longer than this.
#[cfg_attr(not(supported), allow(dead_code))]
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// A cross-process mutex whose holder can die without leaving it locked.
///
/// The lock is a robust, process-shared, error-checking `pthread_mutex_t` in a one-page file
/// (or an anonymous memfd). Every process that opens the same file shares the lock; when a holder
/// dies, the next acquirer gets the lock at once and [`MutexGuard::owner_died`] tells it that the
/// protected state may be half-updated.
///
/// Handles are cheap to clone, and every handle to one file in a process shares one mapping.
///
/// ```
/// use robust_mutex::SharedMutex;
///
/// let path = std::env::temp_dir().join(format!("rm-doc-shared-{}", std::process::id()));
/// let mutex = SharedMutex::open(&path)?;
/// {
///     let guard = mutex.lock()?;
///     if guard.owner_died() {
///         // repair what the previous holder left half-done, then let the guard drop
///     }
///     // critical section
/// } // unlocked here
/// # drop(mutex); SharedMutex::destroy(&path)?;
/// # Ok::<(), robust_mutex::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedMutex {
    pub(crate) inner: Arc<Inner>,
    /// The path this handle was opened from: its own, even when another handle of this process
    /// opened the same file through another name first.
    path: Option<Arc<Path>>,
}

impl SharedMutex {
    /// Opens the mutex file at `path`, creating it (mode `0600`) if it does not exist.
    ///
    /// Equivalent to `OpenOptions::new().open(path)`; see [`OpenOptions`] for the checks made
    /// and the errors returned.
    ///
    /// ```
    /// use robust_mutex::SharedMutex;
    /// let path = std::env::temp_dir().join(format!("rm-doc-open-{}", std::process::id()));
    /// let a = SharedMutex::open(&path)?;
    /// let b = SharedMutex::open(&path)?; // same file: same lock
    /// let _held = a.lock()?;
    /// assert!(b.state().locked);
    /// # drop(_held); drop((a, b)); SharedMutex::destroy(&path)?;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<SharedMutex, Error> {
        OpenOptions::new().open(path)
    }

    /// Creates a nameless mutex in a memfd. Child processes created with `fork()` share it, and
    /// so does any process given its descriptor ([`AsFd`]) and calling [`SharedMutex::from_fd`].
    ///
    /// ```
    /// use robust_mutex::SharedMutex;
    /// let mutex = SharedMutex::anonymous()?;
    /// assert!(mutex.path().is_none());
    /// drop(mutex.lock()?);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn anonymous() -> Result<SharedMutex, Error> {
        Ok(SharedMutex { inner: Inner::anonymous()?, path: None })
    }

    /// Opens the mutex behind a descriptor inherited from another process (an anonymous mutex's
    /// memfd, or an open mutex file). The descriptor is validated like a file; it is owned (and
    /// closed) by the returned handle.
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use robust_mutex::SharedMutex;
    /// let original = SharedMutex::anonymous()?;
    /// let fd = original.as_fd().try_clone_to_owned().unwrap(); // as a child would receive it
    /// let reopened = SharedMutex::from_fd(fd)?;
    /// let _held = original.lock()?;
    /// assert!(reopened.state().locked);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    #[cfg(unix)]
    pub fn from_fd(fd: OwnedFd) -> Result<SharedMutex, Error> {
        OpenOptions::new().from_fd(fd)
    }

    pub(crate) fn open_with(path: &Path, options: &OpenOptions) -> Result<SharedMutex, Error> {
        let inner = Inner::open(path, &options.policy).map_err(|e| e.at(Some(path)))?;
        Ok(SharedMutex { inner, path: Some(Arc::from(path)) })
    }

    #[cfg(unix)]
    pub(crate) fn from_fd_with(fd: OwnedFd, options: &OpenOptions) -> Result<SharedMutex, Error> {
        Ok(SharedMutex { inner: Inner::from_fd(fd, &options.policy)?, path: None })
    }

    /// The bounds of a wait by this handle.
    fn wait_bounds<'a>(&'a self, deadline: Option<Instant>, cancel: Option<&'a CancelToken>) -> Wait<'a> {
        Wait { deadline, cancel, purpose: Purpose::Acquire, path: self.path() }
    }

    /// Fills in this handle's path in an error raised below the layer that knows it.
    #[cold]
    pub(crate) fn located(&self, err: Error) -> Error {
        err.at(self.path())
    }

    /// An acquisition of any flavour, its errors located.
    #[inline]
    pub(crate) fn acquire(
        &self,
        deadline: Option<Instant>,
        cancel: Option<&CancelToken>,
    ) -> Result<Acquisition, Error> {
        self.inner.acquire(&self.wait_bounds(deadline, cancel)).map_err(|e| self.located(e))
    }

    /// A non-blocking acquisition, its errors located.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Result<Option<Acquisition>, Error> {
        self.inner.try_acquire().map_err(|e| self.located(e))
    }

    /// Blocks until the lock is acquired.
    ///
    /// Waits in slices of at most 100 ms, so a poisoned mutex is noticed even while waiting.
    /// Errors: [`Error::Deadlock`] if this thread already holds it, [`Error::NotRecoverable`] if
    /// it is poisoned (or a pthread user outside this library left it unrecoverable), and
    /// [`Error::Stale`] if it was retired by [`destroy`](Self::destroy) (checked on every
    /// acquire).
    ///
    /// A file deleted or replaced at its path by other means is noticed only while waiting
    /// (between slices): an uncontended acquire does not look at the path, since that would
    /// cost a system call per lock. Check [`is_stale`](Self::is_stale) where that matters.
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let guard = mutex.lock()?;
    /// assert!(!guard.owner_died());
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    #[inline]
    pub fn lock(&self) -> Result<MutexGuard<'_>, Error> {
        self.acquire(None, None).map(|acq| MutexGuard::new(self, acq))
    }

    /// Acquires the lock if nobody holds it; `Ok(None)` if someone else does.
    ///
    /// Like every acquire, it can return a guard whose holder died: then the lock *is* yours.
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let first = mutex.try_lock()?.expect("free");
    /// let other = std::thread::scope(|s| s.spawn(|| mutex.try_lock().map(|g| g.is_some())).join().unwrap())?;
    /// assert!(!other, "held by the first guard");
    /// # drop(first);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    #[inline]
    pub fn try_lock(&self) -> Result<Option<MutexGuard<'_>>, Error> {
        self.try_acquire().map(|acq| acq.map(|acq| MutexGuard::new(self, acq)))
    }

    /// Waits at most `timeout`, then fails with [`Error::Timeout`].
    ///
    /// ```
    /// use std::time::Duration;
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let guard = mutex.lock_timeout(Duration::from_secs(5))?;
    /// # drop(guard);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_>, Error> {
        let deadline = Instant::now().checked_add(timeout);
        self.acquire(deadline, None).map(|acq| MutexGuard::new(self, acq))
    }

    /// Waits until `deadline` (then [`Error::Timeout`]; `None` waits without a time limit) or
    /// until `cancel` is cancelled (then [`Error::Cancelled`], noticed within one 100 ms slice).
    /// `deadline` is an `Instant` or an `Option<Instant>`.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use robust_mutex::CancelToken;
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let cancel = CancelToken::new();
    /// let guard = mutex.lock_until(Instant::now() + Duration::from_secs(1), &cancel)?;
    /// # drop(guard);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn lock_until(
        &self,
        deadline: impl Into<Option<Instant>>,
        cancel: &CancelToken,
    ) -> Result<MutexGuard<'_>, Error> {
        self.acquire(deadline.into(), Some(cancel)).map(|acq| MutexGuard::new(self, acq))
    }

    /// [`lock`](Self::lock) returning a guard that owns a handle instead of borrowing one, for
    /// code (such as language bindings) that must store the guard.
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let guard = mutex.lock_owned()?;
    /// drop(mutex);
    /// guard.release()?; // the guard kept the mapping alive
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn lock_owned(&self) -> Result<OwnedMutexGuard, Error> {
        self.acquire(None, None).map(|acq| OwnedMutexGuard::new(self.clone(), acq))
    }

    /// [`lock_timeout`](Self::lock_timeout) returning an [`OwnedMutexGuard`].
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let guard = mutex.lock_timeout_owned(std::time::Duration::from_secs(1))?;
    /// # drop(guard);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn lock_timeout_owned(&self, timeout: Duration) -> Result<OwnedMutexGuard, Error> {
        let deadline = Instant::now().checked_add(timeout);
        self.acquire(deadline, None).map(|acq| OwnedMutexGuard::new(self.clone(), acq))
    }

    /// [`try_lock`](Self::try_lock) returning a guard that owns a handle instead of borrowing
    /// one, for code (such as language bindings) that must store the guard.
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let guard = mutex.try_lock_owned()?.expect("free");
    /// drop(mutex);
    /// guard.release()?; // the guard kept the mapping alive
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn try_lock_owned(&self) -> Result<Option<OwnedMutexGuard>, Error> {
        Ok(self.try_acquire()?.map(|acq| OwnedMutexGuard::new(self.clone(), acq)))
    }

    /// [`lock_until`](Self::lock_until) returning an [`OwnedMutexGuard`]; `deadline: None`
    /// waits without a time limit. `deadline` is an `Instant` or an `Option<Instant>`.
    ///
    /// ```
    /// use robust_mutex::CancelToken;
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let guard = mutex.lock_until_owned(None, &CancelToken::new())?;
    /// # drop(guard);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn lock_until_owned(
        &self,
        deadline: impl Into<Option<Instant>>,
        cancel: &CancelToken,
    ) -> Result<OwnedMutexGuard, Error> {
        self.acquire(deadline.into(), Some(cancel)).map(|acq| OwnedMutexGuard::new(self.clone(), acq))
    }

    /// A snapshot of the lock and its diagnostics. Cheap (no syscall) and never blocks.
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let guard = mutex.lock()?;
    /// let state = mutex.state();
    /// assert!(state.locked);
    /// assert_eq!(state.owner.unwrap().pid, std::process::id() as i32);
    /// # drop(guard);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn state(&self) -> MutexState {
        self.inner.state()
    }

    /// True when this handle's file was deleted or replaced at its path: other processes that
    /// open the path now get another lock. Anonymous mutexes are never stale.
    ///
    /// ```
    /// use robust_mutex::SharedMutex;
    /// let path = std::env::temp_dir().join(format!("rm-doc-stale-{}", std::process::id()));
    /// let mutex = SharedMutex::open(&path)?;
    /// assert!(!mutex.is_stale());
    /// std::fs::remove_file(&path).unwrap();
    /// assert!(mutex.is_stale());
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn is_stale(&self) -> bool {
        self.inner.is_stale(self.path())
    }

    /// The path this handle was opened from (its own, even when another handle of this process
    /// opened the same file through another name); `None` for anonymous and inherited mutexes.
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// assert_eq!(mutex.path(), None);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Closes this handle. Other handles to the same file keep working; the mapping goes away
    /// with the last one. Fails with [`Error::Busy`] (and keeps the mapping, so the kernel can
    /// still report an abandoned lock) if this is the last handle and a thread of this process
    /// still holds the lock through a leaked guard.
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// mutex.close()?;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn close(self) -> Result<(), Error> {
        let last = Arc::strong_count(&self.inner) == 1;
        let held_here = self.inner.held_by_this_process();
        drop(self);
        if last && held_here {
            Err(Error::Busy { path: None })
        } else {
            Ok(())
        }
    }
}

#[cfg(unix)]
impl AsFd for SharedMutex {
    /// The descriptor of the mutex file or memfd, to pass to child processes.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd()
    }
}

impl fmt::Debug for SharedMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMutex")
            .field("path", &self.path)
            .field("dev_ino", &self.inner.key())
            .finish_non_exhaustive()
    }
}

/// What a wait is for, which decides the header states that end it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(supported), allow(dead_code))]
pub(crate) enum Purpose {
    /// A user's acquire: a POISONED mutex ends it with `NotRecoverable`.
    Acquire,
    /// An administrative acquire (`reset`): it waits through POISONED, which it is there to clear.
    Admin,
}

/// The bounds of one wait: everything the between-slice checks need.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(supported), allow(dead_code))]
pub(crate) struct Wait<'a> {
    pub deadline: Option<Instant>,
    pub cancel: Option<&'a CancelToken>,
    pub purpose: Purpose,
    /// The path the waiting handle was opened from, for the stale check and error reports.
    pub path: Option<&'a Path>,
}

/// What a backend reads before each slice: its header's state, and whether its file is stale.
#[cfg_attr(not(supported), allow(dead_code))]
pub(crate) struct SliceCheck {
    pub poisoned: bool,
    pub retired: bool,
}

#[cfg_attr(not(supported), allow(dead_code))]
impl Wait<'_> {
    /// The checks every backend makes before each slice, in this order: cancellation, a poisoned
    /// mutex (unless this is an administrative wait), a retired or stale file, the deadline.
    /// Returns the length of the next slice.
    pub(crate) fn next_slice(&self, check: SliceCheck, stale: impl FnOnce() -> bool) -> Result<Duration, Error> {
        if self.cancel.is_some_and(CancelToken::is_cancelled) {
            return Err(Error::Cancelled);
        }
        if check.poisoned && self.purpose == Purpose::Acquire {
            return Err(Error::NotRecoverable);
        }
        if check.retired || stale() {
            return Err(Error::Stale { path: self.path.map(Path::to_path_buf) });
        }
        match self.deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Ok(left.min(SLICE)),
                _ => Err(Error::Timeout),
            },
            None => Ok(SLICE),
        }
    }
}

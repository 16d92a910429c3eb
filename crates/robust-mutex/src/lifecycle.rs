//! Administration, the public side: retiring a mutex file (`destroy`) and clearing poison
//! (`reset`). The protocols are the backend's (`admin.rs` on Linux).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::backend::Inner;
use crate::error::Error;
use crate::handle::SharedMutex;

impl SharedMutex {
    /// How long [`reset`](Self::reset) and [`reset_poison`](Self::reset_poison) wait at most.
    pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

    /// Retires the mutex file at `path` and removes it.
    ///
    /// Fails with [`Error::Busy`] while any handle (in any process, this one included) has the
    /// file open, or while a program outside this library holds the lock. (The file-lock
    /// backend, on macOS and FreeBSD, refuses only while the lock is held; handles still open
    /// get [`Error::Stale`] on their next acquire.) A file that is not a mutex file is refused
    /// ([`Error::BadMutex`]) and left in place. Processes that open the path afterwards create a
    /// fresh mutex.
    ///
    /// ```
    /// use robust_mutex::SharedMutex;
    /// let path = std::env::temp_dir().join(format!("rm-doc-destroy-{}", std::process::id()));
    /// let mutex = SharedMutex::open(&path)?;
    /// let held = mutex.lock()?;
    /// assert_eq!(SharedMutex::destroy(&path).unwrap_err().code(), "EBUSY");
    /// drop(held);
    /// drop(mutex);
    /// SharedMutex::destroy(&path)?;
    /// assert!(!path.exists());
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn destroy(path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        Inner::destroy(path).map_err(|e| e.at(Some(path)))
    }

    /// Clears the POISONED state of the mutex file at `path` (after the protected state was
    /// repaired by hand) and bumps its generation, waiting at most [`ADMIN_TIMEOUT`](Self::ADMIN_TIMEOUT) (see
    /// [`reset_timeout`](Self::reset_timeout)).
    ///
    /// ```
    /// use robust_mutex::SharedMutex;
    /// let path = std::env::temp_dir().join(format!("rm-doc-reset-{}", std::process::id()));
    /// let mutex = SharedMutex::open(&path)?;
    /// let mut guard = mutex.lock()?;
    /// guard.poison();
    /// drop(guard);
    /// assert_eq!(mutex.lock().unwrap_err().code(), "ENOTRECOVERABLE");
    /// SharedMutex::reset(&path)?;
    /// drop(mutex.lock()?);
    /// # drop(mutex); SharedMutex::destroy(&path)?;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn reset(path: impl AsRef<Path>) -> Result<(), Error> {
        SharedMutex::reset_timeout(path, SharedMutex::ADMIN_TIMEOUT)
    }

    /// [`reset`](Self::reset), waiting at most `timeout` (then [`Error::Timeout`]).
    ///
    /// Reset clears poison only: a mutex whose last holder died stays abandoned, and its next
    /// acquirer is told that its owner died.
    ///
    /// - When nobody has the file open (no handle in any process), the mutex is re-initialised
    ///   in place, whatever its lock word holds: this also recovers a pthread mutex that a C
    ///   user left unrecoverable (`EOWNERDEAD` then unlock without `pthread_mutex_consistent`),
    ///   or one whose holder vanished without the kernel noticing.
    /// - Otherwise it waits for the lock like an acquire (but through the poison) and clears the
    ///   poison under it. A pthread-level unrecoverable mutex cannot be repaired while it is in
    ///   use: reset then waits, until `timeout`, for the other users to close it, and fails with
    ///   [`Error::NotRecoverable`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use robust_mutex::SharedMutex;
    /// let path = std::env::temp_dir().join(format!("rm-doc-reset-t-{}", std::process::id()));
    /// let mutex = SharedMutex::open(&path)?;
    /// let held = mutex.lock()?;
    /// let other = std::thread::scope(|s| {
    ///     s.spawn(|| SharedMutex::reset_timeout(&path, Duration::from_millis(50))).join().unwrap()
    /// });
    /// assert_eq!(other.unwrap_err().code(), "ETIMEDOUT");
    /// # drop(held); drop(mutex); SharedMutex::destroy(&path)?;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn reset_timeout(path: impl AsRef<Path>, timeout: Duration) -> Result<(), Error> {
        let path = path.as_ref();
        Inner::reset(path, deadline_after(timeout)).map_err(|e| e.at(Some(path)))
    }

    /// [`reset`](Self::reset) through an open handle (the only way for anonymous mutexes),
    /// waiting at most [`ADMIN_TIMEOUT`](Self::ADMIN_TIMEOUT). Since this handle has the file open, a pthread-level
    /// unrecoverable mutex cannot be re-initialised here: that fails with
    /// [`Error::NotRecoverable`] (close every handle, then [`reset`](Self::reset) by path).
    ///
    /// ```
    /// let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let generation = mutex.state().generation;
    /// mutex.reset_poison()?;
    /// assert_eq!(mutex.state().generation, generation + 1);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn reset_poison(&self) -> Result<(), Error> {
        self.reset_poison_timeout(SharedMutex::ADMIN_TIMEOUT)
    }

    /// [`reset_poison`](Self::reset_poison), waiting at most `timeout` (then
    /// [`Error::Timeout`]).
    ///
    /// ```
    /// let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// mutex.reset_poison_timeout(std::time::Duration::from_secs(1))?;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn reset_poison_timeout(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = deadline_after(timeout);
        self.inner.reset_poison(deadline, self.path()).map_err(|e| e.at(self.path()))
    }
}

/// `timeout` from now; a timeout too long for an `Instant` (`Duration::MAX`) waits a century.
fn deadline_after(timeout: Duration) -> Instant {
    Instant::now() + timeout.min(CENTURY)
}

const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);

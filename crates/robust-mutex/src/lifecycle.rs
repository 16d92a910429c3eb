//! Administration: retiring a mutex file (`destroy`) and clearing poison (`reset`).

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::sys::stat::Mode;

use crate::error::Error;
use crate::header::State;
use crate::mapping::Mapping;
use crate::mutex::SharedMutex;
use crate::options::OpenOptions;
use crate::sys::{self, FileLock};

impl SharedMutex {
    /// How long [`reset`](Self::reset) and [`reset_poison`](Self::reset_poison) wait at most.
    pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

    /// Retires the mutex file at `path` and removes it.
    ///
    /// Fails with [`Error::Busy`] while any handle (in any process, this one included) has the
    /// file open, or while a program outside this library holds the lock. A file that is not a
    /// mutex file is refused ([`Error::BadMutex`]) and left in place. Processes that open the
    /// path afterwards create a fresh mutex.
    ///
    /// ```
    /// use robust_mutex::SharedMutex;
    /// let path = std::env::temp_dir().join(format!("rm-doc-destroy-{}", std::process::id()));
    /// let mutex = SharedMutex::open(&path)?;
    /// assert_eq!(SharedMutex::destroy(&path).unwrap_err().code(), "EBUSY");
    /// drop(mutex);
    /// SharedMutex::destroy(&path)?;
    /// assert!(!path.exists());
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn destroy(path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        destroy_at(path).map_err(|e| e.at(Some(path)))
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
        SharedMutex::reset_timeout(path, ADMIN_TIMEOUT)
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
        let deadline = Instant::now().checked_add(timeout).unwrap_or_else(far_future);
        reset_at(path, deadline).map_err(|e| e.at(Some(path)))
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
        self.reset_poison_timeout(ADMIN_TIMEOUT)
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
        let deadline = Instant::now().checked_add(timeout).unwrap_or_else(far_future);
        self.inner
            .with_admin_lock(deadline, self.path(), |header, owner_died| {
                // Keep an owner death for the next acquirer: the one the admin acquire met, one
                // refused while poisoned, or one already handed on.
                let pending = header.pending_owner_death.swap(0, Ordering::Relaxed) != 0;
                let abandoned = owner_died || pending || header.state() == Some(State::Abandoned);
                let state = if abandoned { State::Abandoned } else { State::Ready };
                header.state.store(state as u32, Ordering::Release);
                header.generation.fetch_add(1, Ordering::Relaxed);
            })
            .map_err(|e| e.at(self.path()))
    }
}

const ADMIN_TIMEOUT: Duration = SharedMutex::ADMIN_TIMEOUT;

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

fn reset_at(path: &Path, deadline: Instant) -> Result<(), Error> {
    let ours = crate::mutex::identity();
    // Unused: re-initialise, whatever the lock word holds.
    if let Some(result) = reset_exclusively(path, &ours)? {
        return result;
    }
    // In use: clear the poison under the lock.
    let mutex = OpenOptions::new().create(false).open(path)?;
    let timeout = deadline.saturating_duration_since(Instant::now());
    match mutex.reset_poison_timeout(timeout) {
        Err(Error::NotRecoverable) => {}
        other => return other,
    }
    // Unrecoverable at the pthread level: only a re-initialisation repairs it, once the other
    // users are gone.
    drop(mutex);
    loop {
        if let Some(result) = reset_exclusively(path, &ours)? {
            return result;
        }
        if Instant::now() >= deadline {
            return Err(Error::NotRecoverable);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Re-initialises the file at `path` if nobody has it open; `None` when somebody does.
fn reset_exclusively(path: &Path, ours: &crate::header::Identity) -> Result<Option<Result<(), Error>>, Error> {
    let fd = open_for_admin(path)?;
    let verdict = crate::file::check_ours(fd.as_fd(), &OpenOptions::new().policy, ours)?;
    if verdict.state == State::Tombstone {
        return Err(Error::Stale { path: None });
    }
    if !sys::flock(fd.as_fd(), FileLock::Exclusive, false)? {
        return Ok(None);
    }
    // The exclusive flock goes with the descriptor.
    Ok(Some(crate::file::reinitialise(fd.as_fd(), ours, crate::file::Reinit::Reset)))
}

fn open_for_admin(path: &Path) -> Result<OwnedFd, Error> {
    let flags = OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    fcntl::open(path, flags, Mode::empty()).map_err(|errno| match errno {
        Errno::ELOOP => Error::Insecure { path: None, reason: "the path is a symbolic link".into() },
        errno => Error::os("open", None, errno),
    })
}

/// How often (5 ms apart) `destroy` asks for exclusive use before answering EBUSY.
const DESTROY_ATTEMPTS: usize = 20;

fn destroy_at(path: &Path) -> Result<(), Error> {
    let fd = open_for_admin(path)?;
    let fd = fd.as_fd();
    crate::file::check_ours(fd, &OpenOptions::new().policy, &crate::mutex::identity())?;
    // A child being spawned by any thread of a user process shares that process's descriptors
    // (and their flock) between fork and exec: retry briefly before calling the file busy.
    let mut exclusive = false;
    for _ in 0..DESTROY_ATTEMPTS {
        if sys::flock(fd, FileLock::Exclusive, false)? {
            exclusive = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if !exclusive {
        return Err(Error::Busy { path: None });
    }
    let map = Mapping::new(fd)?;
    let raw = map.raw_mutex();
    match raw.try_lock() {
        Ok(Some(how)) => {
            map.header().state.store(State::Tombstone as u32, Ordering::Release);
            // SAFETY: acquired just above on this thread; consistent exactly after EOWNERDEAD.
            if let Err(e) = unsafe { raw.unlock(how == crate::raw::Acquired::OwnerDied) } {
                // Still ours, so glibc's robust list may point into the page: unmapping it would
                // let glibc write into whatever is mapped there later. Keep it.
                map.leak();
                return Err(Error::os("pthread_mutex_unlock", None, e));
            }
        }
        // Unusable by anyone, and nobody has it open: retire it as it is.
        Err(Errno::ENOTRECOVERABLE) => map.header().state.store(State::Tombstone as u32, Ordering::Release),
        Ok(None) => return Err(Error::Busy { path: None }),
        Err(e) => return Err(Error::os("pthread_mutex_trylock", None, e)),
    }
    drop(map);
    // Unlink only the inode we retired, not a file someone put at the path meanwhile.
    let ours = sys::fstat(fd)?;
    match nix::sys::stat::stat(path) {
        Ok(now) if (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino) => {
            nix::unistd::unlink(path).map_err(|e| Error::os("unlink", None, e))
        }
        _ => Ok(()),
    }
}

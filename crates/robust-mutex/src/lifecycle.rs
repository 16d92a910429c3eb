//! Administration: retiring a mutex file (`destroy`) and clearing poison (`reset`).

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::Ordering;

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
    /// repaired by hand) and bumps its generation. Waits for the lock like [`lock`](Self::lock).
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
        OpenOptions::new().create(false).open(path)?.reset_poison()
    }

    /// [`reset`](Self::reset) through an open handle (the only way for anonymous mutexes).
    ///
    /// ```
    /// let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let generation = mutex.state().generation;
    /// mutex.reset_poison()?;
    /// assert_eq!(mutex.state().generation, generation + 1);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn reset_poison(&self) -> Result<(), Error> {
        self.reset_until(None)
    }

    /// [`reset_poison`](Self::reset_poison) waiting for the lock at most until `deadline`
    /// (then [`Error::Timeout`]); [`Error::Deadlock`] if this thread holds it.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let held = mutex.lock()?;
    /// let other = std::thread::scope(|s| {
    ///     s.spawn(|| mutex.reset_until(Some(Instant::now() + Duration::from_millis(50)))).join().unwrap()
    /// });
    /// assert_eq!(other.unwrap_err().code(), "ETIMEDOUT");
    /// # drop(held);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn reset_until(&self, deadline: Option<std::time::Instant>) -> Result<(), Error> {
        self.inner.with_admin_lock(deadline, |header| {
            let _ = header.state.compare_exchange(
                State::Poisoned as u32,
                State::Ready as u32,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            header.generation.fetch_add(1, Ordering::Relaxed);
        })
    }
}

/// How often (5 ms apart) `destroy` asks for exclusive use before answering EBUSY.
const DESTROY_ATTEMPTS: usize = 20;

fn destroy_at(path: &Path) -> Result<(), Error> {
    let flags = OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    let fd = fcntl::open(path, flags, Mode::empty()).map_err(|errno| match errno {
        Errno::ELOOP => Error::Insecure { path: None, reason: "the path is a symbolic link".into() },
        errno => Error::os("open", None, errno),
    })?;
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
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if !exclusive {
        return Err(Error::Busy { path: None });
    }
    let map = Mapping::new(fd)?;
    let raw = map.raw_mutex();
    let how = raw.try_lock().map_err(|e| Error::os("pthread_mutex_trylock", None, e))?;
    let Some(how) = how else { return Err(Error::Busy { path: None }) };
    map.header().state.store(State::Tombstone as u32, Ordering::Release);
    // SAFETY: acquired just above on this thread.
    unsafe { raw.unlock(how == crate::raw::Acquired::OwnerDied) }
        .map_err(|e| Error::os("pthread_mutex_unlock", None, e))?;
    // Unlink only the inode we retired, not a file someone put at the path meanwhile.
    let ours = sys::fstat(fd)?;
    match nix::sys::stat::stat(path) {
        Ok(now) if (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino) => {
            nix::unistd::unlink(path).map_err(|e| Error::os("unlink", None, e))
        }
        _ => Ok(()),
    }
}

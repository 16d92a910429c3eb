//! Administration on Linux: the protocols behind `destroy` and `reset`.

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
use crate::mutex::Inner;
use crate::options::OpenOptions;
use crate::sys::{self, FileLock};

impl Inner {
    /// `destroy`: retire the file and unlink it, if nobody uses it.
    pub(crate) fn destroy(path: &Path) -> Result<(), Error> {
        destroy_at(path)
    }

    /// `reset` by path: re-initialise when unused, else clear the poison under the lock.
    pub(crate) fn reset(path: &Path, deadline: Instant) -> Result<(), Error> {
        reset_at(path, deadline)
    }

    /// `reset_poison`: clear the poison under the lock, handing an owner death on.
    pub(crate) fn reset_poison(&self, deadline: Instant, path: Option<&Path>) -> Result<(), Error> {
        self.with_admin_lock(deadline, path, |header, owner_died| {
            // Keep an owner death for the next acquirer: the one the admin acquire met, one
            // refused while poisoned, or one already handed on.
            let pending = header.pending_owner_death.swap(0, Ordering::Relaxed) != 0;
            let abandoned = owner_died || pending || header.state() == Some(State::Abandoned);
            let state = if abandoned { State::Abandoned } else { State::Ready };
            header.state.store(state as u32, Ordering::Release);
            header.generation.fetch_add(1, Ordering::Relaxed);
            crate::fencing::raise(&header.fencing_token);
        })
    }
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
    crate::file::pause_for_tests("ROBUST_MUTEX_TEST_PAUSE_BEFORE_UNLINK");
    // Unlink only the inode we retired, not a file someone put at the path meanwhile.
    let ours = sys::fstat(fd)?;
    match nix::sys::stat::stat(path) {
        Ok(now) if (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino) => {
            nix::unistd::unlink(path).map_err(|e| Error::os("unlink", None, e))
        }
        _ => Ok(()),
    }
}

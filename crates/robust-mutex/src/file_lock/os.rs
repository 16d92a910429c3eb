//! The per-OS primitives of the file-lock backend: the cross-process lock that dies with its
//! holder, and the ids a holder records.
//!
//! - Linux: an open-file-description (OFD) write lock on one byte (`F_OFD_SETLK`). Like `flock`
//!   it belongs to the open file description, not to the process, so closing another descriptor
//!   of the same file does not drop it (the trap of classic `fcntl` locks).
//! - macOS, FreeBSD and other Unixes: `flock(LOCK_EX)`, also per open file description.
//!
//! Both are non-blocking here: waiting is the caller's (sliced, with a deadline).
//!
//! `--cfg robust_mutex_flock` (RUSTFLAGS, testing only) selects `flock` on Linux too, so that
//! the macOS/FreeBSD code path runs in the Linux test suite.

use std::cell::Cell;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

use nix::errno::Errno;

use crate::error::Error;

/// Takes the lock on `fd`'s open file description if nobody else holds it: `Ok(false)` when
/// another open file description (another process, or a destroy in progress) holds it.
pub(crate) fn try_lock(fd: BorrowedFd<'_>) -> Result<bool, Error> {
    imp::set(fd, true)
}

/// Releases the lock held through `fd`.
pub(crate) fn unlock(fd: BorrowedFd<'_>) -> Result<(), Error> {
    imp::set(fd, false).map(drop)
}

/// Whether another open file description holds the lock. The caller must not hold it through
/// `fd` (on flock systems the probe briefly takes it).
pub(crate) fn held_elsewhere(fd: BorrowedFd<'_>) -> Result<bool, Error> {
    imp::held_elsewhere(fd)
}

/// The name of the primitive, for diagnostics.
#[allow(dead_code)]
pub(crate) const PRIMITIVE: &str = imp::NAME;

#[cfg(all(target_os = "linux", not(robust_mutex_flock)))]
mod imp {
    use super::*;

    pub(super) const NAME: &str = "fcntl(F_OFD_SETLK)";

    fn range(kind: libc::c_int) -> libc::flock {
        // SAFETY: an all-zero flock struct is a valid value (l_pid must be 0 for OFD locks).
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = kind as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        lock.l_start = 0;
        lock.l_len = 1;
        lock
    }

    pub(super) fn set(fd: BorrowedFd<'_>, lock: bool) -> Result<bool, Error> {
        let request = range(if lock { libc::F_WRLCK } else { libc::F_UNLCK });
        loop {
            // SAFETY: F_OFD_SETLK reads a valid flock struct, which `request` is; the fd is
            // borrowed, hence open.
            let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &request) };
            if rc == 0 {
                return Ok(true);
            }
            match Errno::last() {
                Errno::EINTR => continue,
                Errno::EAGAIN | Errno::EACCES if lock => return Ok(false),
                e => return Err(Error::os("fcntl(F_OFD_SETLK)", None, e)),
            }
        }
    }

    pub(super) fn held_elsewhere(fd: BorrowedFd<'_>) -> Result<bool, Error> {
        let mut query = range(libc::F_WRLCK);
        // SAFETY: F_OFD_GETLK reads and writes a valid flock struct, which `query` is.
        let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut query) };
        if rc != 0 {
            return Err(Error::os("fcntl(F_OFD_GETLK)", None, Errno::last()));
        }
        Ok(query.l_type != libc::F_UNLCK as libc::c_short)
    }
}

#[cfg(any(not(target_os = "linux"), robust_mutex_flock))]
mod imp {
    use super::*;

    pub(super) const NAME: &str = "flock(LOCK_EX)";

    pub(super) fn set(fd: BorrowedFd<'_>, lock: bool) -> Result<bool, Error> {
        let op = if lock { libc::LOCK_EX | libc::LOCK_NB } else { libc::LOCK_UN };
        loop {
            // SAFETY: flock only takes an fd and flags; the fd is borrowed, hence open.
            let rc = unsafe { libc::flock(fd.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(true);
            }
            match Errno::last() {
                Errno::EINTR => continue,
                Errno::EWOULDBLOCK if lock => return Ok(false),
                e => return Err(Error::os("flock", None, e)),
            }
        }
    }

    /// flock has no query: try, and give it back at once.
    pub(super) fn held_elsewhere(fd: BorrowedFd<'_>) -> Result<bool, Error> {
        if set(fd, true)? {
            set(fd, false)?;
            Ok(false)
        } else {
            Ok(true)
        }
    }
}

static PID: AtomicI32 = AtomicI32::new(0);
static ATFORK: Once = Once::new();

extern "C" fn forget_pid_in_child() {
    PID.store(0, Ordering::Relaxed);
}

/// This process's id, cached (the C library no longer caches `getpid`, and every lock and
/// unlock asks: that was two of the four system calls of a pair). A `fork()` child forgets the
/// parent's value in an atfork handler, registered before the first value is cached.
#[inline]
pub(crate) fn pid() -> i32 {
    let cached = PID.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    ATFORK.call_once(|| {
        // SAFETY: registers a plain extern "C" function with no captured state; it only stores
        // to an atomic, which is safe in the child of a fork.
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid_in_child)) };
    });
    let pid = std::process::id() as i32;
    PID.store(pid, Ordering::Relaxed);
    pid
}

thread_local! {
    static TID: Cell<i32> = const { Cell::new(0) };
}

/// The calling thread's system-wide id (diagnostics only: exclusion never depends on it),
/// cached per thread.
#[inline]
pub(crate) fn tid() -> i32 {
    TID.with(|t| {
        if t.get() == 0 {
            t.set(os_tid());
        }
        t.get()
    })
}

#[cfg(target_os = "linux")]
fn os_tid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

#[cfg(target_vendor = "apple")]
fn os_tid() -> i32 {
    let mut id: u64 = 0;
    // SAFETY: a null thread means the calling thread; `id` is a valid place for the result.
    unsafe { libc::pthread_threadid_np(0, &mut id) };
    id as i32
}

#[cfg(target_os = "freebsd")]
fn os_tid() -> i32 {
    // SAFETY: returns the calling thread's id; no arguments, cannot fail.
    unsafe { libc::pthread_getthreadid_np() }
}

#[cfg(not(any(target_os = "linux", target_vendor = "apple", target_os = "freebsd")))]
fn os_tid() -> i32 {
    0
}

/// Wall-clock time in nanoseconds since the epoch (0 if the clock is before it).
pub(crate) fn realtime_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

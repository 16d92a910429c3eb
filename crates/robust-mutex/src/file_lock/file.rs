//! Creating, opening and validating the file-lock backend's files, on any Unix.
//!
//! Creation builds the page privately under a unique temporary name in the same directory and
//! publishes it with `link(2)`, which never replaces a name: `EEXIST` means another process
//! published first, and its file is opened instead. A published file is always complete.
//! Validation reads the header with `pread` before anything is mapped or written; a file that is
//! not ours gets a typed error and is never modified.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::sys::stat::{fchmod, Mode};

use super::header::{self, State};
use super::os;
use crate::error::Error;
use crate::options::Policy;
use crate::page_file;

/// How many times `open` follows a race (a retired or just-deleted file) before giving up.
const MAX_OPEN_ROUNDS: usize = 64;

/// What an open descriptor was found to be.
pub(crate) enum Opened {
    /// A valid mutex file of this backend.
    Ready(OwnedFd),
    /// Retired by `destroy` (or unlinked meanwhile): look at the path again.
    Retired(OwnedFd),
}

fn open_flags() -> OFlag {
    OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK
}

/// Opens or creates the mutex file at `path`; the descriptor names a validated file.
pub(crate) fn open_path(path: &Path, policy: &Policy) -> Result<OwnedFd, Error> {
    for _ in 0..MAX_OPEN_ROUNDS {
        match fcntl::open(path, open_flags(), Mode::empty()) {
            Ok(fd) => match adopt(fd, policy, true)? {
                Opened::Ready(fd) => return Ok(fd),
                Opened::Retired(fd) => finish_retirement(path, fd.as_fd()),
            },
            Err(Errno::ENOENT) if policy.create => {
                page_file::refuse_insecure_mode(policy.mode)?;
                if let Some(fd) = create(path, policy)? {
                    return Ok(fd);
                }
            }
            Err(Errno::ELOOP) => return Err(symlink()),
            Err(errno) => return Err(Error::os("open", Some(path), errno)),
        }
    }
    Err(Error::Busy { path: Some(path.into()) })
}

/// A retired (TOMBSTONE) file still at its path means its `destroy` died before unlinking it.
/// Finish the job when nobody holds it, so that the next round creates a fresh mutex instead of
/// finding the tombstone again.
fn finish_retirement(path: &Path, fd: BorrowedFd<'_>) {
    let (Ok(ours), Ok(now)) = (fstat(fd), nix::sys::stat::stat(path)) else { return };
    if (ours.st_dev, ours.st_ino) != (now.st_dev, now.st_ino) || ours.st_nlink == 0 {
        return;
    }
    if let Ok(true) = os::try_lock(fd) {
        let _ = nix::unistd::unlink(path);
        let _ = os::unlock(fd);
    }
}

/// Test hook: when the environment variable `var` names a file, create it and wait until the
/// test removes it (at most 10 minutes), so that a test can act at exactly this point.
pub(crate) fn pause_for_tests(var: &str) {
    let Some(marker) = std::env::var_os(var) else { return };
    let marker = PathBuf::from(marker);
    if std::fs::write(&marker, b"paused").is_err() {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while marker.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Opens an existing file for administration (`destroy`).
pub(crate) fn open_existing(path: &Path) -> Result<OwnedFd, Error> {
    fcntl::open(path, open_flags(), Mode::empty()).map_err(|errno| match errno {
        Errno::ELOOP => symlink(),
        errno => Error::os("open", None, errno),
    })
}

fn symlink() -> Error {
    Error::Insecure {
        path: None,
        reason: "the path is a symbolic link; mutex files are never followed through links".into(),
    }
}

/// Validates an open file. `named`: it was opened by name, so an unlinked file is a race lost
/// to `destroy` (reopen the path), not an error.
pub(crate) fn adopt(fd: OwnedFd, policy: &Policy, named: bool) -> Result<Opened, Error> {
    let state = check_ours(fd.as_fd(), policy)?;
    if state == State::Tombstone || (named && fstat(fd.as_fd())?.st_nlink == 0) {
        return Ok(Opened::Retired(fd));
    }
    Ok(Opened::Ready(fd))
}

/// Checks, without writing, that `fd` is a mutex file of this backend that we may use.
pub(crate) fn check_ours(fd: BorrowedFd<'_>, policy: &Policy) -> Result<State, Error> {
    let st = fstat(fd)?;
    page_file::check_kind_and_owner(&st, policy)?;
    let page = page_file::read_page(fd)?;
    header::validate(&page, st.st_size as u64).map_err(|reason| Error::BadMutex { path: None, reason })
}

pub(crate) fn fstat(fd: BorrowedFd<'_>) -> Result<libc::stat, Error> {
    nix::sys::stat::fstat(fd).map_err(|e| Error::os("fstat", None, e))
}

/// Builds a complete mutex file privately and publishes it at `path`; `Ok(None)`: another
/// process published one first.
fn create(path: &Path, policy: &Policy) -> Result<Option<OwnedFd>, Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (fd, temp) = private_file(dir, policy.mode)?;
    let linked = nix::unistd::linkat(
        nix::fcntl::AT_FDCWD,
        temp.as_path(),
        nix::fcntl::AT_FDCWD,
        path,
        nix::fcntl::AtFlags::empty(),
    );
    let _ = nix::unistd::unlink(temp.as_path());
    match linked {
        Ok(()) => Ok(Some(fd)),
        Err(Errno::EEXIST) => Ok(None),
        Err(e) => Err(Error::os("link", Some(path), e)),
    }
}

/// A new, complete mutex file under a unique temporary name in `dir` (the caller links or
/// unlinks it).
pub(crate) fn private_file(dir: &Path, mode: u32) -> Result<(OwnedFd, PathBuf), Error> {
    let mode_bits = Mode::from_bits_truncate(mode as libc::mode_t);
    for attempt in 0u32..100 {
        let name = dir.join(format!(".robust-mutex.{}.{}.{attempt}.tmp", os::pid(), os::realtime_ns() % 1_000_000_007));
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
        let fd = match fcntl::open(name.as_path(), flags, mode_bits) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => continue,
            // No path: the caller's (the mutex's) is filled in above.
            Err(e) => return Err(Error::os("open(temporary file) in the directory", None, e)),
        };
        if let Err(e) = initialise(fd.as_fd(), mode) {
            let _ = nix::unistd::unlink(name.as_path());
            return Err(e);
        }
        return Ok((fd, name));
    }
    Err(Error::os("open(temporary file)", Some(dir), Errno::EEXIST))
}

/// Writes the whole page of a READY mutex (writing allocates it: no sparse page, no SIGBUS on
/// a full filesystem later).
fn initialise(fd: BorrowedFd<'_>, mode: u32) -> Result<(), Error> {
    // umask may have narrowed the mode given to open; the caller asked for exactly this one.
    fchmod(fd, Mode::from_bits_truncate(mode as libc::mode_t)).map_err(|e| Error::os("fchmod", None, e))?;
    let page = header::initial_page();
    let mut written = 0;
    while written < page.len() {
        match nix::sys::uio::pwrite(fd, &page[written..], written as libc::off_t) {
            Ok(0) => return Err(Error::os("write", None, Errno::ENOSPC)),
            Ok(n) => written += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("write", None, e)),
        }
    }
    Ok(())
}

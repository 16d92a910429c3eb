//! Creating and opening mutex files without races, polling or clobbering.
//!
//! 1. Open the path (`O_NOFOLLOW`). Found: take `flock(LOCK_SH)` (the live-user marker the
//!    kernel drops at exit), validate, done.
//! 2. Missing: build the file privately (`O_TMPFILE`, else a unique temporary name in the same
//!    directory), allocate its page, write the header, `pthread_mutex_init` in place, then
//!    `linkat` it to the final name. `link` never replaces a name, so `EEXIST` means another
//!    process won: open theirs. A published file is always complete.
//! 3. Validation reads the header with `pread` before anything is mapped or written; a file that
//!    is not ours gets a typed error and is never modified.
//! 4. A file from a previous boot (its lock word may name a thread of the old boot) is
//!    re-initialised in place, once, by whoever gets `flock(LOCK_EX)` while no live user exists.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, FallocateFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, Mode};

use crate::error::Error;
use crate::header::{self, Identity, Invalid, State, FILE_SIZE};
use crate::mapping::Mapping;
pub(crate) use crate::options::Policy;
use crate::page_file;
use crate::sys::{self, FileLock};

/// How many times `open` follows a race (a retired or just-deleted file) before giving up.
/// Each round only repeats after another process changed the path, so this is never reached in
/// practice; it turns a pathological churn into an error instead of a spin.
const MAX_OPEN_ROUNDS: usize = 64;

/// How long a post-reboot repair waits for another opener's repair to finish.
const REPAIR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How often (2 ms apart) a post-reboot repair asks for `LOCK_EX` before concluding that a live
/// user holds the file.
const REPAIR_ATTEMPTS: usize = 250;

/// Opens or creates the mutex file at `path`. The returned descriptor holds `flock(LOCK_SH)` and
/// names a validated, initialised file of this boot.
pub(crate) fn open_path(path: &Path, policy: &Policy, ours: &Identity) -> Result<OwnedFd, Error> {
    let flags = OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    for _ in 0..MAX_OPEN_ROUNDS {
        match fcntl::open(path, flags, Mode::empty()) {
            Ok(fd) => {
                if adopt(fd.as_fd(), policy, ours, true).map_err(|e| e.at(Some(path)))? {
                    return Ok(fd);
                }
                // Retired by `destroy` or unlinked meanwhile: look at the path again.
                finish_retirement(path, fd.as_fd());
            }
            Err(Errno::ENOENT) if policy.create => {
                page_file::refuse_insecure_mode(policy.mode).map_err(|e| e.at(Some(path)))?;
                if let Some(fd) = create(path, policy, ours).map_err(|e| e.at(Some(path)))? {
                    return Ok(fd);
                }
                // EEXIST: another process published first; open theirs.
            }
            Err(Errno::ELOOP) => {
                return Err(Error::Insecure {
                    path: Some(path.into()),
                    reason: "the path is a symbolic link; mutex files are never followed \
                             through links"
                        .into(),
                })
            }
            Err(errno) => return Err(Error::os("open", Some(path), errno)),
        }
    }
    Err(Error::Busy { path: Some(path.into()) })
}

/// A retired (TOMBSTONE) file still at its path means its `destroy` died before unlinking it.
/// Finish the job when nobody uses it, so that the next round creates a fresh mutex instead of
/// finding the tombstone again.
fn finish_retirement(path: &Path, fd: BorrowedFd<'_>) {
    let (Ok(ours), Ok(now)) = (sys::fstat(fd), nix::sys::stat::stat(path)) else { return };
    if (ours.st_dev, ours.st_ino) != (now.st_dev, now.st_ino) || ours.st_nlink == 0 {
        return;
    }
    // Our shared marker is dropped by the conversion; the descriptor is discarded anyway.
    if let Ok(true) = sys::flock(fd, FileLock::Exclusive, false) {
        let _ = nix::unistd::unlink(path);
    }
}

/// Takes the live-user marker on an open file and validates it. `Ok(false)`: the file was
/// retired (TOMBSTONE) or, for a file opened by name (`named`), unlinked meanwhile: the caller
/// should reopen the path.
pub(crate) fn adopt(fd: BorrowedFd<'_>, policy: &Policy, ours: &Identity, named: bool) -> Result<bool, Error> {
    check_file_kind(fd, policy)?;
    sys::flock(fd, FileLock::Shared, true)?;
    let verdict = check_ours(fd, policy, ours)?;
    if verdict.state == State::Tombstone {
        return Ok(false);
    }
    if !verdict.pid_namespace_matches && !policy.allow_foreign_pid_namespace {
        return Err(Error::ForeignPidNamespace { path: None });
    }
    if !verdict.boot_matches {
        reinitialise_after_reboot(fd, ours)?;
    }
    Ok(!named || sys::fstat(fd)?.st_nlink > 0)
}

/// Checks that an open file is a mutex file this process may use, without writing to it.
pub(crate) fn check_ours(fd: BorrowedFd<'_>, policy: &Policy, ours: &Identity) -> Result<header::Verdict, Error> {
    check_file_kind(fd, policy)?;
    read_verdict(fd, ours)
}

/// Refuses what must not be mapped or trusted, before reading a byte.
fn check_file_kind(fd: BorrowedFd<'_>, policy: &Policy) -> Result<(), Error> {
    page_file::check_kind_and_owner(&sys::fstat(fd)?, policy)?;
    if !policy.allow_network_filesystem {
        sys::check_filesystem(fd)?;
    }
    Ok(())
}

/// Reads and validates the header with `pread`: nothing is mapped or written yet.
fn read_verdict(fd: BorrowedFd<'_>, ours: &Identity) -> Result<header::Verdict, Error> {
    let len = sys::fstat(fd)?.st_size as u64;
    let page = page_file::read_page(fd)?;
    header::validate(&page, len, ours).map_err(|invalid| match invalid {
        Invalid::Bad(reason) => Error::BadMutex { path: None, reason },
        Invalid::Abi { found, expected } => Error::AbiMismatch { path: None, found, expected },
    })
}

/// Builds a complete mutex file privately and publishes it at `path`. `Ok(None)`: another
/// process published one first.
fn create(path: &Path, policy: &Policy, ours: &Identity) -> Result<Option<OwnedFd>, Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (fd, temp_name) = private_file(dir, policy.mode)?;
    let published = prepare_and_link(fd.as_fd(), temp_name.as_deref(), path, policy, ours);
    if let Some(temp) = &temp_name {
        let _ = nix::unistd::unlink(temp.as_path());
    }
    Ok(if published? { Some(fd) } else { None })
}

fn prepare_and_link(
    fd: BorrowedFd<'_>,
    temp_name: Option<&Path>,
    path: &Path,
    policy: &Policy,
    ours: &Identity,
) -> Result<bool, Error> {
    // umask may have narrowed the mode given to open; the caller asked for exactly this one.
    fchmod(fd, Mode::from_bits_truncate(policy.mode)).map_err(|e| Error::os("fchmod", None, e))?;
    if !policy.allow_network_filesystem {
        sys::check_filesystem(fd)?;
    }
    allocate_page(fd)?;
    initialise(fd, ours, 1)?;
    // Marked live before it is visible, so a concurrent `destroy` cannot retire it under us.
    sys::flock(fd, FileLock::Shared, true)?;
    let linked = match temp_name {
        Some(temp) => nix::unistd::linkat(AT_FDCWD, temp, AT_FDCWD, path, AtFlags::empty()),
        None => link_anonymous(fd, path),
    };
    match linked {
        Ok(()) => Ok(true),
        Err(Errno::EEXIST) => Ok(false),
        Err(e) => Err(Error::os("link", None, e)),
    }
}

/// An unnamed file in `dir` (`O_TMPFILE`) or, where the filesystem lacks it, a file with a
/// unique temporary name (returned so it can be removed after linking).
fn private_file(dir: &Path, mode: u32) -> Result<(OwnedFd, Option<PathBuf>), Error> {
    let mode_bits = Mode::from_bits_truncate(mode);
    match fcntl::open(dir, OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC, mode_bits) {
        Ok(fd) => return Ok((fd, None)),
        // Filesystems (and kernels) without O_TMPFILE answer one of these.
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => {}
        Err(e) => return Err(Error::os("open(O_TMPFILE) in the directory", None, e)),
    }
    for attempt in 0u32..100 {
        let name =
            dir.join(format!(".robust-mutex.{}.{}.{attempt}.tmp", sys::pid(), sys::realtime_ns() % 1_000_000_007));
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
        match fcntl::open(name.as_path(), flags, mode_bits) {
            Ok(fd) => return Ok((fd, Some(name))),
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(Error::os("open(temporary file)", Some(&name), e)),
        }
    }
    Err(Error::os("open(temporary file)", Some(dir), Errno::EEXIST))
}

/// Links an `O_TMPFILE` descriptor to `path` through `/proc/self/fd` (no capability needed),
/// falling back to `AT_EMPTY_PATH` (needs CAP_DAC_READ_SEARCH) when `/proc` is absent.
fn link_anonymous(fd: BorrowedFd<'_>, path: &Path) -> Result<(), Errno> {
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match nix::unistd::linkat(AT_FDCWD, proc_path.as_str(), AT_FDCWD, path, AtFlags::AT_SYMLINK_FOLLOW) {
        Err(Errno::ENOENT) if !Path::new("/proc/self/fd").exists() => {
            nix::unistd::linkat(fd, "", AT_FDCWD, path, AtFlags::AT_EMPTY_PATH)
        }
        other => other,
    }
}

/// Reserves the page's blocks so that a full filesystem fails here with ENOSPC instead of
/// raising SIGBUS later in whoever first touches a sparse page.
fn allocate_page(fd: BorrowedFd<'_>) -> Result<(), Error> {
    match fcntl::fallocate(fd, FallocateFlags::empty(), 0, FILE_SIZE as libc::off_t) {
        Ok(()) => Ok(()),
        Err(Errno::EOPNOTSUPP | Errno::ENOSYS) => {
            // No fallocate here: write the zeros, which allocates just the same.
            let zeros = [0u8; FILE_SIZE];
            let written = nix::sys::uio::pwrite(fd, &zeros, 0).map_err(|e| Error::os("write", None, e))?;
            if written != FILE_SIZE {
                return Err(Error::os("write", None, Errno::ENOSPC));
            }
            Ok(())
        }
        Err(e) => Err(Error::os("fallocate", None, e)),
    }
}

/// Writes the header and initialises the mutex in place, then publishes state READY.
/// Only called on a file nobody else uses (private, or under `LOCK_EX`).
fn initialise(fd: BorrowedFd<'_>, ours: &Identity, generation: u64) -> Result<(), Error> {
    let map = Mapping::new(fd)?;
    // SAFETY: the file is private (callers' contract), so no one else reads or writes the page.
    unsafe { header::write_identity(map.as_ptr(), ours) };
    // SAFETY: as above; the mutex memory is unused.
    unsafe { map.raw_mutex().init() }.map_err(|e| Error::os("pthread_mutex_init", None, e))?;
    let shared = map.header();
    shared.generation.store(generation, Ordering::Relaxed);
    shared.fencing_token.store(crate::fencing::seed(), Ordering::Relaxed);
    shared.state.store(State::Ready as u32, Ordering::Release);
    // SAFETY: as above.
    unsafe { header::write_boot_id(map.as_ptr(), ours) };
    Ok(())
}

/// Why a file is re-initialised in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reinit {
    /// It outlived a reboot: POISONED stays, the recorded holder (of another boot) is dropped.
    Reboot,
    /// `reset` while nobody uses it: POISONED is cleared, a dead holder's record is kept.
    Reset,
}

/// Re-initialises, in place, the mutex of a file that nobody else maps (its caller holds
/// `LOCK_EX`), whatever its lock word holds: a thread of another boot, a thread that vanished,
/// the owner-died bit, an unrecoverable pthread mutex. A lock that was held, or whose owner died and
/// was not reported yet, leaves the state ABANDONED: its next acquirer is told its owner died.
///
/// Crash-safe in every step: the new state is written before the mutex is touched (so a retry
/// still knows it was held), and the boot id is written last (the commit point, see
/// `header.rs`): a re-initialisation killed half-way is simply done again by the next opener.
pub(crate) fn reinitialise(fd: BorrowedFd<'_>, ours: &Identity, why: Reinit) -> Result<(), Error> {
    let clear_poison = why == Reinit::Reset;
    let verdict = read_verdict(fd, ours)?;
    let map = Mapping::new(fd)?;
    let shared = map.header();
    let (holder, owner_died) = map.raw_mutex().lock_word();
    // musl marks an unrecoverable mutex with a thread id no thread has and the owner-died bit:
    // that is the C user's verdict on the data (like poison), not a holder that died.
    let held = holder != crate::raw::NOT_RECOVERABLE_TID && (holder != 0 || owner_died);
    let pending = shared.pending_owner_death.load(Ordering::Relaxed) != 0;
    let state = match verdict.state {
        State::Poisoned if !clear_poison => State::Poisoned,
        State::Tombstone => State::Tombstone,
        State::Abandoned => State::Abandoned,
        State::Ready | State::Poisoned if held || pending => State::Abandoned,
        State::Ready | State::Poisoned => State::Ready,
    };
    let generation = shared.generation.load(Ordering::Relaxed).wrapping_add(1);
    shared.state.store(state as u32, Ordering::Release);
    // A death under poison is reported once the poison is reset; as ABANDONED it is reported
    // by the state itself.
    let pending_after = state == State::Poisoned && (held || pending);
    shared.pending_owner_death.store(u32::from(pending_after), Ordering::Relaxed);
    if !held || why == Reinit::Reboot || !verdict.boot_matches {
        // The recorded holder is gone without a death to report, or is a thread of another
        // boot, which no one can look up.
        shared.owner_pid.store(0, Ordering::Relaxed);
        shared.owner_tid.store(0, Ordering::Relaxed);
    }
    shared.owner_since_ns.store(0, Ordering::Relaxed);
    shared.owner_pid_namespace.store(0, Ordering::Relaxed);
    // Tokens go on from where they were (never back), caught up with the wall clock.
    crate::fencing::raise(&shared.fencing_token);
    if why == Reinit::Reboot {
        // SAFETY: every cooperating user is excluded by LOCK_EX (caller's contract).
        unsafe { header::write_identity(map.as_ptr(), ours) };
    }
    // SAFETY: as above; nobody uses the mutex memory.
    unsafe { map.raw_mutex().init() }.map_err(|e| Error::os("pthread_mutex_init", None, e))?;
    shared.generation.store(generation, Ordering::Relaxed);
    if why == Reinit::Reboot {
        pause_for_tests("ROBUST_MUTEX_TEST_PAUSE_BEFORE_COMMIT");
        // SAFETY: as above.
        unsafe { header::write_boot_id(map.as_ptr(), ours) };
    }
    // A reset keeps the file's identity: it stays the file of the namespace (and boot) it
    // belongs to, whoever resets it.
    Ok(())
}

/// Test hook: when the environment variable `var` names a file, create it and wait until the
/// test removes it (at most 10 minutes), so that a test can act, or kill the process, at exactly
/// this point. Costs one environment lookup, only on the rare paths that call it.
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

/// Creates the memfd behind an anonymous mutex.
pub(crate) fn create_anonymous(ours: &Identity) -> Result<OwnedFd, Error> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create("robust-mutex", MFdFlags::MFD_CLOEXEC).map_err(|e| Error::os("memfd_create", None, e))?;
    // A memfd starts at 0777; reachable through /proc/<pid>/fd, it gets the same mode as files.
    fchmod(&fd, Mode::from_bits_truncate(0o600)).map_err(|e| Error::os("fchmod", None, e))?;
    nix::unistd::ftruncate(&fd, FILE_SIZE as libc::off_t).map_err(|e| Error::os("ftruncate", None, e))?;
    allocate_page(fd.as_fd())?;
    initialise(fd.as_fd(), ours, 1)?;
    sys::flock(fd.as_fd(), FileLock::Shared, true)?;
    Ok(fd)
}

/// The file outlived a reboot: its lock word may name a thread of the old boot. Re-initialise
/// it in place while no live user exists (all users of this boot validated it, so the only
/// other users now are openers racing us here).
///
/// `flock` cannot upgrade atomically (a failed upgrade drops the shared lock), so the repair is
/// serialised by an OFD byte-range lock beyond the page, which does not interact with `flock`:
/// repairers drop their shared marker, queue on the byte lock, and the winner takes `LOCK_EX`.
/// Other holders of `LOCK_SH` are normally openers about to see the mismatch and drop it, just
/// as we did, so `LOCK_EX` is retried briefly; a holder that keeps it is a live user of a file
/// whose header was rewritten under it, and the open fails with `EBUSY` instead of waiting
/// forever or re-initialising a mutex in use.
fn reinitialise_after_reboot(fd: BorrowedFd<'_>, ours: &Identity) -> Result<(), Error> {
    sys::flock(fd, FileLock::Unlock, true)?;
    let deadline = std::time::Instant::now() + REPAIR_TIMEOUT;
    let Some(_serial) = sys::RepairLock::acquire(fd, FILE_SIZE as libc::off_t, deadline)? else {
        // Another opener has been repairing for longer than any repair takes: it is stopped.
        sys::flock(fd, FileLock::Shared, true)?;
        return Err(Error::Busy { path: None });
    };
    let mut exclusive = false;
    for _ in 0..REPAIR_ATTEMPTS {
        if sys::flock(fd, FileLock::Exclusive, false)? {
            exclusive = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    if !exclusive {
        sys::flock(fd, FileLock::Shared, true)?;
        return match read_verdict(fd, ours)?.boot_matches {
            true => Ok(()),
            false => Err(Error::Busy { path: None }),
        };
    }
    if !read_verdict(fd, ours)?.boot_matches {
        reinitialise(fd, ours, Reinit::Reboot)?;
    }
    sys::flock(fd, FileLock::Shared, true)?;
    Ok(())
}

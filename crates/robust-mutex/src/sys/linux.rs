//! Linux facts the protocol needs: boot id, PID namespace, cached pid/tid, clocks, filesystem
//! type, advisory `flock`.

use std::cell::Cell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Once, OnceLock};

use nix::errno::Errno;

use crate::error::Error;

/// The boot id of the running kernel as 16 bytes, or zeros when `/proc` is not readable.
///
/// Read once per process: it cannot change while the process runs, and every open records or
/// compares it (reading the file is five system calls, ~10% of opening an existing mutex file).
/// A failed read is not remembered.
pub(crate) fn boot_id() -> [u8; 16] {
    static BOOT_ID: OnceLock<[u8; 16]> = OnceLock::new();
    if let Some(id) = BOOT_ID.get() {
        return *id;
    }
    match read_boot_id() {
        Some(id) => *BOOT_ID.get_or_init(|| id),
        None => [0; 16],
    }
}

fn read_boot_id() -> Option<[u8; 16]> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let hex: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
        out[i] = digit(pair[0]) << 4 | digit(pair[1]);
    }
    Some(out)
}

/// The PID namespace of this process as (st_dev, st_ino) of `/proc/self/ns/pid`; `None` when
/// it cannot be read (no `/proc`): then nothing can show that thread ids are comparable.
///
/// Cached after the first successful read, like the boot id (every open records or compares
/// it): a process never leaves its own PID namespace (`unshare` and `setns` with
/// `CLONE_NEWPID` move only the children created afterwards), and a fork child reads again. A
/// failed read is not remembered.
pub(crate) fn pid_namespace() -> Option<(u64, u64)> {
    let ino = PID_NS_INO.load(Ordering::Acquire);
    if ino != UNREAD {
        return Some((PID_NS_DEV.load(Ordering::Relaxed), ino));
    }
    register_atfork();
    let st = nix::sys::stat::stat("/proc/self/ns/pid").ok()?;
    let (dev, ino) = (st.st_dev as u64, st.st_ino as u64);
    // The device first: a thread that sees the inode published (Acquire) sees it too. Racing
    // threads of one process store the same values.
    PID_NS_DEV.store(dev, Ordering::Relaxed);
    PID_NS_INO.store(ino, Ordering::Release);
    Some((dev, ino))
}

static PID_NS_DEV: AtomicU64 = AtomicU64::new(0);
static PID_NS_INO: AtomicU64 = AtomicU64::new(UNREAD);

/// The inode of this process's PID namespace (0 when unknown), cached: every holder records it
/// next to its pid and tid, so that a waiter probes a holder's thread only from the same
/// namespace. Forgotten in a fork child (which `unshare(CLONE_NEWPID)` puts elsewhere).
#[inline]
pub(crate) fn pid_namespace_id() -> u64 {
    let cached = PID_NS.load(Ordering::Relaxed);
    if cached != UNREAD {
        return cached;
    }
    register_atfork();
    let ns = pid_namespace().map_or(0, |(_, ino)| ino);
    PID_NS.store(ns, Ordering::Relaxed);
    ns
}

const UNREAD: u64 = u64::MAX;
static PID_NS: AtomicU64 = AtomicU64::new(UNREAD);

// glibc no longer caches getpid() and gettid() is always a syscall; the lock fast path records
// both, so they are cached here and refreshed in the child after fork().
static PID: AtomicI32 = AtomicI32::new(0);
thread_local! {
    static TID: Cell<i32> = const { Cell::new(0) };
}
static ATFORK: Once = Once::new();
static IN_FORK_CHILD: AtomicBool = AtomicBool::new(false);

/// True in a process created by `fork()` from a process that used this library: locks that
/// another thread of the parent held at the fork stay locked forever here.
pub(crate) fn in_fork_child() -> bool {
    IN_FORK_CHILD.load(Ordering::Relaxed)
}

extern "C" fn forget_ids_in_child() {
    PID.store(0, Ordering::Relaxed);
    PID_NS.store(UNREAD, Ordering::Relaxed);
    PID_NS_INO.store(UNREAD, Ordering::Relaxed);
    IN_FORK_CHILD.store(true, Ordering::Relaxed);
    // The forking thread is the child's only thread and runs this handler.
    TID.with(|t| t.set(0));
}

/// Registers the fork-child handler (once): before anything a child could inherit exists.
pub(crate) fn register_atfork() {
    ATFORK.call_once(|| {
        // SAFETY: registers a plain extern "C" function with no captured state; it only stores
        // to an atomic and a thread-local, which is async-signal-safe enough for the child side
        // of fork (no allocation, no locks).
        unsafe { libc::pthread_atfork(None, None, Some(forget_ids_in_child)) };
    });
}

/// This process's id, without a syscall after the first call.
#[inline]
pub(crate) fn pid() -> i32 {
    let cached = PID.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    register_atfork();
    let pid = nix::unistd::getpid().as_raw();
    PID.store(pid, Ordering::Relaxed);
    pid
}

/// The calling thread's kernel thread id (the value a robust lock word holds), cached.
#[inline]
pub(crate) fn tid() -> i32 {
    TID.with(|t| {
        let cached = t.get();
        if cached != 0 {
            return cached;
        }
        register_atfork();
        let tid = nix::unistd::gettid().as_raw();
        t.set(tid);
        tid
    })
}

/// Wall-clock time in nanoseconds since the epoch from the coarse clock (a few ns through the
/// vDSO, resolution of a scheduler tick): precise enough for "held since" diagnostics.
#[inline]
pub(crate) fn realtime_coarse_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME_COARSE)
}

/// Wall-clock time in nanoseconds since the epoch, precise.
pub(crate) fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let ts = now(clock);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `clock_gettime` of a clock that always exists on Linux.
pub(crate) fn now(clock: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clocks used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts
}

/// Adds a duration to a timespec, keeping `tv_nsec` normalised (an unnormalised value makes
/// the timed lock calls fail with EINVAL, but only when they would block).
pub(crate) fn timespec_after(base: libc::timespec, delta: std::time::Duration) -> libc::timespec {
    let mut sec = base.tv_sec.saturating_add(delta.as_secs() as _);
    let mut nsec = base.tv_nsec + delta.subsec_nanos() as libc::c_long;
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    libc::timespec { tv_sec: sec, tv_nsec: nsec }
}

/// Filesystems on which a robust futex cannot work (another kernel may hold the other side) or
/// on which shared writable mappings are unreliable.
const REFUSED_FILESYSTEMS: &[(i64, &str)] = &[
    (0x6969, "NFS"),
    (0x517B, "SMB"),
    (0xFE53_4D42, "SMB2"),
    (0xFF53_4D42, "CIFS"),
    (0x6573_5546, "FUSE"),
    (0x0102_1997, "9P"),
    (0x00C3_6400, "Ceph"),
    (0x5346_414F, "AFS"),
    (0x6B41_4653, "kAFS"),
    (0x7375_7245, "Coda"),
    (0x564C, "NCP"),
    (0x7461_636F, "OCFS2"),
    (0x0116_1970, "GFS2"),
    (0x0BD0_0BD0, "Lustre"),
    (0x4750_4653, "GPFS"),
];

/// Refuses a file whose filesystem cannot host a cross-process robust futex.
pub(crate) fn check_filesystem(fd: BorrowedFd<'_>) -> Result<(), Error> {
    let fs = nix::sys::statfs::fstatfs(fd).map_err(|e| Error::os("fstatfs", None, e))?;
    let magic = fs.filesystem_type().0 as i64;
    match REFUSED_FILESYSTEMS.iter().find(|(m, _)| *m == magic) {
        Some((_, name)) => Err(Error::unsupported(format!(
            "the file is on {name} (filesystem magic {magic:#x}); robust futexes only work within \
             one kernel on a local filesystem (see OpenOptions::allow_network_filesystem)"
        ))),
        None => Ok(()),
    }
}

/// Advisory whole-file locks: `LOCK_SH` marks a live user, `LOCK_EX` excludes all users.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FileLock {
    Shared,
    Exclusive,
    Unlock,
}

/// `flock(2)`. With `blocking == false`, a conflict returns `Ok(false)`.
///
/// Note: converting a held lock (shared to exclusive) is not atomic on Linux: the old lock is
/// dropped first, and a failed non-blocking conversion leaves no lock at all.
pub(crate) fn flock(fd: BorrowedFd<'_>, kind: FileLock, blocking: bool) -> Result<bool, Error> {
    let mut op = match kind {
        FileLock::Shared => libc::LOCK_SH,
        FileLock::Exclusive => libc::LOCK_EX,
        FileLock::Unlock => libc::LOCK_UN,
    };
    if !blocking {
        op |= libc::LOCK_NB;
    }
    loop {
        // SAFETY: flock only takes an fd and flags; the fd is borrowed, hence open.
        let rc = unsafe { libc::flock(fd.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(true);
        }
        match Errno::last() {
            Errno::EINTR => continue,
            Errno::EWOULDBLOCK if !blocking => return Ok(false),
            e => return Err(Error::os("flock", None, e)),
        }
    }
}

/// (st_dev, st_ino, st_nlink, st_size, mode, uid) of an open file.
pub(crate) fn fstat(fd: impl AsFd) -> Result<libc::stat, Error> {
    nix::sys::stat::fstat(fd.as_fd()).map_err(|e| Error::os("fstat", None, e))
}

/// An open-file-description byte-range write lock, released on drop. Serialises the rare
/// re-initialisation of a file; independent of the `flock` live-user marker.
pub(crate) struct RepairLock<'fd> {
    fd: BorrowedFd<'fd>,
    offset: libc::off_t,
}

impl<'fd> RepairLock<'fd> {
    /// Waits, until `deadline` at the latest (then `Ok(None)`), for this open file description
    /// to hold the byte at `offset` exclusively. A repair holds it for microseconds; one held
    /// past the deadline belongs to a stopped or hung process, and no caller waits on it forever.
    pub(crate) fn acquire(
        fd: BorrowedFd<'fd>,
        offset: libc::off_t,
        deadline: std::time::Instant,
    ) -> Result<Option<Self>, Error> {
        loop {
            if ofd_lock(fd, offset, libc::F_WRLCK as libc::c_short)? {
                return Ok(Some(RepairLock { fd, offset }));
            }
            if std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl Drop for RepairLock<'_> {
    fn drop(&mut self) {
        let _ = ofd_lock(self.fd, self.offset, libc::F_UNLCK as libc::c_short);
    }
}

/// One non-blocking `F_OFD_SETLK`; `Ok(false)` when another open file description holds it.
fn ofd_lock(fd: BorrowedFd<'_>, offset: libc::off_t, kind: libc::c_short) -> Result<bool, Error> {
    // SAFETY: an all-zero flock struct is a valid value (pid must be 0 for OFD locks).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = offset;
    lock.l_len = 1;
    loop {
        // SAFETY: F_OFD_SETLK takes a pointer to a valid flock struct, which `lock` is.
        let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
        if rc == 0 {
            return Ok(true);
        }
        match Errno::last() {
            Errno::EINTR => continue,
            Errno::EAGAIN | Errno::EACCES => return Ok(false),
            e => return Err(Error::os("fcntl(F_OFD_SETLK)", None, e)),
        }
    }
}

/// Whether thread `tid` of process `pid` exists (`tgkill` with signal 0). A thread of another
/// user answers EPERM, which still means it exists.
pub(crate) fn thread_exists(pid: i32, tid: i32) -> bool {
    // SAFETY: signal 0 performs only the existence and permission checks; nothing is delivered.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, 0) };
    rc == 0 || Errno::last() != Errno::ESRCH
}

/// Wakes every waiter on a process-shared futex word.
pub(crate) fn futex_wake_all(word: *const std::sync::atomic::AtomicU32) {
    futex_wake(word, i32::MAX);
}

/// Wakes at most `count` waiters on a process-shared futex word.
pub(crate) fn futex_wake(word: *const std::sync::atomic::AtomicU32, count: i32) {
    // SAFETY: `word` points at a live, aligned futex word in a shared mapping; FUTEX_WAKE (not the
    // private variant, since the word is shared between processes) only reads its address.
    unsafe { libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAKE, count, 0usize, 0usize, 0u32) };
}

/// Sleeps on a process-shared futex word while it holds `expected`, for at most `timeout`
/// (relative, so measured on CLOCK_MONOTONIC), or until woken. Spurious returns are allowed.
pub(crate) fn futex_wait(word: *const std::sync::atomic::AtomicU32, expected: u32, timeout: std::time::Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as _,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` points at a live, aligned futex word in a shared mapping; FUTEX_WAIT (the
    // shared variant) reads it and sleeps; `ts` is a valid relative timespec on the stack.
    unsafe {
        libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAIT, expected, &ts as *const libc::timespec, 0usize, 0u32)
    };
}

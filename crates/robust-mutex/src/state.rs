//! What `SharedMutex::state` reports.

use std::time::SystemTime;

/// A snapshot of a mutex: who holds it, and its history. Values can change as soon as they
/// are read; use them for diagnostics and monitoring, never to decide whether to lock.
///
/// ```
/// let mutex = robust_mutex::SharedMutex::anonymous()?;
/// let before = mutex.state();
/// drop(mutex.lock()?);
/// let after = mutex.state();
/// assert!(!after.locked && !after.poisoned);
/// assert_eq!(after.acquisitions, before.acquisitions + 1);
/// # Ok::<(), robust_mutex::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MutexState {
    /// A live thread holds the lock (read from the kernel-visible lock word).
    pub locked: bool,
    /// The kernel thread id in the lock word, when locked (its PID namespace's numbering).
    pub holder_tid: Option<i32>,
    /// The last holder died holding it; the next acquirer will be told so.
    pub abandoned: bool,
    /// The holder as recorded by this library: the current one while locked, the dead one while
    /// abandoned. `None` when unlocked, or held by a program that does not record itself.
    pub owner: Option<OwnerInfo>,
    /// A holder called `poison()`: acquires fail with `ENOTRECOVERABLE` until `reset`.
    pub poisoned: bool,
    /// Bumped by every re-initialisation (after a reboot) and every `reset`.
    pub generation: u64,
    /// Successful acquisitions since the file was created.
    pub acquisitions: u64,
    /// Acquisitions that had to wait.
    pub contended: u64,
    /// Acquisitions that found the previous holder dead.
    pub owner_deaths: u64,
    /// The last fencing token issued (the current holder's while locked); the next acquisition
    /// gets a greater one. See [`MutexGuard::fencing_token`](crate::MutexGuard::fencing_token).
    pub fencing_token: u64,
}

/// Who holds (or last held) a mutex.
///
/// ```
/// let mutex = robust_mutex::SharedMutex::anonymous()?;
/// let _held = mutex.lock()?;
/// let owner = mutex.state().owner.expect("recorded by the holder");
/// assert_eq!(owner.pid, std::process::id() as i32);
/// assert!(owner.since.unwrap() <= std::time::SystemTime::now());
/// # Ok::<(), robust_mutex::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OwnerInfo {
    /// Process id of the holder.
    pub pid: i32,
    /// Kernel thread id of the holding thread.
    pub tid: i32,
    /// Held at least since then: the uncontended fast path does not read the clock, so the
    /// first process to see the lock held (a waiter, or a `state()` call) records the time.
    /// `None` when nobody looked while it was held.
    pub since: Option<SystemTime>,
}

//! The file-lock backend of `SharedMutex` (macOS, FreeBSD; on Linux with the
//! `file-lock-backend` feature): the same promise as the pthread backend, one holder and the
//! next holder *told* when the previous one died holding, from portable parts.
//!
//! - Exclusion between processes: a kernel file lock that dies with its holder's open file
//!   description (`os.rs`: an OFD lock on Linux, `flock` elsewhere), one description per file
//!   per process (`registry.rs`).
//! - Exclusion between the threads of one process: the thread gate (`gate.rs`), passed before
//!   the file lock is taken and left after it is given back.
//! - Owner death: a `held` record in the mapped header (`header.rs`), written by the holder
//!   under the lock and cleared by its release. An acquirer that finds it set knows the previous
//!   holder's lock was dropped by the kernel (its process died, or closed the file) inside the
//!   critical section. The same protocol as a database row under an advisory lock.
//!
//! - A thread that ends holding: its thread-exit record (`holds.rs`) gives the locks back and
//!   leaves the holder record, so this too is an owner death, as with a robust pthread mutex.
//!
//! What differs from the pthread backend (and is tested as such, in `tests/file_lock_semantics.rs`):
//! waiting polls the file lock (a non-blocking attempt, then a pause of 1 ms doubling to 8 ms,
//! within the 100 ms slices that bound every wait), so it is not FIFO and a release by another
//! process is noticed within 8 ms; a `fork()` child cannot lock through its parent's handles
//! (they share the parent's lock); `destroy` is refused only while the lock is held, not while
//! handles are open (those see `Stale` on their next acquire); PID namespaces do not matter.

mod file;
mod gate;
mod header;
mod holds;
mod mapping;
mod os;
mod registry;
mod watch;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use self::gate::{Entry, Gate};
use self::header::{Shared, State};
use self::mapping::Mapping;
use crate::error::Error;
use crate::guard::Acquisition;
use crate::handle::{Purpose, SliceCheck, Wait};
use crate::options::{OpenOptions, Policy};
use crate::state::{MutexState, OwnerInfo};

/// The first pause between two attempts at a file lock held by another process, doubled after
/// each attempt up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const LONGEST_PAUSE: Duration = Duration::from_millis(8);

/// How often (5 ms apart) `destroy` tries the lock before answering `Busy`.
const DESTROY_ATTEMPTS: usize = 20;

/// The per-process state of one mutex file, shared by all handles to it.
pub(crate) struct Inner {
    map: Mapping,
    /// The open file description whose lock is this process's hold (shared with the holds of
    /// threads, which give the lock back when their thread ends: see `holds.rs`).
    fd: Arc<OwnedFd>,
    key: (u64, u64),
    /// The process that opened it: a `fork()` child shares the description, hence the lock.
    opener: i32,
    gate: Gate,
    /// This `Inner` as the registry shares it, for the thread-exit records of `holds.rs`.
    me: OnceLock<Weak<Inner>>,
}

impl Inner {
    /// Opens or creates the file at `path` (once per process).
    pub(crate) fn open(path: &Path, policy: &Policy) -> Result<Arc<Inner>, Error> {
        Inner::adopt(file::open_path(path, policy)?)
    }

    /// A new mutex in an unlinked file of the temporary directory, shared with nobody else
    /// (a fork child cannot use it, and passing its descriptor on shares this process's lock).
    pub(crate) fn anonymous() -> Result<Arc<Inner>, Error> {
        let (fd, name) = file::private_file(&std::env::temp_dir(), 0o600)?;
        let _ = nix::unistd::unlink(name.as_path());
        Inner::adopt(fd)
    }

    /// The mutex behind an inherited descriptor. Its open file description is shared with the
    /// process it came from, and so would its lock be: on Linux the file is reopened through
    /// `/proc/self/fd` (a description of our own); elsewhere this is unsupported.
    pub(crate) fn from_fd(fd: OwnedFd, policy: &Policy) -> Result<Arc<Inner>, Error> {
        file::check_ours(fd.as_fd(), policy)?;
        let own = reopen(fd.as_fd())?;
        match file::adopt(own, policy, false)? {
            file::Opened::Ready(own) => Inner::adopt(own),
            file::Opened::Retired(_) => Err(Error::Stale { path: None }),
        }
    }

    fn adopt(fd: OwnedFd) -> Result<Arc<Inner>, Error> {
        holds::prepare();
        let st = file::fstat(fd.as_fd())?;
        let key = (st.st_dev as u64, st.st_ino as u64);
        registry::get_or_insert(key, || {
            let map = Mapping::new(&fd)?;
            Ok(Inner { map, fd: Arc::new(fd), key, opener: os::pid(), gate: Gate::default(), me: OnceLock::new() })
        })
    }

    /// The descriptor of the file.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn me(&self) -> Weak<Inner> {
        self.me.get().cloned().unwrap_or_default()
    }

    /// (st_dev, st_ino) of the file.
    pub(crate) fn key(&self) -> (u64, u64) {
        self.key
    }

    fn header(&self) -> &Shared {
        self.map.header()
    }

    /// This process's id, refusing a fork child (it would share its parent's lock).
    #[inline]
    fn this_process(&self) -> Result<i32, Error> {
        let pid = os::pid();
        if pid != self.opener {
            return Err(Error::unsupported(
                "the file-lock backend cannot lock through a handle inherited across fork() (the child \
                 shares its parent's file lock): open the mutex again in the child",
            ));
        }
        Ok(pid)
    }

    /// The fast path: pass the thread gate, then one non-blocking file-lock attempt.
    pub(crate) fn try_acquire(&self) -> Result<Option<Acquisition>, Error> {
        self.try_acquire_counted(false)
    }

    /// A non-blocking acquire; `contended`: after a wait (see `watch.rs`).
    fn try_acquire_counted(&self, contended: bool) -> Result<Option<Acquisition>, Error> {
        let pid = self.this_process()?;
        match self.gate.try_enter() {
            Entry::Passed => {}
            Entry::Mine => return Err(Error::Deadlock),
            Entry::Busy => return self.busy(),
        }
        match os::try_lock(self.fd()) {
            Ok(true) => self.admit(pid, contended).map(Some),
            Ok(false) => {
                self.gate.leave();
                self.busy()
            }
            Err(e) => {
                self.gate.leave();
                Err(e)
            }
        }
    }

    /// The lock is taken: a retired or poisoned mutex is refused even so.
    #[cold]
    fn busy(&self) -> Result<Option<Acquisition>, Error> {
        match self.header().state() {
            Some(State::Tombstone) => Err(Error::Stale { path: None }),
            Some(State::Poisoned) => Err(Error::NotRecoverable),
            _ => Ok(None),
        }
    }

    /// Blocks in slices until acquired, `deadline` passes or `cancel` fires.
    pub(crate) fn acquire(&self, wait: &Wait<'_>) -> Result<Acquisition, Error> {
        match self.try_acquire()? {
            Some(acq) => Ok(acq),
            None => self.wait(wait),
        }
    }

    #[cold]
    fn wait(&self, wait: &Wait<'_>) -> Result<Acquisition, Error> {
        let pid = self.this_process()?;
        self.wait_for_lock(wait)?;
        self.admit(pid, true)
    }

    /// Passes the gate, then takes the file lock, each wait bounded by the checks made before
    /// every slice. On success the caller holds both.
    fn wait_for_lock(&self, wait: &Wait<'_>) -> Result<(), Error> {
        loop {
            let slice = self.before_slice(wait)?;
            match self.gate.enter_within(slice) {
                Entry::Passed => break,
                Entry::Mine => return Err(Error::Deadlock),
                Entry::Busy => {}
            }
        }
        // Another process holds the file lock (or just did). A blocking lock cannot be
        // bounded or cancelled portably, so: attempt, pause, attempt again.
        let mut pause = FIRST_PAUSE;
        loop {
            let attempt = os::try_lock(self.fd()).and_then(|got| match got {
                true => Ok(None),
                false => self.before_slice(wait).map(Some),
            });
            match attempt {
                Ok(None) => return Ok(()),
                Ok(Some(slice)) => {
                    std::thread::sleep(pause.min(slice));
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
                Err(e) => {
                    self.gate.leave();
                    return Err(e);
                }
            }
        }
    }

    /// The checks made before every slice; returns the length of the next slice.
    fn before_slice(&self, wait: &Wait<'_>) -> Result<Duration, Error> {
        let state = self.header().state();
        let check = SliceCheck { poisoned: state == Some(State::Poisoned), retired: state == Some(State::Tombstone) };
        wait.next_slice(check, || self.is_stale(wait.path))
    }

    /// Gives back both locks without touching the header (a refused or administrative hold).
    fn unlock_both(&self) -> Result<(), Error> {
        let unlocked = os::unlock(self.fd());
        self.gate.leave();
        unlocked
    }

    /// Runs with both locks just taken: refuses a poisoned or retired mutex, learns whether the
    /// previous holder died holding, and records the new holder.
    fn admit(&self, pid: i32, contended: bool) -> Result<Acquisition, Error> {
        let header = self.header();
        let refused = match header.state() {
            Some(State::Ready) => None,
            // A death found here stays recorded (`held`) for the acquirer after a reset.
            Some(State::Poisoned) => Some(Error::NotRecoverable),
            Some(State::Tombstone) => Some(Error::Stale { path: None }),
            None => Some(Error::BadMutex { path: None, reason: "the header state was overwritten".into() }),
        };
        if let Some(err) = refused {
            let _ = self.unlock_both();
            return Err(err);
        }
        let mut acq = Acquisition::new(false, pid);
        if header.held.load(Ordering::Acquire) != 0 {
            self.count_owner_death(&mut acq);
        }
        header.held.store(1, Ordering::Release);
        holds::push(self, pid);
        header.owner_pid.store(pid, Ordering::Relaxed);
        header.owner_tid.store(os::tid(), Ordering::Relaxed);
        header.owner_since_ns.store(os::realtime_ns(), Ordering::Relaxed);
        acq.fencing_token = crate::fencing::issue(&header.fencing_token);
        Shared::bump(&header.acquisitions);
        if contended {
            Shared::bump(&header.contended);
        }
        Ok(acq)
    }

    /// The previous holder's record was still there: it died (or closed the file) holding.
    #[cold]
    fn count_owner_death(&self, acq: &mut Acquisition) {
        let header = self.header();
        acq.set_owner_died();
        let pid = header.owner_pid.load(Ordering::Relaxed);
        acq.set_dead_owner((pid != 0).then(|| OwnerInfo {
            pid,
            tid: header.owner_tid.load(Ordering::Relaxed),
            since: since(header.owner_since_ns.load(Ordering::Relaxed)),
        }));
        Shared::bump(&header.owner_deaths);
        header.last_owner_death_ns.store(os::realtime_ns(), Ordering::Relaxed);
    }

    /// Clears the holder record (poisoning if asked), then gives back the file lock and the gate.
    ///
    /// # Safety
    /// The calling thread must hold the lock through `acq` (checked here anyway: another process
    /// or thread gets `NotOwner`).
    pub(crate) unsafe fn release(&self, acq: &Acquisition) -> Result<(), Error> {
        if acq.pid() != os::pid() || !self.gate.is_mine() {
            return Err(Error::NotOwner);
        }
        let header = self.header();
        header.owner_pid.store(0, Ordering::Relaxed);
        header.owner_tid.store(0, Ordering::Relaxed);
        header.owner_since_ns.store(0, Ordering::Relaxed);
        if acq.poisoned() {
            header.state.store(State::Poisoned as u32, Ordering::Release);
        }
        header.held.store(0, Ordering::Release);
        holds::remove(self);
        self.unlock_both()
    }

    /// Releases an acquisition nobody used; one that found its owner dead passes the death on
    /// (the dead holder's record is restored and `held` stays set).
    ///
    /// # Safety
    /// As for [`release`](Self::release).
    pub(crate) unsafe fn hand_back(&self, acq: &Acquisition) -> Result<(), Error> {
        if !acq.owner_died() || acq.pid() != os::pid() || !self.gate.is_mine() {
            // SAFETY: forwarded from this function's contract (the checks are repeated inside).
            return unsafe { self.release(acq) };
        }
        let header = self.header();
        let dead = acq.dead_owner();
        header.owner_pid.store(dead.map_or(0, |d| d.pid), Ordering::Relaxed);
        header.owner_tid.store(dead.map_or(0, |d| d.tid), Ordering::Relaxed);
        let since_ns = dead
            .and_then(|d| d.since)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        header.owner_since_ns.store(since_ns, Ordering::Relaxed);
        // The next acquirer counts this death again: un-count ours (only the holder writes it).
        header.owner_deaths.store(header.owner_deaths.load(Ordering::Relaxed).saturating_sub(1), Ordering::Relaxed);
        holds::remove(self);
        self.unlock_both()
    }

    /// `thread` ended holding this mutex: give back the file lock and the gate, leaving the
    /// holder record, so that the next acquirer is told its owner died.
    fn abandon(&self, thread: std::thread::ThreadId) {
        if self.gate.is_held_by(thread) {
            let _ = self.unlock_both();
        }
    }

    /// Whether a thread of this process holds (or is about to hold) the lock.
    pub(crate) fn held_by_this_process(&self) -> bool {
        self.gate.inspect(|held_here| held_here)
    }

    /// Whether the file behind this handle is no longer the one at `path`.
    pub(crate) fn is_stale(&self, path: Option<&Path>) -> bool {
        let Some(path) = path else { return false };
        let Ok(st) = file::fstat(self.fd()) else { return true };
        if st.st_nlink == 0 {
            return true;
        }
        match nix::sys::stat::stat(path) {
            Ok(now) => (now.st_dev as u64, now.st_ino as u64) != self.key,
            Err(_) => true,
        }
    }

    /// A snapshot. `locked` asks the kernel (a lock query on Linux; on flock systems a
    /// non-blocking attempt given back at once, which another process's `try_lock` at that very
    /// moment can see as busy).
    pub(crate) fn state(&self) -> MutexState {
        let header = self.header();
        let locked = self.locked_now();
        let held = header.held.load(Ordering::Acquire) != 0;
        let pid = header.owner_pid.load(Ordering::Relaxed);
        let tid = header.owner_tid.load(Ordering::Relaxed);
        let owner =
            (pid != 0).then(|| OwnerInfo { pid, tid, since: since(header.owner_since_ns.load(Ordering::Relaxed)) });
        MutexState {
            locked,
            holder_tid: (locked && tid != 0).then_some(tid),
            abandoned: held && !locked,
            owner,
            poisoned: header.state() == Some(State::Poisoned),
            generation: header.generation.load(Ordering::Relaxed),
            acquisitions: header.acquisitions.load(Ordering::Relaxed),
            contended: header.contended.load(Ordering::Relaxed),
            owner_deaths: header.owner_deaths.load(Ordering::Relaxed),
            fencing_token: header.fencing_token.load(Ordering::Relaxed),
        }
    }

    /// Whether a thread of this process, or another process, holds the lock.
    fn locked_now(&self) -> bool {
        self.gate.inspect(|held_here| held_here || os::held_elsewhere(self.fd()).unwrap_or(false))
    }

    /// Clears the poison under the lock (waiting through it, until `deadline`) and bumps the
    /// generation. A death found or recorded (`held`) stays for the next acquirer.
    pub(crate) fn reset_poison(&self, deadline: Instant, path: Option<&Path>) -> Result<(), Error> {
        self.this_process()?;
        let wait = Wait { deadline: Some(deadline), cancel: None, purpose: Purpose::Admin, path };
        self.wait_for_lock(&wait)?;
        let header = self.header();
        let retired = header.state() == Some(State::Tombstone);
        if !retired {
            header.state.store(State::Ready as u32, Ordering::Release);
            header.generation.fetch_add(1, Ordering::Relaxed);
            crate::fencing::raise(&header.fencing_token);
        }
        self.unlock_both()?;
        if retired {
            return Err(Error::Stale { path: path.map(Path::to_path_buf) });
        }
        Ok(())
    }

    /// `reset` by path: open it (never creating) and clear the poison under the lock.
    pub(crate) fn reset(path: &Path, deadline: Instant) -> Result<(), Error> {
        let mut options = OpenOptions::new();
        options.create(false);
        Inner::open(path, &options.policy)?.reset_poison(deadline, Some(path))
    }

    /// `destroy`: retire the file and unlink it, unless someone holds the lock.
    pub(crate) fn destroy(path: &Path) -> Result<(), Error> {
        let fd = file::open_existing(path)?;
        let fd = fd.as_fd();
        file::check_ours(fd, &OpenOptions::new().policy)?;
        let mut locked = false;
        for _ in 0..DESTROY_ATTEMPTS {
            if os::try_lock(fd)? {
                locked = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if !locked {
            return Err(Error::Busy { path: None });
        }
        Mapping::new(fd)?.header().state.store(State::Tombstone as u32, Ordering::Release);
        file::pause_for_tests("ROBUST_MUTEX_TEST_PAUSE_BEFORE_UNLINK");
        // Unlink only the inode we retired, not a file someone put at the path meanwhile.
        let ours = file::fstat(fd)?;
        let unlinked = match nix::sys::stat::stat(path) {
            Ok(now) if (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino) => {
                nix::unistd::unlink(path).map_err(|e| Error::os("unlink", None, e))
            }
            _ => Ok(()),
        };
        os::unlock(fd)?;
        unlinked
    }
}

fn since(ns: u64) -> Option<std::time::SystemTime> {
    (ns != 0).then(|| std::time::UNIX_EPOCH + Duration::from_nanos(ns))
}

/// A new open file description of the file behind `fd`.
#[cfg(target_os = "linux")]
fn reopen(fd: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let flags = nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::open(path.as_str(), flags, nix::sys::stat::Mode::empty())
        .map_err(|e| Error::os("open(/proc/self/fd)", None, e))
}

#[cfg(not(target_os = "linux"))]
fn reopen(_fd: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    Err(Error::unsupported(
        "the file-lock backend cannot adopt an inherited descriptor here (it would share the other \
         process's file lock): open the mutex by path",
    ))
}

impl Drop for Inner {
    fn drop(&mut self) {
        let in_fork_child = os::pid() != self.opener;
        registry::remove(self.key, self, in_fork_child);
        if in_fork_child {
            // Inherited: the gate may have been held by another thread of the parent at the
            // fork (never to be released here), so it is not looked at. Closing the child's copy
            // of the descriptor leaves the parent's lock alone: a file lock goes with the last
            // descriptor of its open file description.
        }
        // A thread that holds it through a leaked guard keeps the descriptor open (its hold, in
        // `holds.rs`) until it ends: then the next acquirer is told its owner died.
    }
}

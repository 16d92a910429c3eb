//! The Linux backend of `SharedMutex`: the acquire/wait/admit/release logic over the robust
//! pthread mutex of one mapped file, shared by every handle to that file in this process.

use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::error::Error;
use crate::file::{self, Policy};
use crate::guard::Acquisition;
// `crate::mutex::SharedMutex` (and the wait types) keep their old paths for code written
// against them.
#[allow(unused_imports)]
pub(crate) use crate::handle::{Purpose, SharedMutex, SliceCheck, Wait, SLICE};
use crate::header::{self, Identity, State};
use crate::mapping::Mapping;
use crate::raw::{Acquired, RawMutex};
use crate::registry;
use crate::selftest;
use crate::state::{MutexState, OwnerInfo};
use crate::sys;

/// The per-process state of one mutex file, shared by all handles to it.
pub(crate) struct Inner {
    map: ManuallyDrop<Mapping>,
    fd: OwnedFd,
    key: (u64, u64),
}

impl Inner {
    /// Opens or creates the file at `path` and maps it (once per process).
    pub(crate) fn open(path: &Path, policy: &Policy) -> Result<Arc<Inner>, Error> {
        selftest::ensure_robust()?;
        let fd = file::open_path(path, policy, &identity())?;
        Inner::adopt_mapped(fd)
    }

    /// A new mutex in a memfd.
    pub(crate) fn anonymous() -> Result<Arc<Inner>, Error> {
        selftest::ensure_robust()?;
        let fd = file::create_anonymous(&identity())?;
        Inner::adopt_mapped(fd)
    }

    /// The mutex behind an inherited descriptor, validated like a file.
    pub(crate) fn from_fd(fd: OwnedFd, policy: &Policy) -> Result<Arc<Inner>, Error> {
        selftest::ensure_robust()?;
        if !file::adopt(fd.as_fd(), policy, &identity(), false)? {
            return Err(Error::Stale { path: None });
        }
        Inner::adopt_mapped(fd)
    }

    /// Registers (or finds) the process-wide mapping of a validated descriptor.
    fn adopt_mapped(fd: OwnedFd) -> Result<Arc<Inner>, Error> {
        let st = sys::fstat(&fd)?;
        let key = (st.st_dev as u64, st.st_ino as u64);
        registry::get_or_insert(key, || {
            let map = Mapping::new(&fd)?;
            Ok(Inner { map: ManuallyDrop::new(map), fd, key })
        })
    }

    /// The descriptor of the file or memfd.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// (st_dev, st_ino) of the file.
    pub(crate) fn key(&self) -> (u64, u64) {
        self.key
    }
}

fn since(ns: u64) -> Option<std::time::SystemTime> {
    (ns != 0).then(|| std::time::UNIX_EPOCH + Duration::from_nanos(ns))
}

/// This process's identity as recorded in files it creates.
pub(crate) fn identity() -> Identity {
    Identity { abi: header::AbiTag::current(), boot_id: sys::boot_id(), pid_namespace: sys::pid_namespace() }
}

impl Inner {
    #[inline]
    pub(crate) fn header(&self) -> &header::Shared {
        self.map.header()
    }

    /// The pthread mutex, borrowed from this mapping.
    #[inline(always)]
    pub(crate) fn raw(&self) -> RawMutex<'_> {
        self.map.raw_mutex()
    }

    /// The fast path: one `pthread_mutex_trylock`, then the header bookkeeping. A clean
    /// acquisition of a READY header returns here; everything else (busy, an error, an owner
    /// death, a header that is not READY) is finished out of line by
    /// [`try_acquire_unusual`](Self::try_acquire_unusual).
    ///
    /// (Callers re-wrap the result with `map`. When the acquisition was three words that copied
    /// it through the stack with wide loads over narrower stores, a store-forwarding stall, and
    /// the result was handed to continuations instead; at two words the compiler moves it as two
    /// scalars either way: A/B in notes/11-rustguard.md.)
    #[inline(always)]
    pub(crate) fn try_acquire(&self) -> Result<Option<Acquisition>, Error> {
        let attempt = self.raw().try_lock();
        if attempt == Ok(Some(Acquired::Clean)) && self.is_ready() {
            return Ok(Some(self.record_holder(Acquisition::new(false, sys::pid()), false)));
        }
        self.try_acquire_unusual(attempt)
    }

    /// The rest of [`try_acquire`](Self::try_acquire), given what its trylock answered.
    #[cold]
    #[inline(never)]
    fn try_acquire_unusual(&self, attempt: Result<Option<Acquired>, Errno>) -> Result<Option<Acquisition>, Error> {
        match attempt {
            Ok(Some(how)) => self.admit(how, false).map(Some),
            Ok(None) => self.busy(),
            Err(errno) => Err(self.lock_error(errno)),
        }
    }

    /// The header is plainly READY (the lock must be held by this thread: the state is only
    /// changed under the lock).
    #[inline(always)]
    fn is_ready(&self) -> bool {
        self.header().state.load(Ordering::Acquire) == State::Ready as u32
    }

    /// One trylock by a thread that waited for the lock without taking it (see `watch.rs`).
    pub(crate) fn try_acquire_contended(&self) -> Result<Option<Acquisition>, Error> {
        match self.raw().try_lock() {
            Ok(Some(how)) => self.admit(how, true).map(Some),
            Ok(None) => self.busy(),
            Err(errno) => Err(self.lock_error(errno)),
        }
    }

    /// `trylock` found the lock taken. A retired or poisoned mutex is refused even while someone
    /// holds it (a header load); a lock held by the calling thread is a deadlock (musl answers
    /// EBUSY where glibc answers EDEADLK).
    #[cold]
    fn busy(&self) -> Result<Option<Acquisition>, Error> {
        match self.header().state() {
            Some(State::Tombstone) => return Err(Error::Stale { path: None }),
            Some(State::Poisoned) => return Err(Error::NotRecoverable),
            _ => {}
        }
        if self.held_by_this_thread() {
            return Err(Error::Deadlock);
        }
        Ok(None)
    }

    /// Blocks in slices until acquired, `deadline` passes or `cancel` fires. The fast path is
    /// the one of [`try_acquire`](Self::try_acquire) (returned directly: `lock()`
    /// measured slower through continuations); the rest, the wait included, is out of line.
    #[inline(always)]
    pub(crate) fn acquire(&self, wait: &Wait<'_>) -> Result<Acquisition, Error> {
        let attempt = self.raw().try_lock();
        if attempt == Ok(Some(Acquired::Clean)) && self.is_ready() {
            return Ok(self.record_holder(Acquisition::new(false, sys::pid()), false));
        }
        self.acquire_unusual(attempt, wait)
    }

    /// The rest of [`acquire`](Self::acquire), given what its trylock answered.
    #[cold]
    #[inline(never)]
    fn acquire_unusual(&self, attempt: Result<Option<Acquired>, Errno>, wait: &Wait<'_>) -> Result<Acquisition, Error> {
        match self.try_acquire_unusual(attempt)? {
            Some(acq) => Ok(acq),
            None => self.wait(wait),
        }
    }

    /// The slow path of an acquire: the wait loop with a lock attempt per slice.
    #[cold]
    pub(crate) fn wait(&self, wait: &Wait<'_>) -> Result<Acquisition, Error> {
        let how = self.wait_slices(wait, |raw, slice| raw.lock_slice(slice))?;
        self.admit(how, true)
    }

    /// The one wait loop. Each round first makes the between-slice checks (cancellation,
    /// deadline, a poisoned mutex unless `wait.purpose` is `Admin`, a retired or stale file),
    /// then runs `slice_op` for at most one slice: `Ok(Some(_))` ends the wait, `Ok(None)` means
    /// the slice ran out, an error number ends it with [`lock_error`](Self::lock_error). After a
    /// slice that ran out it stamps the holding time and recovers a holder that vanished.
    ///
    /// `slice_op` is what is waited for: acquiring (`RawMutex::lock_slice`), or any other wait
    /// on the lock word that must obey the same bounds.
    pub(crate) fn wait_slices<T>(
        &self,
        wait: &Wait<'_>,
        mut slice_op: impl FnMut(&RawMutex<'_>, Duration) -> Result<Option<T>, Errno>,
    ) -> Result<T, Error> {
        self.stamp_holding_time();
        loop {
            let slice = self.before_slice(wait)?;
            match slice_op(&self.raw(), slice) {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => {
                    self.stamp_holding_time();
                    self.recover_vanished_holder();
                }
                Err(errno) => return Err(self.lock_error(errno)),
            }
        }
    }

    /// The checks made before every slice; returns the length of the next slice.
    fn before_slice(&self, wait: &Wait<'_>) -> Result<Duration, Error> {
        let state = self.header().state();
        let check = SliceCheck { poisoned: state == Some(State::Poisoned), retired: state == Some(State::Tombstone) };
        wait.next_slice(check, || self.is_stale(wait.path))
    }

    /// Runs right after the pthread lock became ours: refuses a poisoned or retired mutex and
    /// records who holds it.
    #[inline(always)]
    pub(crate) fn admit(&self, how: Acquired, contended: bool) -> Result<Acquisition, Error> {
        let header = self.header();
        let pid = sys::pid();
        let mut acq = Acquisition::new(how == Acquired::OwnerDied, pid);
        if header.state.load(Ordering::Acquire) != State::Ready as u32 {
            self.admit_unusual(&mut acq)?;
        }
        if acq.owner_died() {
            self.count_owner_death(&mut acq);
        }
        Ok(self.record_holder(acq, contended))
    }

    /// Records the calling thread as the holder, issues the fencing token and counts the
    /// acquisition: the part of [`admit`](Self::admit) every acquisition makes (the plain case
    /// calls it directly, having checked what `admit` checks first).
    #[inline(always)]
    fn record_holder(&self, mut acq: Acquisition, contended: bool) -> Acquisition {
        let header = self.header();
        let pid = acq.pid();
        header.owner_pid.store(pid, Ordering::Relaxed);
        header.owner_tid.store(sys::tid(), Ordering::Relaxed);
        header.owner_pid_namespace.store(sys::pid_namespace_id(), Ordering::Relaxed);
        acq.fencing_token = crate::fencing::issue(&header.fencing_token);
        // Counted before the holding time is cleared, and cleared with Release: a `state()`
        // reader stamps the time only if the count it read before is still the count after its
        // stamp (`stamp_holding_time`). A reader whose stamp lands on this clear then sees the
        // new count and takes its stamp back; counted after the clear, a stamp that landed in
        // between stayed, a time from before this acquisition.
        header::Shared::bump(&header.acquisitions);
        if contended {
            header::Shared::bump(&header.contended);
        }
        header.owner_since_ns.store(0, Ordering::Release);
        acq
    }

    /// Remembers who died (before our own pid/tid overwrite it) and counts the death.
    #[cold]
    fn count_owner_death(&self, acq: &mut Acquisition) {
        let header = self.header();
        let pid = header.owner_pid.load(Ordering::Relaxed);
        acq.set_dead_owner((pid != 0).then(|| OwnerInfo {
            pid,
            tid: header.owner_tid.load(Ordering::Relaxed),
            since: since(header.owner_since_ns.load(Ordering::Relaxed)),
        }));
        header.owner_since_ns.store(0, Ordering::Relaxed);
        header::Shared::bump(&header.owner_deaths);
        header.last_owner_death_ns.store(sys::realtime_ns(), Ordering::Relaxed);
    }

    /// The lock is ours but the header is not plainly READY.
    #[cold]
    fn admit_unusual(&self, acq: &mut Acquisition) -> Result<(), Error> {
        let header = self.header();
        let refuse = |err: Error| {
            if acq.owner_died() {
                // Refused, but not forgotten: reported by the acquire that follows a reset.
                header.pending_owner_death.store(1, Ordering::Relaxed);
            }
            // SAFETY: the lock was acquired by this thread just now.
            let _ = unsafe { self.raw().unlock(acq.inconsistent()) };
            Err(err)
        };
        match header.state() {
            Some(State::Abandoned) => {
                // Its last holder died and the death was handed on (a re-initialisation after a
                // reboot, a reset): report it once.
                acq.set_owner_died();
                header.state.store(State::Ready as u32, Ordering::Release);
                Ok(())
            }
            Some(State::Poisoned) => refuse(Error::NotRecoverable),
            Some(State::Tombstone) => refuse(Error::Stale { path: None }),
            Some(State::Ready) => Ok(()),
            None => refuse(Error::BadMutex { path: None, reason: "the header state was overwritten".into() }),
        }
    }

    /// Gives the lock back: clears the owner diagnostics, records poisoning, marks the pthread
    /// mutex consistent after an owner death, unlocks.
    ///
    /// # Safety
    /// The calling thread must hold the lock through `acq`.
    #[inline(always)]
    pub(crate) unsafe fn release(&self, acq: &Acquisition) -> Result<(), Error> {
        // A guard can reach a process that does not hold the lock: `fork()` copies the parent's
        // guards into the child, but not the lock (guards are !Send, so within a process only
        // the acquiring thread has them). Refuse before touching anything shared: the header
        // writes below would erase the real holder's records (or poison for it), and glibc's
        // pthread_mutex_consistent accepts any caller and stamps it into the mutex, after which
        // the real holder's consistent+unlock fails with EINVAL and the lock is never released.
        if acq.pid() != sys::pid() {
            return Err(Error::NotOwner);
        }
        let header = self.header();
        header.owner_pid.store(0, Ordering::Relaxed);
        header.owner_tid.store(0, Ordering::Relaxed);
        header.owner_since_ns.store(0, Ordering::Relaxed);
        if acq.poisoned() {
            header.state.store(State::Poisoned as u32, Ordering::Release);
        }
        // SAFETY: the caller holds the lock; `inconsistent` is true exactly when it was acquired
        // with EOWNERDEAD, the only case in which pthread_mutex_consistent is valid.
        unsafe { self.raw().unlock(acq.inconsistent()) }.map_err(|errno| self.unlock_error(errno))
    }

    #[cold]
    fn unlock_error(&self, errno: Errno) -> Error {
        match errno {
            Errno::EPERM => Error::NotOwner,
            errno => Error::os("pthread_mutex_unlock", None, errno),
        }
    }

    pub(crate) fn raw_ptr(&self) -> *mut libc::pthread_mutex_t {
        self.raw().as_ptr()
    }

    #[cold]
    pub(crate) fn lock_error(&self, errno: Errno) -> Error {
        match errno {
            Errno::EDEADLK => Error::Deadlock,
            // A pthread user outside this library unlocked after EOWNERDEAD without marking the
            // mutex consistent: only a re-initialisation (`reset`) brings it back.
            Errno::ENOTRECOVERABLE => Error::NotRecoverable,
            errno => Error::os("pthread_mutex_lock", None, errno),
        }
    }

    #[cold]
    fn held_by_this_thread(&self) -> bool {
        let header = self.header();
        header.owner_tid.load(Ordering::Relaxed) == sys::tid()
            && header.owner_pid.load(Ordering::Relaxed) == sys::pid()
            && self.raw().lock_word().0 == sys::tid()
    }

    pub(crate) fn held_by_this_process(&self) -> bool {
        let (holder, _) = self.raw().lock_word();
        holder != 0 && self.header().owner_pid.load(Ordering::Relaxed) == sys::pid()
    }

    /// Whether the file behind this mapping is no longer the one at `path` (deleted, or
    /// replaced). Anonymous and inherited mutexes (`path: None`) are never stale.
    pub(crate) fn is_stale(&self, path: Option<&Path>) -> bool {
        let Some(path) = path else { return false };
        let Ok(st) = sys::fstat(&self.fd) else { return true };
        if st.st_nlink == 0 {
            return true;
        }
        match nix::sys::stat::stat(path) {
            Ok(now) => (now.st_dev as u64, now.st_ino as u64) != self.key,
            Err(_) => true,
        }
    }

    /// The fast path does not read the clock (that would cost as much as a third of a
    /// lock/unlock pair). Whoever first sees the lock held, a waiter or `state()`, stamps the
    /// time instead, so `since` is a lower bound of the holding time, accurate to one slice for
    /// a holder that keeps others waiting. A stamp that lands after the holder it was meant for
    /// released is taken back (the acquisition count moved), and `admit` clears what is left.
    fn stamp_holding_time(&self) {
        let header = self.header();
        let round = header.acquisitions.load(Ordering::SeqCst);
        if self.raw().lock_word().0 == 0 {
            return;
        }
        let now = sys::realtime_coarse_ns();
        if header.owner_since_ns.compare_exchange(0, now, Ordering::SeqCst, Ordering::Relaxed).is_ok()
            && (header.acquisitions.load(Ordering::SeqCst) != round || self.raw().lock_word().0 == 0)
        {
            let _ = header.owner_since_ns.compare_exchange(now, 0, Ordering::SeqCst, Ordering::Relaxed);
        }
    }

    /// A holder that `exec`s from a thread other than its main thread is never reported by the
    /// kernel (the exec hands that thread the main thread's id before the robust list is walked),
    /// so its lock would stay held forever. Between wait slices: if the recorded holder thread no
    /// longer exists in its process, mark the lock owner-died as the kernel would have.
    ///
    /// Thread ids are namespace-local, so the probe runs only when the holder recorded a PID
    /// namespace and it is provably ours; a holder of another (or an unknown) namespace is never
    /// probed: `tgkill` would ask about some other thread, or none, and answer ESRCH for a live
    /// holder. The record is read again after the probe, with the acquisition count, so that a
    /// lock that changed hands meanwhile is left alone.
    #[cold]
    pub(crate) fn recover_vanished_holder(&self) {
        let header = self.header();
        let ours = sys::pid_namespace_id();
        let record = || {
            (
                header.acquisitions.load(Ordering::SeqCst),
                header.owner_pid.load(Ordering::SeqCst),
                header.owner_tid.load(Ordering::SeqCst),
                header.owner_pid_namespace.load(Ordering::SeqCst),
            )
        };
        let before = record();
        let (holder, _) = self.raw().lock_word();
        let (_, pid, tid, namespace) = before;
        if holder == 0 || pid == 0 || tid != holder {
            return; // free, or held by a program that does not record itself
        }
        if ours == 0 || namespace != ours {
            return; // the ids would be looked up in the wrong namespace
        }
        if sys::thread_exists(pid, holder) {
            return;
        }
        if record() == before && self.raw().mark_owner_died(holder) {
            // Wake the waiters so they race for it now rather than at the end of their slice.
            sys::futex_wake_all(self.raw().futex_word_ptr());
        }
    }

    pub(crate) fn state(&self) -> MutexState {
        self.stamp_holding_time();
        let header = self.header();
        let (holder_tid, owner_died_bit) = self.raw().lock_word();
        let not_recoverable = holder_tid == crate::raw::NOT_RECOVERABLE_TID;
        let holder_tid = if not_recoverable { 0 } else { holder_tid };
        let pid = header.owner_pid.load(Ordering::Relaxed);
        let owner = (pid != 0).then(|| OwnerInfo {
            pid,
            tid: header.owner_tid.load(Ordering::Relaxed),
            since: since(header.owner_since_ns.load(Ordering::Relaxed)),
        });
        let raw_state = header.state();
        MutexState {
            locked: holder_tid != 0,
            holder_tid: (holder_tid != 0).then_some(holder_tid),
            // The kernel leaves the owner-died bit with no thread id when a holder dies; musl
            // also keeps the bit in the word of the thread that acquired it with EOWNERDEAD
            // until it is marked consistent, which is a held lock, not an abandoned one.
            abandoned: (owner_died_bit && holder_tid == 0 && !not_recoverable) || raw_state == Some(State::Abandoned),
            owner,
            poisoned: raw_state == Some(State::Poisoned),
            generation: header.generation.load(Ordering::Relaxed),
            acquisitions: header.acquisitions.load(Ordering::Relaxed),
            contended: header.contended.load(Ordering::Relaxed),
            owner_deaths: header.owner_deaths.load(Ordering::Relaxed),
            fencing_token: header.fencing_token.load(Ordering::Relaxed),
        }
    }

    /// Acquires for administration (POISONED does not end the wait), waiting no later than
    /// `deadline`, and runs `f` under the lock with whether the previous owner died. The
    /// acquisition is not recorded as an owner and counts nothing: an owner death it meets is
    /// `f`'s to hand on (see `reset_poison`).
    pub(crate) fn with_admin_lock<T>(
        &self,
        deadline: Instant,
        path: Option<&Path>,
        f: impl FnOnce(&header::Shared, bool) -> T,
    ) -> Result<T, Error> {
        let how = match self.raw().try_lock() {
            Ok(Some(how)) => how,
            Ok(None) if self.held_by_this_thread() => return Err(Error::Deadlock),
            Ok(None) => {
                let wait = Wait { deadline: Some(deadline), cancel: None, purpose: Purpose::Admin, path };
                self.wait_slices(&wait, |raw, slice| raw.lock_slice(slice))?
            }
            Err(errno) => return Err(self.lock_error(errno)),
        };
        let owner_died = how == Acquired::OwnerDied;
        let retired = self.header().state() == Some(State::Tombstone);
        let result = (!retired).then(|| f(self.header(), owner_died));
        // SAFETY: acquired just above on this thread; consistent exactly after EOWNERDEAD.
        unsafe { self.raw().unlock(owner_died) }.map_err(|e| Error::os("pthread_mutex_unlock", None, e))?;
        result.ok_or(Error::Stale { path: path.map(Path::to_path_buf) })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        registry::remove(self.key, self);
        // A leaked guard may still hold it: then keep the page, so that the kernel can mark the
        // lock abandoned when that thread exits.
        let keep_mapped = self.held_by_this_process();
        // SAFETY: `map` is never used again: this is the end of `Inner`.
        let map = unsafe { ManuallyDrop::take(&mut self.map) };
        if keep_mapped {
            map.leak();
        }
    }
}

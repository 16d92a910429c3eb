//! The RAII guards: holding one means holding the lock; dropping it releases the lock.

use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;

use crate::error::Error;
use crate::handle::SharedMutex;

/// What an acquisition found and what the holder decided; shared by both guard types.
///
/// Two 8-byte words, so that the compiler moves it (and the guards and `Result`s carrying it)
/// as two scalars: at three words, the fast path wrote it with three 8-byte stores and the
/// caller's move of the returned `Result` read it back with a 16-byte load over two of them, a
/// store-forwarding stall (perf: ~25% of the Rust `lock()` + drop and `try_lock()` + drop; A/B:
/// 6-8 ns per pair, see notes/11-rustguard.md). The dead owner's record, needed only on the
/// cold owner-death path, therefore lives in a box that `meta` points to instead of a third
/// word.
#[cfg_attr(not(supported), allow(dead_code))]
pub(crate) struct Acquisition {
    /// This acquisition's fencing token (see `fencing.rs`), set by the backend's admission.
    pub fencing_token: u64,
    /// Either (low bit 1, every plain acquisition) the process that acquired it in the high 32
    /// bits (a copy of the guard in a `fork()` child must not release) and the flags below, or
    /// (low bit 0) the address of a boxed [`Unusual`] holding both plus the dead owner's record.
    meta: u64,
}

/// Marks the inline form of `meta`; a `Box<Unusual>` is aligned to at least 2 (it holds `u64`s:
/// 4 on i686, 8 elsewhere; the assert below), so its address has this bit clear.
const INLINE: u64 = 1;
/// The previous holder died holding the lock.
const OWNER_DIED: u64 = 1 << 1;
/// The pthread mutex itself is inconsistent (EOWNERDEAD) and must be marked consistent by this
/// thread before unlocking.
const INCONSISTENT: u64 = 1 << 2;
/// The holder declared the protected state unrecoverable.
const POISON: u64 = 1 << 3;

/// The boxed form of `meta`: the inline word (pid and flags) and the dead holder's record.
struct Unusual {
    inline: u64,
    dead_owner: Option<crate::state::OwnerInfo>,
}

const _: () = assert!(std::mem::align_of::<Unusual>() > 1, "the INLINE tag needs an even address");

#[cfg_attr(not(supported), allow(dead_code))]
impl Acquisition {
    #[inline(always)]
    pub(crate) fn new(owner_died: bool, pid: i32) -> Acquisition {
        let flags = if owner_died { OWNER_DIED | INCONSISTENT } else { 0 };
        Acquisition { fencing_token: 0, meta: (u64::from(pid as u32) << 32) | flags | INLINE }
    }

    /// The boxed record, when `meta` points to one.
    #[inline(always)]
    fn unusual(&self) -> Option<&Unusual> {
        // SAFETY: with the INLINE bit clear, `meta` is the address of a live `Box<Unusual>`
        // owned by this acquisition (made by `set_dead_owner`, freed only by `drop`).
        (self.meta & INLINE == 0).then(|| unsafe { &*(self.meta as usize as *const Unusual) })
    }

    /// The pid and flags word, wherever it lives.
    #[inline(always)]
    fn inline(&self) -> u64 {
        match self.unusual() {
            None => self.meta,
            Some(unusual) => unusual.inline,
        }
    }

    /// Changes the pid and flags word, wherever it lives.
    #[inline(always)]
    fn update(&mut self, f: impl FnOnce(u64) -> u64) {
        if self.meta & INLINE != 0 {
            self.meta = f(self.meta);
        } else {
            // SAFETY: as in `unusual`; `&mut self` makes this the only access.
            let unusual = unsafe { &mut *(self.meta as usize as *mut Unusual) };
            unusual.inline = f(unusual.inline);
        }
    }

    /// The process that acquired it.
    #[inline(always)]
    pub(crate) fn pid(&self) -> i32 {
        (self.inline() >> 32) as u32 as i32
    }

    /// The previous holder died holding the lock.
    #[inline(always)]
    pub(crate) fn owner_died(&self) -> bool {
        self.inline() & OWNER_DIED != 0
    }

    #[inline(always)]
    pub(crate) fn set_owner_died(&mut self) {
        self.update(|m| m | OWNER_DIED);
    }

    /// The pthread mutex must be marked consistent before unlocking.
    #[inline(always)]
    pub(crate) fn inconsistent(&self) -> bool {
        self.inline() & INCONSISTENT != 0
    }

    #[inline(always)]
    #[cfg_attr(not(named_mutex), allow(dead_code))]
    pub(crate) fn clear_inconsistent(&mut self) {
        self.update(|m| m & !INCONSISTENT);
    }

    /// The holder declared the protected state unrecoverable.
    #[inline(always)]
    pub(crate) fn poisoned(&self) -> bool {
        self.inline() & POISON != 0
    }

    #[inline(always)]
    pub(crate) fn set_poison(&mut self) {
        self.update(|m| m | POISON);
    }

    /// The dead holder as it recorded itself, when the previous owner died and had recorded
    /// itself.
    #[inline]
    pub(crate) fn dead_owner(&self) -> Option<&crate::state::OwnerInfo> {
        self.unusual().and_then(|unusual| unusual.dead_owner.as_ref())
    }

    /// Records who died holding the lock (the owner-death path only: it allocates).
    #[cold]
    pub(crate) fn set_dead_owner(&mut self, dead_owner: Option<crate::state::OwnerInfo>) {
        match self.meta & INLINE {
            0 => {
                // SAFETY: as in `update`.
                unsafe { &mut *(self.meta as usize as *mut Unusual) }.dead_owner = dead_owner;
            }
            _ => {
                let boxed = Box::new(Unusual { inline: self.meta & !INLINE, dead_owner });
                self.meta = Box::into_raw(boxed) as usize as u64;
            }
        }
    }
}

impl Drop for Acquisition {
    #[inline(always)]
    fn drop(&mut self) {
        if self.meta & INLINE == 0 {
            // SAFETY: the address came from `Box::into_raw` in `set_dead_owner`, and this
            // acquisition owns it (it is not Clone); drop runs once.
            drop(unsafe { Box::from_raw(self.meta as usize as *mut Unusual) });
        }
    }
}

/// Shows the fields `meta` packs, as the derived `Debug` of the unpacked struct did: a guard's
/// `{:?}` is a diagnostic, and the packed word printed as one number means nothing to a reader.
impl fmt::Debug for Acquisition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquisition")
            .field("owner_died", &self.owner_died())
            .field("inconsistent", &self.inconsistent())
            .field("poison", &self.poisoned())
            .field("dead_owner", &self.dead_owner())
            .field("pid", &self.pid())
            .field("fencing_token", &self.fencing_token)
            .finish()
    }
}

/// Makes a guard `!Send` and `!Sync`: a pthread mutex belongs to the thread that locked it, and
/// only that thread may unlock it.
type NotSend = PhantomData<*const ()>;

/// Proof that this thread holds a [`SharedMutex`]; unlocks on drop.
///
/// If [`owner_died`](Self::owner_died) is true, the previous holder died inside its critical
/// section: repair the protected state, then drop the guard (the mutex is healthy again), or call
/// [`poison`](Self::poison) if it cannot be repaired.
///
/// ```
/// # let mutex = robust_mutex::SharedMutex::anonymous()?;
/// let guard = mutex.lock()?;
/// assert!(!guard.owner_died());
/// drop(guard);
/// assert!(!mutex.state().locked);
/// # Ok::<(), robust_mutex::Error>(())
/// ```
#[must_use = "if unused the mutex will immediately unlock"]
pub struct MutexGuard<'a> {
    mutex: &'a SharedMutex,
    acq: Acquisition,
    _not_send: NotSend,
}

/// A [`MutexGuard`] that owns a handle to its mutex instead of borrowing it, for code that must
/// store the guard (bindings). Same rules: `!Send`, unlocks on drop.
///
/// ```
/// # let mutex = robust_mutex::SharedMutex::anonymous()?;
/// let guard = mutex.try_lock_owned()?.expect("free");
/// assert!(mutex.state().locked);
/// drop(guard);
/// assert!(!mutex.state().locked);
/// # Ok::<(), robust_mutex::Error>(())
/// ```
#[must_use = "if unused the mutex will immediately unlock"]
pub struct OwnedMutexGuard {
    mutex: SharedMutex,
    acq: Acquisition,
    _not_send: NotSend,
}

macro_rules! guard_methods {
    () => {
        /// True when the previous holder died holding the lock: the protected state may be
        /// half-updated and should be checked or repaired before it is used.
        ///
        /// ```
        /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
        /// let guard = mutex.lock()?;
        /// if guard.owner_died() {
        ///     // repair, then drop the guard: the mutex is healthy again
        /// }
        /// # Ok::<(), robust_mutex::Error>(())
        /// ```
        pub fn owner_died(&self) -> bool {
            self.acq.owner_died()
        }

        /// When the previous owner died: who it was (pid, tid, held since), as it recorded
        /// itself. `None` otherwise, when the dead holder was a program that does not record
        /// itself, or when it died in the few instructions between taking the lock and recording
        /// itself (or between clearing its record and unlocking).
        ///
        /// ```
        /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
        /// let guard = mutex.lock()?;
        /// assert!(guard.dead_owner().is_none());
        /// # Ok::<(), robust_mutex::Error>(())
        /// ```
        pub fn dead_owner(&self) -> Option<crate::state::OwnerInfo> {
            self.acq.dead_owner().copied()
        }

        /// This acquisition's fencing token: strictly greater than every token issued before
        /// it for this mutex file, in any process, across owner deaths, resets and
        /// re-initialisations (never issued twice). Pass it along with every write to what the
        /// lock protects, and have that store refuse a write whose token is lower than the
        /// highest it has seen: a holder that lost the lock without knowing (paused, or
        /// presumed dead) is then fenced off.
        ///
        /// Tokens start near the wall clock in nanoseconds since the Unix epoch when a file is
        /// created, so a file destroyed and created again starts above the old one's tokens
        /// (unless the clock was stepped back in between).
        ///
        /// ```
        /// use robust_mutex::SharedMutex;
        ///
        /// /// A store that refuses writes whose fencing token is older than the newest it accepted.
        /// struct FencedStore { highest: u64, value: String }
        ///
        /// impl FencedStore {
        ///     fn write(&mut self, token: u64, value: &str) -> Result<(), String> {
        ///         if token < self.highest {
        ///             return Err(format!("stale fencing token {token}"));
        ///         }
        ///         (self.highest, self.value) = (token, value.to_owned());
        ///         Ok(())
        ///     }
        /// }
        ///
        /// fn fenced(mutex: &SharedMutex, store: &mut FencedStore) -> Result<(), robust_mutex::Error> {
        ///     let late = mutex.lock()?.fencing_token(); // a write prepared under a hold that has ended
        ///     let guard = mutex.lock()?;
        ///     store.write(guard.fencing_token(), "current").unwrap();
        ///     assert!(store.write(late, "stale").is_err()); // refused downstream
        ///     Ok(())
        /// }
        /// # let mutex = SharedMutex::anonymous()?;
        /// # let mut store = FencedStore { highest: 0, value: String::new() };
        /// # fenced(&mutex, &mut store)?;
        /// # assert_eq!(store.value, "current");
        /// # assert_eq!(mutex.state().fencing_token, store.highest);
        /// # Ok::<(), robust_mutex::Error>(())
        /// ```
        pub fn fencing_token(&self) -> u64 {
            self.acq.fencing_token
        }

        /// Declares the protected state unrecoverable. When this guard is released the mutex is
        /// recorded POISONED: every later acquire, in every process and including those already
        /// waiting, fails with [`Error::NotRecoverable`] until
        /// [`SharedMutex::reset`](crate::SharedMutex::reset).
        ///
        /// ```
        /// use robust_mutex::{Error, SharedMutex};
        /// let mutex = SharedMutex::anonymous()?;
        /// let mut guard = mutex.lock()?;
        /// guard.poison();
        /// drop(guard);
        /// assert!(matches!(mutex.lock(), Err(Error::NotRecoverable)));
        /// # Ok::<(), robust_mutex::Error>(())
        /// ```
        pub fn poison(&mut self) {
            self.acq.set_poison();
        }

        /// Releases the lock now, reporting an error instead of ignoring it as `drop` must.
        ///
        /// ```
        /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
        /// mutex.lock()?.release()?;
        /// # Ok::<(), robust_mutex::Error>(())
        /// ```
        pub fn release(self) -> Result<(), Error> {
            let this = ManuallyDrop::new(self);
            // SAFETY: the guard was created by an acquisition on this thread (it is !Send) and
            // is consumed here without running Drop, so the lock is released exactly once.
            let released = unsafe { this.mutex.inner.release(&this.acq) };
            // SAFETY: `this` is never touched again, so moving the handle (a reference or an
            // owned SharedMutex) and the acquisition (which owns the boxed record of a dead
            // owner) out and dropping them drops each exactly once.
            #[allow(dropping_references)]
            drop(unsafe { (std::ptr::read(&this.mutex), std::ptr::read(&this.acq)) });
            released
        }

        /// The mutex this guard holds.
        ///
        /// ```
        /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
        /// let guard = mutex.lock()?;
        /// assert!(guard.mutex().state().locked);
        /// # Ok::<(), robust_mutex::Error>(())
        /// ```
        pub fn mutex(&self) -> &SharedMutex {
            &self.mutex
        }
    };
}

impl<'a> MutexGuard<'a> {
    #[inline]
    pub(crate) fn new(mutex: &'a SharedMutex, acq: Acquisition) -> MutexGuard<'a> {
        MutexGuard { mutex, acq, _not_send: PhantomData }
    }

    guard_methods!();
}

impl OwnedMutexGuard {
    pub(crate) fn new(mutex: SharedMutex, acq: Acquisition) -> OwnedMutexGuard {
        OwnedMutexGuard { mutex, acq, _not_send: PhantomData }
    }

    guard_methods!();
}

impl Drop for MutexGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this guard's acquisition happened on this thread (the guard is !Send) and drop
        // runs once.
        let _ = unsafe { self.mutex.inner.release(&self.acq) };
    }
}

impl Drop for OwnedMutexGuard {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: as for MutexGuard.
        let _ = unsafe { self.mutex.inner.release(&self.acq) };
    }
}

impl fmt::Debug for MutexGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutexGuard").field("mutex", self.mutex).field("acquisition", &self.acq).finish()
    }
}

impl fmt::Debug for OwnedMutexGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedMutexGuard").field("mutex", &self.mutex).field("acquisition", &self.acq).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pid survives the packing (negative ones included: Windows' u32 ids arrive cast to
    /// i32), and no flag bit reaches into it or into another flag.
    #[test]
    fn the_packed_pid_and_flags_do_not_overlap() {
        for pid in [0, 1, 4_194_304, i32::MAX, -1, i32::MIN] {
            for owner_died in [false, true] {
                let mut acq = Acquisition::new(owner_died, pid);
                assert_eq!(
                    (acq.pid(), acq.owner_died(), acq.inconsistent(), acq.poisoned()),
                    (pid, owner_died, owner_died, false)
                );
                acq.set_poison();
                assert_eq!(
                    (acq.pid(), acq.owner_died(), acq.inconsistent(), acq.poisoned()),
                    (pid, owner_died, owner_died, true)
                );
                acq.clear_inconsistent();
                acq.set_owner_died();
                assert_eq!((acq.pid(), acq.owner_died(), acq.inconsistent(), acq.poisoned()), (pid, true, false, true));
            }
        }
    }

    /// Attaching a dead owner's record moves the pid and flags into the box without changing
    /// them; the flags still change there afterwards, and a second record replaces the first.
    #[test]
    fn the_boxed_form_keeps_pid_and_flags() {
        use crate::state::OwnerInfo;
        for pid in [1, i32::MAX, -1, i32::MIN] {
            let mut acq = Acquisition::new(true, pid);
            assert!(acq.dead_owner().is_none());
            let dead = OwnerInfo { pid: 77, tid: 78, since: None };
            acq.set_dead_owner(Some(dead));
            assert_eq!(acq.meta & INLINE, 0, "boxed");
            assert_eq!((acq.pid(), acq.owner_died(), acq.inconsistent(), acq.poisoned()), (pid, true, true, false));
            assert_eq!(acq.dead_owner(), Some(&dead));
            acq.clear_inconsistent();
            acq.set_poison();
            assert_eq!((acq.pid(), acq.owner_died(), acq.inconsistent(), acq.poisoned()), (pid, true, false, true));
            acq.set_dead_owner(None);
            assert_eq!(acq.dead_owner(), None);
            assert_eq!(acq.pid(), pid);
        }
        // A plain acquisition stays inline (no allocation on the fast path).
        assert_eq!(Acquisition::new(false, 5).meta & INLINE, INLINE);
        assert_eq!(std::mem::size_of::<Acquisition>(), 16);
    }

    /// `{:?}` of an acquisition (and so of a guard) names what it packs, not the packed word.
    #[test]
    fn debug_shows_the_unpacked_fields() {
        let mut acq = Acquisition::new(true, 4321);
        acq.set_poison();
        let shown = format!("{acq:?}");
        for part in ["owner_died: true", "inconsistent: true", "poison: true", "pid: 4321", "fencing_token: 0"] {
            assert!(shown.contains(part), "{part:?} missing from {shown}");
        }
        assert!(!shown.contains("meta"), "the packed word leaked into {shown}");
    }
}

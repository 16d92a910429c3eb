//! The unsafe raw contract, kept apart from the safe guards (the `lock_api` split): an
//! acquisition that is a plain value, released by an `unsafe` call. For bindings that keep held
//! locks in their own tables, where a guard per acquisition (and its reference count) would cost
//! more than the lock itself.

use std::time::Instant;

use crate::guard::Acquisition;
use crate::{CancelToken, Error, OwnerInfo, SharedMutex};

/// A held lock, as a plain value. Dropping it does **not** unlock: the lock stays held until
/// [`SharedMutex::release_raw`] or until the acquiring thread exits (then the next acquirer is
/// told its owner died).
///
/// ```
/// let mutex = robust_mutex::SharedMutex::anonymous()?;
/// let held = mutex.try_acquire_raw()?.expect("free");
/// assert!(!held.owner_died());
/// // SAFETY: acquired just above, on this thread, from this mutex.
/// unsafe { mutex.release_raw(held) }?;
/// # Ok::<(), robust_mutex::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping a RawAcquisition leaves the lock held"]
pub struct RawAcquisition {
    acq: Acquisition,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl RawAcquisition {
    pub(crate) fn new(acq: Acquisition) -> RawAcquisition {
        RawAcquisition { acq, _not_send: std::marker::PhantomData }
    }

    /// The previous holder died holding the lock (see [`MutexGuard::owner_died`]).
    ///
    /// [`MutexGuard::owner_died`]: crate::MutexGuard::owner_died
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let held = mutex.try_acquire_raw()?.unwrap();
    /// assert!(!held.owner_died());
    /// # unsafe { mutex.release_raw(held) }?;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.acq.owner_died()
    }

    /// Who died holding it, when it recorded itself.
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let held = mutex.try_acquire_raw()?.unwrap();
    /// assert!(held.dead_owner().is_none());
    /// # unsafe { mutex.release_raw(held) }?;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn dead_owner(&self) -> Option<OwnerInfo> {
        self.acq.dead_owner().copied()
    }

    /// This acquisition's fencing token (see [`MutexGuard::fencing_token`]).
    ///
    /// [`MutexGuard::fencing_token`]: crate::MutexGuard::fencing_token
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let held = mutex.try_acquire_raw()?.unwrap();
    /// assert_eq!(held.fencing_token(), mutex.state().fencing_token);
    /// # unsafe { mutex.release_raw(held) }?;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn fencing_token(&self) -> u64 {
        self.acq.fencing_token
    }

    /// Poison the mutex when this acquisition is released.
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let mut held = mutex.try_acquire_raw()?.unwrap();
    /// held.poison();
    /// unsafe { mutex.release_raw(held) }?;
    /// assert!(mutex.state().poisoned);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn poison(&mut self) {
        self.acq.set_poison();
    }
}

impl SharedMutex {
    /// [`try_lock`](Self::try_lock) returning a [`RawAcquisition`].
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let held = mutex.try_acquire_raw()?.expect("free");
    /// # unsafe { mutex.release_raw(held) }?;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    #[inline]
    pub fn try_acquire_raw(&self) -> Result<Option<RawAcquisition>, Error> {
        self.try_acquire().map(|acq| acq.map(RawAcquisition::new))
    }

    /// [`lock_until_owned`](Self::lock_until_owned) returning a [`RawAcquisition`].
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let held = mutex.acquire_raw_until(None, &robust_mutex::CancelToken::new())?;
    /// # unsafe { mutex.release_raw(held) }?;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn acquire_raw_until(
        &self,
        deadline: impl Into<Option<Instant>>,
        cancel: &CancelToken,
    ) -> Result<RawAcquisition, Error> {
        self.acquire(deadline.into(), Some(cancel)).map(RawAcquisition::new)
    }

    /// Releases a raw acquisition (marking the mutex consistent after an owner death, or
    /// poisoned).
    ///
    /// # Safety
    /// `held` must come from this mutex (or a handle to the same file) and this call must run
    /// on the thread that acquired it. (A wrong thread gets [`Error::NotOwner`] from the C
    /// library, but an acquisition from another mutex could release a lock held elsewhere.)
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let held = mutex.try_acquire_raw()?.unwrap();
    /// // SAFETY: same mutex, same thread.
    /// unsafe { mutex.release_raw(held) }?;
    /// assert!(!mutex.state().locked);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    #[inline]
    pub unsafe fn release_raw(&self, held: RawAcquisition) -> Result<(), Error> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.inner.release(&held.acq) }
    }

    /// [`release_raw`](Self::release_raw) of an acquisition left where it lies, for a table
    /// that removes the entry afterwards: moving the value out first costs a copy on a path
    /// where the whole unlock takes nanoseconds.
    ///
    /// # Safety
    /// As for [`release_raw`](Self::release_raw), and `held` must never be released again,
    /// whatever this returns: drop it (remove its entry) right after.
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let mut table = vec![mutex.try_acquire_raw()?.unwrap()];
    /// // SAFETY: same mutex, same thread; the entry is removed right after.
    /// let result = unsafe { mutex.release_raw_in_place(&table[0]) };
    /// table.swap_remove(0);
    /// result?;
    /// assert!(!mutex.state().locked);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    #[inline]
    pub unsafe fn release_raw_in_place(&self, held: &RawAcquisition) -> Result<(), Error> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.inner.release(&held.acq) }
    }

    /// Gives back an acquisition that was never used: nobody entered a critical section with
    /// it (the thread was told to stop right after acquiring). A clean acquisition is simply
    /// released. One that found its owner dead passes the owner death on: the mutex is recorded
    /// ABANDONED with the dead holder's record restored, so the next acquirer is told
    /// `owner_died` as this one was.
    ///
    /// # Safety
    /// As for [`release_raw`](Self::release_raw).
    ///
    /// ```
    /// # let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let held = mutex.try_acquire_raw()?.unwrap();
    /// // SAFETY: same mutex, same thread.
    /// unsafe { mutex.hand_back_raw(held) }?;
    /// assert!(!mutex.state().locked && !mutex.state().abandoned);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub unsafe fn hand_back_raw(&self, held: RawAcquisition) -> Result<(), Error> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.inner.hand_back(&held.acq) }.map_err(|e| e.at(self.path()))
    }
}

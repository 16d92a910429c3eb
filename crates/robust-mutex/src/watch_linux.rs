//! The pthread backend's side of `watch.rs`: watching the lock word without acquiring.

use crate::error::Error;
use crate::guard::Acquisition;
use crate::handle::Wait;
use crate::mutex::Inner;

impl Inner {
    /// Waits (in slices, with the usual bounds) until the lock word says nobody holds it.
    pub(crate) fn wait_released(&self, wait: &Wait<'_>) -> Result<(), Error> {
        self.wait_slices(wait, |raw, slice| Ok(raw.wait_released_slice(slice).then_some(())))
    }

    /// A trylock after `wait_released`: counted as contended, and the waiters flag stays set so
    /// that other sleepers are still woken by this holder's unlock.
    pub(crate) fn try_acquire_after_wait(&self) -> Result<Option<Acquisition>, Error> {
        let acq = self.try_acquire_contended()?;
        if acq.is_some() {
            // SAFETY: the lock was acquired just now by this thread.
            unsafe { self.raw().keep_waiters_flagged() };
        }
        Ok(acq)
    }

    /// Wakes one sleeper on the lock word.
    pub(crate) fn pass_wake(&self) {
        self.raw().pass_wake();
    }
}

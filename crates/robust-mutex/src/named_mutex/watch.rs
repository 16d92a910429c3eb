//! The Windows backend's side of `watch.rs` (waiting without acquiring, for the Node binding):
//! the watcher waits on the kernel mutex and gives it back at once; an abandonment it meets is
//! recorded for the acquire that follows.

use super::{Inner, Waited};
use crate::error::Error;
use crate::guard::Acquisition;
use crate::handle::Wait;

impl Inner {
    /// Waits (in slices, with the usual bounds) until the kernel mutex could be had.
    pub(crate) fn wait_released(&self, wait: &Wait<'_>) -> Result<(), Error> {
        loop {
            let slice = self.before_slice(wait)?;
            let ms = slice.as_millis().clamp(1, u128::from(u32::MAX - 1)) as u32;
            if let Waited::Acquired { abandoned } = self.wait_once(ms)? {
                if abandoned {
                    self.record_pending_death();
                }
                return self.release_kernel();
            }
        }
    }

    /// A non-blocking acquire after `wait_released`, counted as contended.
    pub(crate) fn try_acquire_after_wait(&self) -> Result<Option<Acquisition>, Error> {
        self.try_acquire_counted(true)
    }

    /// Nothing to pass on: the kernel wakes every waiter a release concerns.
    pub(crate) fn pass_wake(&self) {}
}

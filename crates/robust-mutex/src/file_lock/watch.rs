//! The file-lock backend's side of `watch.rs` (waiting without acquiring, for the Node
//! binding): the watcher polls whether the lock is free, as acquiring waiters do.

use super::{Inner, FIRST_PAUSE, LONGEST_PAUSE};
use crate::error::Error;
use crate::guard::Acquisition;
use crate::handle::Wait;

impl Inner {
    /// Waits (in slices, with the usual bounds) until no thread of this process and no other
    /// process holds the lock.
    pub(crate) fn wait_released(&self, wait: &Wait<'_>) -> Result<(), Error> {
        self.this_process()?;
        let mut pause = FIRST_PAUSE;
        loop {
            let slice = self.before_slice(wait)?;
            if !self.locked_now() {
                return Ok(());
            }
            std::thread::sleep(pause.min(slice));
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    /// A non-blocking acquire after `wait_released`, counted as contended.
    pub(crate) fn try_acquire_after_wait(&self) -> Result<Option<Acquisition>, Error> {
        self.try_acquire_counted(true)
    }

    /// Nothing to pass on: nobody sleeps on a wake-up here (waiters poll).
    pub(crate) fn pass_wake(&self) {}
}

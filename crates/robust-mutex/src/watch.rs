//! Waiting without acquiring, for bindings whose waiting thread is not the one that will hold
//! the lock.
//!
//! A pthread mutex belongs to the thread that locked it. A JavaScript thread cannot block, so the
//! Node binding waits on another thread; if that thread acquired, the hold would have two owners
//! (the thread that must unlock, the JS object that decides when), and every abort, timeout,
//! teardown and collection would race between them. Instead the other thread only *watches* the
//! lock word until nobody holds it; the JS thread then takes the lock itself with a trylock, and
//! watches again if someone barged in. An owner death needs no hand-over: the kernel leaves the
//! owner-died mark in the word, and the JS thread's trylock reports it.

use std::time::Instant;

use crate::handle::{Purpose, Wait};
use crate::raw_api::RawAcquisition;
use crate::{CancelToken, Error, SharedMutex};

impl SharedMutex {
    /// Waits, without acquiring, until nobody holds the lock (it was released, or its holder
    /// died), then returns: the moment for the thread that wants it to call
    /// [`try_acquire_raw_after_wait`](Self::try_acquire_raw_after_wait). Another locker may
    /// still get there first; then wait again.
    ///
    /// Fails with [`Error::Timeout`] after `deadline`, [`Error::Cancelled`] (within one 100 ms
    /// slice), [`Error::NotRecoverable`] when the mutex is poisoned, [`Error::Stale`] when it was
    /// retired or its file replaced. Every return passes on the wake that may have ended the
    /// wait (see [`pass_wake`](Self::pass_wake)), so a caller that then does not acquire strands
    /// no other sleeper.
    ///
    /// ```
    /// use robust_mutex::{CancelToken, SharedMutex};
    /// let mutex = SharedMutex::anonymous()?;
    /// let held = mutex.lock()?;
    /// std::thread::scope(|s| {
    ///     let watcher = s.spawn(|| mutex.wait_released(None, &CancelToken::new()));
    ///     std::thread::sleep(std::time::Duration::from_millis(20));
    ///     drop(held);                          // the watcher returns now
    ///     watcher.join().unwrap()
    /// })?;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn wait_released(&self, deadline: Option<Instant>, cancel: &CancelToken) -> Result<(), Error> {
        self.wait_released_then(deadline, cancel, |result| result)
    }

    /// [`wait_released`](Self::wait_released) that hands the outcome to `settle` *before*
    /// passing the wake on, so that a watcher tells its waiting thread first and the pass-on
    /// system call is off the handoff's path. The wake is passed on however `settle` ends
    /// (returning or panicking). `settle` must not block: until it returns, another sleeper this
    /// wait's wake was meant for may still be asleep on a free lock.
    ///
    /// ```
    /// use robust_mutex::{CancelToken, SharedMutex};
    /// let mutex = SharedMutex::anonymous()?;
    /// let free = mutex.wait_released_then(None, &CancelToken::new(), |result| result.is_ok());
    /// assert!(free);
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn wait_released_then<T>(
        &self,
        deadline: Option<Instant>,
        cancel: &CancelToken,
        settle: impl FnOnce(Result<(), Error>) -> T,
    ) -> T {
        /// Passes the wake on when dropped: after `settle`, or while a panic in it unwinds.
        struct PassOn<'a>(&'a SharedMutex);
        impl Drop for PassOn<'_> {
            fn drop(&mut self) {
                self.0.pass_wake();
            }
        }
        let wait = Wait { deadline, cancel: Some(cancel), purpose: Purpose::Acquire, path: self.path() };
        let result = self.inner.wait_released(&wait);
        // The unlock (or the kernel, for a dead holder) wakes one sleeper, and it may have been
        // us. Whether or not our caller goes on to acquire — it may give up, close, or its
        // process or worker may end first — hand that wake on right after settling, so that no
        // other sleeper (a C-library one waits without a time limit) is left asleep on a free
        // lock. At worst one extra sleeper wakes, finds the lock taken and sleeps again.
        let _pass = PassOn(self);
        settle(result)
    }

    /// [`try_acquire_raw`](Self::try_acquire_raw) for a thread that waited with
    /// [`wait_released`](Self::wait_released): it counts as a contended acquisition, and keeps
    /// the waiters flag set so that other sleepers are still woken by this holder's unlock.
    ///
    /// ```
    /// let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// let held = mutex.try_acquire_raw_after_wait()?.expect("free");
    /// assert_eq!(mutex.state().contended, 1);
    /// // SAFETY: acquired just above on this thread.
    /// unsafe { mutex.release_raw(held) }?;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn try_acquire_raw_after_wait(&self) -> Result<Option<RawAcquisition>, Error> {
        Ok(self.inner.try_acquire_after_wait()?.map(RawAcquisition::new))
    }

    /// Wakes one sleeper on the lock (any process). For a thread that returned from
    /// [`wait_released`](Self::wait_released) and then did not acquire (it gave up): the unlock
    /// that woke it meant the wake for someone who still wants the lock.
    ///
    /// ```
    /// let mutex = robust_mutex::SharedMutex::anonymous()?;
    /// mutex.pass_wake(); // harmless without sleepers
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn pass_wake(&self) {
        self.inner.pass_wake();
    }
}

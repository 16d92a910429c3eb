//! The pthread backend's `hand_back` (behind `SharedMutex::hand_back_raw`): giving back an
//! acquisition nobody used, passing an owner death it found on to the next acquirer.

use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

use crate::error::Error;
use crate::guard::Acquisition;
use crate::header::State;
use crate::mutex::Inner;

impl Inner {
    /// A clean acquisition is simply released. One that found its owner dead restores the dead
    /// holder's record and records the mutex ABANDONED, so the next acquirer is told too.
    ///
    /// # Safety
    /// The calling thread must hold the lock through `acq`.
    pub(crate) unsafe fn hand_back(&self, acq: &Acquisition) -> Result<(), Error> {
        if !acq.owner_died() || acq.pid() != crate::sys::pid() {
            // SAFETY: forwarded from this function's contract (a fork copy is refused inside).
            return unsafe { self.release(acq) };
        }
        let header = self.header();
        let dead = acq.dead_owner();
        // The dead holder's pid for the next acquirer's report, but not its tid: the
        // vanished-holder probe matches the recorded tid against the lock word, and a program
        // that does not record itself could be holding on a reused tid.
        header.owner_pid.store(dead.map_or(0, |d| d.pid), Ordering::Relaxed);
        header.owner_tid.store(0, Ordering::Relaxed);
        let since_ns = dead
            .and_then(|d| d.since)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d: Duration| d.as_nanos() as u64);
        header.owner_since_ns.store(since_ns, Ordering::Relaxed);
        // The next acquirer counts this death again: un-count ours (only the holder writes it).
        header.owner_deaths.store(header.owner_deaths.load(Ordering::Relaxed).saturating_sub(1), Ordering::Relaxed);
        let _ = header.state.compare_exchange(
            State::Ready as u32,
            State::Abandoned as u32,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        // SAFETY: we hold the lock (contract); `inconsistent` is true exactly when it was
        // acquired with EOWNERDEAD.
        unsafe { self.raw().unlock(acq.inconsistent()) }.map_err(|errno| Error::os("pthread_mutex_unlock", None, errno))
    }
}

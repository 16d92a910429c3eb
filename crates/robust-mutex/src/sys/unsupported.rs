//! The backend of platforms without robust, process-shared mutexes (macOS, Windows, FreeBSD
//! for now, the other BSDs, Android...): the public types are the same as on Linux, but no mutex
//! can be obtained; every constructor fails with [`Error::Unsupported`] naming the platform, so
//! callers fail clearly instead of running without crash recovery. FreeBSD has robust mutexes
//! and robust lists, and is the next candidate backend.

#[cfg(unix)]
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::error::Error;
use crate::guard::Acquisition;
use crate::handle::Wait;
use crate::options::Policy;
use crate::state::MutexState;

fn unsupported<T>() -> Result<T, Error> {
    Err(Error::Unsupported {
        reason: format!(
            "{} has no robust process-shared pthread mutexes; robust-mutex supports Linux (glibc \
             or musl)",
            std::env::consts::OS
        ),
    })
}

/// Never constructed: every constructor fails, so every method is unreachable.
pub(crate) enum Inner {}

impl Inner {
    pub(crate) fn open(_path: &Path, _policy: &Policy) -> Result<Arc<Inner>, Error> {
        unsupported()
    }

    pub(crate) fn anonymous() -> Result<Arc<Inner>, Error> {
        unsupported()
    }

    #[cfg(unix)]
    pub(crate) fn from_fd(_fd: OwnedFd, _policy: &Policy) -> Result<Arc<Inner>, Error> {
        unsupported()
    }

    pub(crate) fn destroy(_path: &Path) -> Result<(), Error> {
        unsupported()
    }

    pub(crate) fn reset(_path: &Path, _deadline: Instant) -> Result<(), Error> {
        unsupported()
    }

    #[cfg(unix)]
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match *self {}
    }

    pub(crate) fn key(&self) -> (u64, u64) {
        match *self {}
    }

    pub(crate) fn try_acquire(&self) -> Result<Option<Acquisition>, Error> {
        match *self {}
    }

    pub(crate) fn acquire(&self, _wait: &Wait<'_>) -> Result<Acquisition, Error> {
        match *self {}
    }

    /// # Safety
    /// As on Linux (unreachable here).
    pub(crate) unsafe fn release(&self, _acq: &Acquisition) -> Result<(), Error> {
        match *self {}
    }

    /// # Safety
    /// As on Linux (unreachable here).
    pub(crate) unsafe fn hand_back(&self, _acq: &Acquisition) -> Result<(), Error> {
        match *self {}
    }

    pub(crate) fn wait_released(&self, _wait: &Wait<'_>) -> Result<(), Error> {
        match *self {}
    }

    pub(crate) fn try_acquire_after_wait(&self) -> Result<Option<Acquisition>, Error> {
        match *self {}
    }

    pub(crate) fn pass_wake(&self) {
        match *self {}
    }

    pub(crate) fn state(&self) -> MutexState {
        match *self {}
    }

    pub(crate) fn is_stale(&self, _path: Option<&Path>) -> bool {
        match *self {}
    }

    pub(crate) fn held_by_this_process(&self) -> bool {
        match *self {}
    }

    pub(crate) fn reset_poison(&self, _deadline: Instant, _path: Option<&Path>) -> Result<(), Error> {
        match *self {}
    }
}

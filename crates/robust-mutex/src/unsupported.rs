//! The API on platforms without robust process-shared mutexes (macOS, Windows, the BSDs but
//! FreeBSD, Android): it builds, and every way to obtain a mutex returns
//! [`Error::Unsupported`] naming the platform, so callers fail clearly instead of running
//! without crash recovery.

use std::convert::Infallible;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{CancelToken, Error, MutexState, OwnerInfo};

fn unsupported<T>() -> Result<T, Error> {
    Err(Error::Unsupported {
        reason: format!(
            "{} has no robust process-shared pthread mutexes; robust-mutex supports Linux",
            std::env::consts::OS
        ),
    })
}

/// See the Linux documentation; on this platform every constructor fails with
/// [`Error::Unsupported`].
///
/// ```
/// assert_eq!(robust_mutex::SharedMutex::anonymous().unwrap_err().code(), "EUNSUPPORTED");
/// ```
#[derive(Clone, Debug)]
pub struct SharedMutex {
    never: Infallible,
}

/// Never constructed on this platform.
///
/// ```
/// let _ = std::mem::size_of::<robust_mutex::MutexGuard<'static>>();
/// ```
#[derive(Debug)]
pub struct MutexGuard<'a> {
    never: Infallible,
    _mutex: std::marker::PhantomData<&'a SharedMutex>,
}

/// Never constructed on this platform.
///
/// ```
/// let _ = std::mem::size_of::<robust_mutex::OwnedMutexGuard>();
/// ```
#[derive(Debug)]
pub struct OwnedMutexGuard {
    never: Infallible,
}

/// Never constructed on this platform.
///
/// ```
/// let _ = std::mem::size_of::<robust_mutex::RawAcquisition>();
/// ```
#[derive(Debug)]
pub struct RawAcquisition {
    never: Infallible,
}

impl RawAcquisition {
    /// Unreachable: no acquisition exists here.
    pub fn owner_died(&self) -> bool {
        match self.never {}
    }
    /// Unreachable: no acquisition exists here.
    pub fn dead_owner(&self) -> Option<OwnerInfo> {
        match self.never {}
    }
    /// Unreachable: no acquisition exists here.
    pub fn poison(&mut self) {
        match self.never {}
    }
}

/// Options; opening still fails with [`Error::Unsupported`] on this platform.
///
/// ```
/// assert!(robust_mutex::OpenOptions::new().open("/tmp/x").is_err());
/// ```
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {}

impl OpenOptions {
    /// Options with the defaults.
    ///
    /// ```
    /// let _ = robust_mutex::OpenOptions::new();
    /// ```
    pub fn new() -> OpenOptions {
        OpenOptions {}
    }
    /// Ignored here.
    ///
    /// ```
    /// let _ = robust_mutex::OpenOptions::new().mode(0o600);
    /// ```
    pub fn mode(&mut self, _mode: u32) -> &mut OpenOptions {
        self
    }
    /// Ignored here.
    ///
    /// ```
    /// let _ = robust_mutex::OpenOptions::new().create(true);
    /// ```
    pub fn create(&mut self, _create: bool) -> &mut OpenOptions {
        self
    }
    /// Ignored here.
    ///
    /// ```
    /// let _ = robust_mutex::OpenOptions::new().allow_foreign_pid_namespace(true);
    /// ```
    pub fn allow_foreign_pid_namespace(&mut self, _allow: bool) -> &mut OpenOptions {
        self
    }
    /// Ignored here.
    ///
    /// ```
    /// let _ = robust_mutex::OpenOptions::new().allow_network_filesystem(true);
    /// ```
    pub fn allow_network_filesystem(&mut self, _allow: bool) -> &mut OpenOptions {
        self
    }
    /// Ignored here.
    ///
    /// ```
    /// let _ = robust_mutex::OpenOptions::new().allow_other_owner(true);
    /// ```
    pub fn allow_other_owner(&mut self, _allow: bool) -> &mut OpenOptions {
        self
    }
    /// Fails with [`Error::Unsupported`].
    ///
    /// ```
    /// assert!(robust_mutex::OpenOptions::new().open("/tmp/x").is_err());
    /// ```
    pub fn open(&self, _path: impl AsRef<Path>) -> Result<SharedMutex, Error> {
        unsupported()
    }
    /// Fails with [`Error::Unsupported`].
    ///
    /// ```
    /// let fd = std::fs::File::open("/dev/null").unwrap().into();
    /// assert!(robust_mutex::OpenOptions::new().from_fd(fd).is_err());
    /// ```
    pub fn from_fd(&self, _fd: OwnedFd) -> Result<SharedMutex, Error> {
        unsupported()
    }
}

impl SharedMutex {
    /// Fails with [`Error::Unsupported`].
    ///
    /// ```
    /// assert!(robust_mutex::SharedMutex::open("/tmp/x").is_err());
    /// ```
    pub fn open(_path: impl AsRef<Path>) -> Result<SharedMutex, Error> {
        unsupported()
    }
    /// Fails with [`Error::Unsupported`].
    ///
    /// ```
    /// assert!(robust_mutex::SharedMutex::anonymous().is_err());
    /// ```
    pub fn anonymous() -> Result<SharedMutex, Error> {
        unsupported()
    }
    /// Fails with [`Error::Unsupported`].
    ///
    /// ```
    /// let fd = std::fs::File::open("/dev/null").unwrap().into();
    /// assert!(robust_mutex::SharedMutex::from_fd(fd).is_err());
    /// ```
    pub fn from_fd(_fd: OwnedFd) -> Result<SharedMutex, Error> {
        unsupported()
    }
    /// Fails with [`Error::Unsupported`].
    ///
    /// ```
    /// assert!(robust_mutex::SharedMutex::destroy("/tmp/x").is_err());
    /// ```
    pub fn destroy(_path: impl AsRef<Path>) -> Result<(), Error> {
        unsupported()
    }
    /// Fails with [`Error::Unsupported`].
    ///
    /// ```
    /// assert!(robust_mutex::SharedMutex::reset("/tmp/x").is_err());
    /// ```
    pub fn reset(_path: impl AsRef<Path>) -> Result<(), Error> {
        unsupported()
    }
    /// Unreachable: no `SharedMutex` exists here.
    pub fn lock(&self) -> Result<MutexGuard<'_>, Error> {
        match self.never {}
    }
    /// Unreachable: no `SharedMutex` exists here.
    pub fn try_lock(&self) -> Result<Option<MutexGuard<'_>>, Error> {
        match self.never {}
    }
    /// Unreachable: no `SharedMutex` exists here.
    pub fn lock_timeout(&self, _timeout: Duration) -> Result<MutexGuard<'_>, Error> {
        match self.never {}
    }
    /// Unreachable: no `SharedMutex` exists here.
    pub fn lock_until(&self, _deadline: Instant, _cancel: &CancelToken) -> Result<MutexGuard<'_>, Error> {
        match self.never {}
    }
    /// Unreachable: no `SharedMutex` exists here.
    pub fn try_lock_owned(&self) -> Result<Option<OwnedMutexGuard>, Error> {
        match self.never {}
    }
    /// Unreachable: no `SharedMutex` exists here.
    pub fn lock_until_owned(
        &self,
        _deadline: Option<Instant>,
        _cancel: &CancelToken,
    ) -> Result<OwnedMutexGuard, Error> {
        match self.never {}
    }
    /// Unreachable: no `SharedMutex` exists here.
    pub fn state(&self) -> MutexState {
        match self.never {}
    }
    /// Unreachable: no `SharedMutex` exists here.
    pub fn is_stale(&self) -> bool {
        match self.never {}
    }
    /// Unreachable: no `SharedMutex` exists here.
    pub fn path(&self) -> Option<&Path> {
        match self.never {}
    }
    /// Unreachable: no `SharedMutex` exists here.
    pub fn close(self) -> Result<(), Error> {
        match self.never {}
    }
    /// Unreachable: no `SharedMutex` exists here.
    pub fn reset_poison(&self) -> Result<(), Error> {
        match self.never {}
    }
    /// Unreachable: no `SharedMutex` exists here.
    pub fn try_acquire_raw(&self) -> Result<Option<RawAcquisition>, Error> {
        match self.never {}
    }
    /// Unreachable: no `SharedMutex` exists here.
    pub fn acquire_raw_until(&self, _deadline: Option<Instant>, _cancel: &CancelToken) -> Result<RawAcquisition, Error> {
        match self.never {}
    }
    /// Unreachable: no `SharedMutex` exists here.
    ///
    /// # Safety
    /// As on Linux: an acquisition of this mutex, released on its thread.
    pub unsafe fn release_raw(&self, _held: RawAcquisition) -> Result<(), Error> {
        match self.never {}
    }
}

macro_rules! unreachable_guard {
    ($t:ty) => {
        impl $t {
            /// Unreachable: no guard exists here.
            pub fn owner_died(&self) -> bool {
                match self.never {}
            }
            /// Unreachable: no guard exists here.
            pub fn poison(&mut self) {
                match self.never {}
            }
            /// Unreachable: no guard exists here.
            pub fn release(self) -> Result<(), Error> {
                match self.never {}
            }
            /// Unreachable: no guard exists here.
            pub fn mutex(&self) -> &SharedMutex {
                match self.never {}
            }
        }
    };
}
unreachable_guard!(MutexGuard<'_>);
unreachable_guard!(OwnedMutexGuard);

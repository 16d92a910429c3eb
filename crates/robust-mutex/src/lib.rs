//! A cross-process mutex that survives crashes.
//!
//! The lock is a POSIX robust, process-shared, error-checking `pthread_mutex_t` stored in a
//! one-page memory-mapped file. When a holder dies (SIGKILL, crash, exit, a thread that ends,
//! `exec`), the kernel marks the lock, and the next acquirer gets it at once *and is told the
//! previous owner died*, so it can repair what that owner left half-done.
//!
//! ```
//! use robust_mutex::SharedMutex;
//!
//! let path = std::env::temp_dir().join(format!("rm-doc-crate-{}", std::process::id()));
//! let mutex = SharedMutex::open(&path)?;   // every process opening `path` shares the lock
//! let guard = mutex.lock()?;
//! if guard.owner_died() {
//!     // the last holder crashed mid-update: check and repair the shared state here
//! }
//! drop(guard);                             // unlock (and mark the mutex healthy again)
//! # drop(mutex); SharedMutex::destroy(&path)?;
//! # Ok::<(), robust_mutex::Error>(())
//! ```
//!
//! Recovery rules:
//! - a guard with [`MutexGuard::owner_died`] holds the lock; dropping it marks the mutex
//!   consistent (healthy again);
//! - [`MutexGuard::poison`] instead records the mutex POISONED: every acquire, in every process,
//!   fails with [`Error::NotRecoverable`] until [`SharedMutex::reset`];
//! - a holder that dies while deciding passes `owner_died` on to the next acquirer.
//!
//! Linux only (glibc or musl): other platforms lack robust process-shared mutexes, and every
//! constructor there returns [`Error::Unsupported`].

// `stat` field widths differ between targets; the casts to u64 are no-ops only on some.
#![allow(clippy::unnecessary_cast)]

mod cancel;
#[cfg(unix)]
mod errno_names;
mod error;
pub use cancel::CancelToken;
pub use error::Error;

#[cfg(supported)]
mod file;
#[cfg(supported)]
mod guard;
#[cfg(supported)]
mod header;
#[cfg(supported)]
mod lifecycle;
#[cfg(supported)]
mod mapping;
#[cfg(supported)]
mod mutex;
#[cfg(supported)]
mod options;
#[cfg(supported)]
mod raw;
#[cfg(supported)]
mod raw_api;
#[cfg(supported)]
mod registry;
#[cfg(supported)]
mod selftest;
mod state;
#[cfg(supported)]
mod sys;

#[cfg(supported)]
pub use guard::{MutexGuard, OwnedMutexGuard};
#[cfg(supported)]
pub use mutex::SharedMutex;
#[cfg(supported)]
pub use raw_api::RawAcquisition;
#[cfg(supported)]
pub use options::OpenOptions;
pub use state::{MutexState, OwnerInfo};

#[cfg(not(supported))]
mod unsupported;
#[cfg(not(supported))]
pub use unsupported::*;

/// Hooks for the Node binding and the test helpers; not a stable API.
#[doc(hidden)]
#[cfg(supported)]
pub mod __private {
    /// The length of the longest single wait.
    pub const SLICE: std::time::Duration = crate::mutex::SLICE;
    /// Offset of the pthread mutex in the file (for interoperability tests in C).
    pub const MUTEX_OFFSET: usize = crate::header::MUTEX_OFFSET;

    /// The pthread mutex inside a handle's mapping, for the benchmark's raw baseline. Valid as
    /// long as the handle lives.
    pub fn raw_mutex_ptr(mutex: &crate::SharedMutex) -> *mut libc::pthread_mutex_t {
        mutex.inner.raw_ptr()
    }
}

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
//! After `fork()` in a multi-threaded process, the child (until it `exec`s) may use what it
//! inherited: acquire and release through inherited handles (the parent's guards are not the
//! child's: releasing one fails with [`Error::NotOwner`]), read `state()`, drop handles and
//! guards. It must not open new mutexes there (`open`, `anonymous`, `from_fd`): they take
//! process-wide locks that another thread of the parent may have held at the fork.
//!
//! Linux (glibc or musl) uses the robust pthread mutex. macOS and FreeBSD (and Linux with the
//! `file-lock-backend` feature) use the file-lock backend: the same API and promise from a kernel
//! file lock, an in-process gate and a holder record in the file (waiting polls and is not FIFO;
//! a `fork()` child must open the mutex again). Windows uses a named kernel mutex, whose
//! `WAIT_ABANDONED` is the owner-died signal. Elsewhere the crate builds with the same public
//! types, and every constructor returns [`Error::Unsupported`].

// `stat` field widths differ between targets; the casts to u64 are no-ops only on some.
#![allow(clippy::unnecessary_cast)]

mod cancel;
#[cfg(unix)]
mod errno_names;
mod error;
mod fencing;
mod guard;
mod handle;
mod lifecycle;
mod options;
mod raw_api;
mod state;
mod sys;

// The Linux backend.
#[cfg(supported)]
mod admin;
#[cfg(supported)]
mod file;
#[cfg(supported)]
mod hand_back;
#[cfg(supported)]
mod header;
#[cfg(supported)]
mod mapping;
#[cfg(supported)]
mod mutex;
#[cfg(supported)]
mod raw;
#[cfg(supported)]
mod registry;
#[cfg(supported)]
mod selftest;
#[cfg(supported)]
mod watch_linux;

// A mutex file's page: checks, read, mapping (the pthread and the file-lock backends).
#[cfg(any(supported, file_lock))]
mod page_file;

// Waiting without acquiring (the Node binding's contended lock), on every backend.
mod watch;

// The file-lock backend (macOS, FreeBSD; Linux with the `file-lock-backend` feature).
#[cfg(file_lock)]
mod file_lock;

// The Windows backend: a named kernel mutex (WAIT_ABANDONED = owner died).
#[cfg(named_mutex)]
mod named_mutex;

/// The per-OS implementation behind the public types: one set of public types everywhere, a
/// backend per OS: the robust pthread mutex (`mutex.rs`, Linux), the file lock (`file_lock/`,
/// macOS and FreeBSD), the named kernel mutex (`named_mutex/`, Windows), or
/// `sys/unsupported.rs` where every constructor fails with `Unsupported`.
mod backend {
    #[cfg(file_lock)]
    pub(crate) use crate::file_lock::Inner;
    #[cfg(supported)]
    pub(crate) use crate::mutex::Inner;
    #[cfg(named_mutex)]
    pub(crate) use crate::named_mutex::Inner;
    #[cfg(not(any(supported, file_lock, named_mutex)))]
    pub(crate) use crate::sys::Inner;
}

pub use cancel::CancelToken;
pub use error::Error;
pub use guard::{MutexGuard, OwnedMutexGuard};
pub use handle::SharedMutex;
pub use options::OpenOptions;
pub use raw_api::RawAcquisition;
pub use state::{MutexState, OwnerInfo};

/// Hooks for the Node binding and the test helpers; not a stable API.
#[doc(hidden)]
#[cfg(any(supported, file_lock, named_mutex))]
pub mod __private {
    /// The length of the longest single wait.
    pub const SLICE: std::time::Duration = crate::handle::SLICE;
    /// The backend this build uses: "pthread", "file-lock" or "named-mutex".
    #[cfg(supported)]
    pub const BACKEND: &str = "pthread";
    /// The backend this build uses: "pthread", "file-lock" or "named-mutex".
    #[cfg(file_lock)]
    pub const BACKEND: &str = "file-lock";
    /// The backend this build uses: "pthread", "file-lock" or "named-mutex".
    #[cfg(named_mutex)]
    pub const BACKEND: &str = "named-mutex";
    /// Offset of the pthread mutex in the file (for interoperability tests in C).
    #[cfg(supported)]
    pub const MUTEX_OFFSET: usize = crate::header::MUTEX_OFFSET;

    /// The pthread mutex inside a handle's mapping, for the benchmark's raw baseline. Valid as
    /// long as the handle lives.
    #[cfg(supported)]
    pub fn raw_mutex_ptr(mutex: &crate::SharedMutex) -> *mut libc::pthread_mutex_t {
        mutex.inner.raw_ptr()
    }
}

//! The one error type of the crate, with a stable string code per kind.

use std::fmt;
use std::path::PathBuf;

use nix::errno::Errno;

/// Everything that can go wrong opening, locking or administering a [`SharedMutex`].
///
/// Match on the variant in Rust; bindings and logs use [`Error::code`], a stable string that
/// never changes between releases (`"ETIMEDOUT"`, `"ENOTRECOVERABLE"`, ...).
///
/// ```
/// use std::time::Duration;
/// use robust_mutex::{Error, SharedMutex};
///
/// let mutex = SharedMutex::anonymous()?;
/// let _held = mutex.lock()?;
/// // The same thread asking again is a bug in the caller, reported instead of deadlocking.
/// let again = mutex.lock_timeout(Duration::from_millis(10)).unwrap_err();
/// assert!(matches!(again, Error::Deadlock));
/// assert_eq!(again.code(), "EDEADLK");
/// # Ok::<(), robust_mutex::Error>(())
/// ```
///
/// [`SharedMutex`]: crate::SharedMutex
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The deadline passed before the lock was acquired. Code `ETIMEDOUT`.
    Timeout,
    /// The wait was cancelled through its [`CancelToken`](crate::CancelToken). Code `ECANCELED`.
    Cancelled,
    /// The calling thread already holds this mutex. Code `EDEADLK`.
    Deadlock,
    /// The calling thread does not own the lock it tried to release. Code `EPERM`.
    NotOwner,
    /// The mutex was poisoned (a holder declared the protected state unrecoverable) and stays
    /// unusable until [`SharedMutex::reset`](crate::SharedMutex::reset). Code `ENOTRECOVERABLE`.
    NotRecoverable,
    /// The file is not a mutex file of this library: too short, wrong magic, an unknown format
    /// version or state. Its bytes were not modified. Code `EBADMUTEX`.
    BadMutex {
        /// The file, when it has a name.
        path: Option<PathBuf>,
        /// What exactly is wrong.
        reason: String,
    },
    /// The file was created by a build with another binary layout (another architecture, pointer
    /// width or C library), so sharing it would silently break mutual exclusion. Code
    /// `EABIMISMATCH`.
    AbiMismatch {
        /// The file, when it has a name.
        path: Option<PathBuf>,
        /// The layout recorded in the file.
        found: String,
        /// The layout of this process.
        expected: String,
    },
    /// The file was initialised in another PID namespace (another container): thread ids are not
    /// comparable across namespaces, so the lock cannot work. Code `EPIDNS`.
    ForeignPidNamespace {
        /// The file, when it has a name.
        path: Option<PathBuf>,
    },
    /// This platform, sandbox or filesystem cannot provide robust cross-process locking. Code
    /// `EUNSUPPORTED`.
    Unsupported {
        /// What is missing.
        reason: String,
    },
    /// The file's ownership or permissions let someone else rewrite the lock (which can corrupt
    /// the memory of every holder). Code `EINSECURE`.
    Insecure {
        /// The file, when it has a name.
        path: Option<PathBuf>,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is in use by another handle or process (for `destroy`). Code `EBUSY`.
    Busy {
        /// The file, when it has a name.
        path: Option<PathBuf>,
    },
    /// The file this handle maps was deleted or replaced; other processes now use another
    /// file, so this handle no longer excludes them. Reopen from the path. Code `ESTALE`.
    Stale {
        /// The file, when it has a name.
        path: Option<PathBuf>,
    },
    /// An operating-system call failed. Code: the errno name (`ENOENT`, `EACCES`, ...).
    Os {
        /// What was being done (`"open"`, `"mmap"`, ...).
        op: &'static str,
        /// The file, when one was involved.
        path: Option<PathBuf>,
        /// The error number.
        errno: Errno,
    },
}

impl Error {
    /// The stable string code of this error, suitable for programs (and passed through to
    /// JavaScript as `err.code`).
    ///
    /// ```
    /// use robust_mutex::Error;
    /// assert_eq!(Error::Timeout.code(), "ETIMEDOUT");
    /// assert_eq!(Error::NotRecoverable.code(), "ENOTRECOVERABLE");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Error::Timeout => "ETIMEDOUT",
            Error::Cancelled => "ECANCELED",
            Error::Deadlock => "EDEADLK",
            Error::NotOwner => "EPERM",
            Error::NotRecoverable => "ENOTRECOVERABLE",
            Error::BadMutex { .. } => "EBADMUTEX",
            Error::AbiMismatch { .. } => "EABIMISMATCH",
            Error::ForeignPidNamespace { .. } => "EPIDNS",
            Error::Unsupported { .. } => "EUNSUPPORTED",
            Error::Insecure { .. } => "EINSECURE",
            Error::Busy { .. } => "EBUSY",
            Error::Stale { .. } => "ESTALE",
            Error::Os { errno, .. } => errno_name(*errno),
        }
    }

    /// The file the error is about, when there is one.
    ///
    /// ```
    /// use robust_mutex::SharedMutex;
    /// let dir = std::env::temp_dir().join(format!("rm-doc-path-{}", std::process::id()));
    /// let missing = dir.join("absent/lock");
    /// let err = SharedMutex::open(&missing).unwrap_err();
    /// assert_eq!(err.code(), "ENOENT");
    /// assert_eq!(err.path(), Some(missing.as_path()));
    /// ```
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Error::BadMutex { path, .. }
            | Error::AbiMismatch { path, .. }
            | Error::ForeignPidNamespace { path }
            | Error::Insecure { path, .. }
            | Error::Busy { path }
            | Error::Stale { path }
            | Error::Os { path, .. } => path.as_deref(),
            _ => None,
        }
    }

    #[cfg_attr(not(supported), allow(dead_code))]
    pub(crate) fn os(op: &'static str, path: Option<&std::path::Path>, errno: Errno) -> Error {
        Error::Os { op, path: path.map(PathBuf::from), errno }
    }

    #[cfg_attr(not(supported), allow(dead_code))]
    pub(crate) fn unsupported(reason: impl Into<String>) -> Error {
        Error::Unsupported { reason: reason.into() }
    }

    /// Fills in the path of errors raised below the layer that knows it.
    #[cfg_attr(not(supported), allow(dead_code))]
    pub(crate) fn at(mut self, file: Option<&std::path::Path>) -> Error {
        if self.path().is_none() {
            if let Some(file) = file {
                self = self.with_path(file);
            }
        }
        self
    }

    fn with_path(self, file: &std::path::Path) -> Error {
        let path = Some(PathBuf::from(file));
        match self {
            Error::BadMutex { reason, .. } => Error::BadMutex { path, reason },
            Error::AbiMismatch { found, expected, .. } => Error::AbiMismatch { path, found, expected },
            Error::ForeignPidNamespace { .. } => Error::ForeignPidNamespace { path },
            Error::Insecure { reason, .. } => Error::Insecure { path, reason },
            Error::Busy { .. } => Error::Busy { path },
            Error::Stale { .. } => Error::Stale { path },
            Error::Os { op, errno, .. } => Error::Os { op, path, errno },
            other => other,
        }
    }
}

fn describe_path(f: &mut fmt::Formatter<'_>, path: &Option<PathBuf>) -> fmt::Result {
    match path {
        Some(p) => write!(f, "{}: ", p.display()),
        None => Ok(()),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout => f.write_str("timed out waiting for the lock"),
            Error::Cancelled => f.write_str("the wait for the lock was cancelled"),
            Error::Deadlock => f.write_str("this thread already holds the lock"),
            Error::NotOwner => f.write_str("this thread does not hold the lock"),
            Error::NotRecoverable => f.write_str(
                "the mutex is poisoned: a holder marked the protected state unrecoverable; \
                 repair the state, then call reset",
            ),
            Error::BadMutex { path, reason } => {
                describe_path(f, path)?;
                write!(f, "not a robust-mutex file: {reason} (the file was left unchanged)")
            }
            Error::AbiMismatch { path, found, expected } => {
                describe_path(f, path)?;
                write!(
                    f,
                    "mutex file was created for another binary layout ({found}); this process \
                     is {expected}"
                )
            }
            Error::ForeignPidNamespace { path } => {
                describe_path(f, path)?;
                f.write_str(
                    "mutex file was initialised in another PID namespace; thread ids are not \
                     comparable across namespaces (see OpenOptions::allow_foreign_pid_namespace)",
                )
            }
            Error::Unsupported { reason } => write!(f, "robust locking is unsupported: {reason}"),
            Error::Insecure { path, reason } => {
                describe_path(f, path)?;
                write!(f, "refusing an insecure mutex file: {reason}")
            }
            Error::Busy { path } => {
                describe_path(f, path)?;
                f.write_str("the mutex is in use")
            }
            Error::Stale { path } => {
                describe_path(f, path)?;
                f.write_str("the mutex file was deleted or replaced; reopen it from its path")
            }
            Error::Os { op, path, errno } => {
                describe_path(f, path)?;
                write!(f, "{op} failed: {} ({})", errno.desc(), errno_name(*errno))
            }
        }
    }
}

impl std::error::Error for Error {}

/// The symbolic name of the error numbers this crate can meet.
fn errno_name(errno: Errno) -> &'static str {
    use Errno::*;
    match errno {
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        EINTR => "EINTR",
        EIO => "EIO",
        ENXIO => "ENXIO",
        EBADF => "EBADF",
        EAGAIN => "EAGAIN",
        ENOMEM => "ENOMEM",
        EACCES => "EACCES",
        EFAULT => "EFAULT",
        EBUSY => "EBUSY",
        EEXIST => "EEXIST",
        EXDEV => "EXDEV",
        ENODEV => "ENODEV",
        ENOTDIR => "ENOTDIR",
        EISDIR => "EISDIR",
        EINVAL => "EINVAL",
        ENFILE => "ENFILE",
        EMFILE => "EMFILE",
        ETXTBSY => "ETXTBSY",
        EFBIG => "EFBIG",
        ENOSPC => "ENOSPC",
        EROFS => "EROFS",
        EMLINK => "EMLINK",
        ENAMETOOLONG => "ENAMETOOLONG",
        ENOSYS => "ENOSYS",
        ELOOP => "ELOOP",
        EOVERFLOW => "EOVERFLOW",
        EOPNOTSUPP => "EOPNOTSUPP",
        EDQUOT => "EDQUOT",
        ESTALE => "ESTALE",
        EDEADLK => "EDEADLK",
        ETIMEDOUT => "ETIMEDOUT",
        EOWNERDEAD => "EOWNERDEAD",
        ENOTRECOVERABLE => "ENOTRECOVERABLE",
        _ => "EOS",
    }
}

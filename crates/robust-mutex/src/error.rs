//! The one error type of the crate, with a stable string code per kind.

use std::fmt;
use std::path::PathBuf;

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
    /// The mutex was poisoned (a holder declared the protected state unrecoverable), or a
    /// pthread user outside this library left the pthread mutex itself unrecoverable (unlocked
    /// after `EOWNERDEAD` without `pthread_mutex_consistent`); it stays unusable until
    /// [`SharedMutex::reset`](crate::SharedMutex::reset). Code `ENOTRECOVERABLE`.
    NotRecoverable,
    /// The file is not a mutex file of this library: too short, wrong magic, an unknown format
    /// version or state. Its bytes were not modified. Code `EBADMUTEX`.
    #[non_exhaustive]
    BadMutex {
        /// The file, when it has a name.
        path: Option<PathBuf>,
        /// What exactly is wrong.
        reason: String,
    },
    /// The file was created by a build with another binary layout (another architecture, pointer
    /// width or C library), so sharing it would silently break mutual exclusion. Code
    /// `EABIMISMATCH`.
    #[non_exhaustive]
    AbiMismatch {
        /// The file, when it has a name.
        path: Option<PathBuf>,
        /// The layout recorded in the file.
        found: String,
        /// The layout of this process.
        expected: String,
    },
    /// The file was initialised in another PID namespace (another container), or this process
    /// cannot read its own (no `/proc`): thread ids are not comparable across namespaces, so the
    /// lock's owner-death recovery cannot work. Code `EPIDNS`.
    #[non_exhaustive]
    ForeignPidNamespace {
        /// The file, when it has a name.
        path: Option<PathBuf>,
    },
    /// This platform, sandbox or filesystem cannot provide robust cross-process locking. Code
    /// `EUNSUPPORTED`.
    #[non_exhaustive]
    Unsupported {
        /// What is missing.
        reason: String,
    },
    /// The file's ownership or permissions let someone else rewrite the lock (which can corrupt
    /// the memory of every holder). Code `EINSECURE`.
    #[non_exhaustive]
    Insecure {
        /// The file, when it has a name.
        path: Option<PathBuf>,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is in use by another handle or process (for `destroy`). Code `EBUSY`.
    #[non_exhaustive]
    Busy {
        /// The file, when it has a name.
        path: Option<PathBuf>,
    },
    /// The file this handle maps was deleted or replaced; other processes now use another
    /// file, so this handle no longer excludes them. Reopen from the path. Code `ESTALE`.
    #[non_exhaustive]
    Stale {
        /// The file, when it has a name.
        path: Option<PathBuf>,
    },
    /// An operating-system call failed. Code: the errno's name (`ENOENT`, `EACCES`, ...), for
    /// every error number the platform names.
    #[non_exhaustive]
    Os {
        /// What was being done (`"open"`, `"mmap"`, ...).
        op: &'static str,
        /// The file, when one was involved.
        path: Option<PathBuf>,
        /// The raw error number (`errno`), as [`std::io::Error::from_raw_os_error`] takes it.
        errno: i32,
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

    /// The raw error number of an [`Error::Os`], like [`std::io::Error::raw_os_error`].
    ///
    /// ```
    /// let err = robust_mutex::SharedMutex::open("/nonexistent-dir/lock").unwrap_err();
    /// # #[cfg(target_os = "linux")]
    /// assert_eq!(err.raw_os_error(), Some(2)); // ENOENT
    /// ```
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Os { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    #[cfg(any(supported, file_lock))]
    pub(crate) fn os(op: &'static str, path: Option<&std::path::Path>, errno: nix::errno::Errno) -> Error {
        Error::Os { op, path: path.map(PathBuf::from), errno: errno as i32 }
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
                "the mutex is not recoverable: a holder marked the protected state unrecoverable \
                 (poison, or a pthread user that did not mark it consistent after an owner \
                 death); repair the state, then call reset",
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
                let io = std::io::Error::from_raw_os_error(*errno);
                write!(f, "{op} failed: {io} ({})", errno_name(*errno))
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    /// An `io::Error` of the closest kind, carrying the original error (its message, code and
    /// path) as its inner error; an [`Error::Os`] keeps its error number's kind.
    ///
    /// ```
    /// let err = robust_mutex::SharedMutex::open("/nonexistent-dir/lock").unwrap_err();
    /// let io: std::io::Error = err.into();
    /// assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    /// ```
    fn from(err: Error) -> std::io::Error {
        use std::io::ErrorKind;
        let kind = match &err {
            Error::Timeout => ErrorKind::TimedOut,
            Error::Cancelled => ErrorKind::Interrupted,
            Error::NotOwner | Error::Insecure { .. } => ErrorKind::PermissionDenied,
            Error::BadMutex { .. } | Error::AbiMismatch { .. } => ErrorKind::InvalidData,
            Error::Unsupported { .. } | Error::ForeignPidNamespace { .. } => ErrorKind::Unsupported,
            Error::Stale { .. } => ErrorKind::NotFound,
            Error::Os { errno, .. } => std::io::Error::from_raw_os_error(*errno).kind(),
            Error::Deadlock | Error::NotRecoverable | Error::Busy { .. } => ErrorKind::Other,
        };
        std::io::Error::new(kind, err)
    }
}

/// The symbolic name of an error number (`"ENOENT"`): stable, since it is the platform's own
/// name. Numbers the platform does not name are `"EUNKNOWN"`.
fn errno_name(errno: i32) -> &'static str {
    #[cfg(unix)]
    {
        crate::errno_names::name(errno)
    }
    #[cfg(not(unix))]
    {
        let _ = errno;
        "EUNKNOWN"
    }
}

//! `OpenOptions`: how a mutex file is opened or created.

#[cfg(unix)]
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::error::Error;
use crate::handle::SharedMutex;

/// Options for opening a mutex file, builder style.
///
/// An existing file is validated before anything is mapped or written: it must be a regular
/// file of at least one page, owned by this user, not writable by others, on a local filesystem,
/// with our magic, format version and binary layout, from this PID namespace (which must be
/// readable: a process without `/proc` cannot show that it is). Each failure is its
/// own [`Error`] and leaves the file's bytes untouched. A file that survived a reboot is
/// re-initialised once, while no process uses it.
///
/// ```
/// use robust_mutex::OpenOptions;
/// let path = std::env::temp_dir().join(format!("rm-doc-options-{}", std::process::id()));
/// let mutex = OpenOptions::new().mode(0o600).create(true).open(&path)?;
/// # drop(mutex); robust_mutex::SharedMutex::destroy(&path)?;
/// # Ok::<(), robust_mutex::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub(crate) policy: Policy,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// The defaults: create if missing, mode `0600`, every safety check on.
    ///
    /// ```
    /// let options = robust_mutex::OpenOptions::new();
    /// # let _ = options;
    /// ```
    pub fn new() -> OpenOptions {
        OpenOptions {
            policy: Policy {
                mode: 0o600,
                create: true,
                allow_foreign_pid_namespace: false,
                allow_network_filesystem: false,
                allow_other_owner: false,
            },
        }
    }

    /// Permission bits of a file this call creates (default `0600`; `0660` with a shared group
    /// lets a group of users share it). Bits that would let others write are refused at open.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("rm-doc-mode-{}", std::process::id()));
    /// use std::os::unix::fs::PermissionsExt;
    /// let _m = robust_mutex::OpenOptions::new().mode(0o640).open(&path)?;
    /// assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    /// # drop(_m); robust_mutex::SharedMutex::destroy(&path)?;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn mode(&mut self, mode: u32) -> &mut OpenOptions {
        self.policy.mode = mode & 0o7777;
        self
    }

    /// Whether a missing file is created (default `true`); with `false` it is `ENOENT`.
    ///
    /// ```
    /// let err = robust_mutex::OpenOptions::new().create(false).open("/nonexistent/lock").unwrap_err();
    /// assert_eq!(err.code(), "ENOENT");
    /// ```
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.policy.create = create;
        self
    }

    /// Accepts a file initialised in another PID namespace, and opening from a process that
    /// cannot read its own PID namespace (no `/proc`), which is otherwise refused too (default
    /// `false`: `Error::ForeignPidNamespace`). An unknown namespace is never taken for ours.
    ///
    /// What still holds across namespaces: mutual exclusion (the lock word is only compared
    /// with zero and with the caller's own id), and owner death for a holder that dies or whose
    /// thread ends (the kernel marks the lock in the dying thread's own namespace).
    ///
    /// What is lost: a holder in another namespace is never probed, so one that `exec`s from a
    /// thread other than its main thread (which the kernel does not report) keeps the lock
    /// until someone re-initialises it (`reset` once nobody has it open); waiters time out
    /// instead of taking a lock that may still be held. A thread whose id here equals the
    /// holder's id in its own namespace is told [`Error::Deadlock`](crate::Error::Deadlock)
    /// instead of waiting. `state()` shows the holder's ids as its namespace numbers them.
    ///
    /// ```
    /// let options = robust_mutex::OpenOptions::new().allow_foreign_pid_namespace(true).clone();
    /// # let _ = options;
    /// ```
    pub fn allow_foreign_pid_namespace(&mut self, allow: bool) -> &mut OpenOptions {
        self.policy.allow_foreign_pid_namespace = allow;
        self
    }

    /// Accepts files on network and FUSE filesystems (default `false`). A futex only works
    /// within one kernel: use this only when every process runs on this machine and the
    /// filesystem supports shared writable mappings.
    ///
    /// ```
    /// let options = robust_mutex::OpenOptions::new().allow_network_filesystem(true).clone();
    /// # let _ = options;
    /// ```
    pub fn allow_network_filesystem(&mut self, allow: bool) -> &mut OpenOptions {
        self.policy.allow_network_filesystem = allow;
        self
    }

    /// Accepts a file owned by another user (default `false`). Whoever can write the file can
    /// corrupt the memory of every holder, so only share files between users who trust each
    /// other (mode `0660` and a dedicated group).
    ///
    /// ```
    /// let options = robust_mutex::OpenOptions::new().allow_other_owner(true).clone();
    /// # let _ = options;
    /// ```
    pub fn allow_other_owner(&mut self, allow: bool) -> &mut OpenOptions {
        self.policy.allow_other_owner = allow;
        self
    }

    /// Opens or creates the mutex file at `path`.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("rm-doc-oo-open-{}", std::process::id()));
    /// let mutex = robust_mutex::OpenOptions::new().open(&path)?;
    /// assert_eq!(mutex.path(), Some(path.as_path()));
    /// # drop(mutex); robust_mutex::SharedMutex::destroy(&path)?;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    pub fn open(&self, path: impl AsRef<Path>) -> Result<SharedMutex, Error> {
        SharedMutex::open_with(path.as_ref(), self)
    }

    /// Adopts an inherited descriptor with these options (see [`SharedMutex::from_fd`]).
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// let original = robust_mutex::SharedMutex::anonymous()?;
    /// let fd = original.as_fd().try_clone_to_owned().unwrap();
    /// let again = robust_mutex::OpenOptions::new().from_fd(fd)?;
    /// # let _ = again;
    /// # Ok::<(), robust_mutex::Error>(())
    /// ```
    #[cfg(unix)]
    pub fn from_fd(&self, fd: OwnedFd) -> Result<SharedMutex, Error> {
        SharedMutex::from_fd_with(fd, self)
    }
}

/// What `open` accepts, from the public `OpenOptions`.
#[derive(Clone, Debug)]
#[cfg_attr(not(supported), allow(dead_code))]
pub(crate) struct Policy {
    pub mode: u32,
    pub create: bool,
    pub allow_foreign_pid_namespace: bool,
    pub allow_network_filesystem: bool,
    pub allow_other_owner: bool,
}

//! What differs between operating systems in the binding: byte paths and inherited descriptors
//! are Unix notions. On Windows a byte path must be UTF-8, and `fromFd`/`fd` are unsupported
//! (an anonymous mutex is handed to children by its descriptor, which Windows does not have).

use std::path::PathBuf;

use napi::Result;
use robust_mutex::SharedMutex;

#[cfg(unix)]
mod imp {
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    use napi::Result;
    use robust_mutex::SharedMutex;

    use crate::errors::{coded, to_napi};

    pub(crate) fn path_from_bytes(bytes: &[u8]) -> Result<PathBuf> {
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }

    pub(crate) fn open_inherited(fd: i32) -> Result<SharedMutex> {
        if fd < 0 {
            return Err(coded("EBADF", format!("{fd} is not a file descriptor")));
        }
        // SAFETY: only borrowed for the duplication below; `fcntl(F_DUPFD_CLOEXEC)` reports a
        // closed descriptor as EBADF instead of misbehaving.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let owned = borrowed
            .try_clone_to_owned()
            .map_err(|e| coded("EBADF", format!("cannot use file descriptor {fd}: {e}")))?;
        SharedMutex::from_fd(owned).map_err(to_napi)
    }

    pub(crate) fn fd_of(mutex: &SharedMutex) -> i32 {
        mutex.as_fd().as_raw_fd()
    }
}

#[cfg(not(unix))]
mod imp {
    use std::path::PathBuf;

    use napi::Result;
    use robust_mutex::SharedMutex;

    use crate::errors::coded;

    pub(crate) fn path_from_bytes(bytes: &[u8]) -> Result<PathBuf> {
        std::str::from_utf8(bytes)
            .map(PathBuf::from)
            .map_err(|_| coded("EINVAL", "a Buffer path must be UTF-8 on this platform"))
    }

    pub(crate) fn open_inherited(_fd: i32) -> Result<SharedMutex> {
        Err(coded("EUNSUPPORTED", "fromFd needs Unix file descriptors"))
    }

    pub(crate) fn fd_of(_mutex: &SharedMutex) -> i32 {
        -1
    }
}

/// A path given as bytes (a Buffer).
pub(crate) fn path_from_bytes(bytes: &[u8]) -> Result<PathBuf> {
    imp::path_from_bytes(bytes)
}

/// Opens the mutex behind an inherited descriptor (duplicated: the caller keeps its own).
pub(crate) fn open_inherited(fd: i32) -> Result<SharedMutex> {
    imp::open_inherited(fd)
}

/// The descriptor to hand to child processes; -1 where there is none.
pub(crate) fn fd_of(mutex: &SharedMutex) -> i32 {
    imp::fd_of(mutex)
}

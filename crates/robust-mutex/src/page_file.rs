//! A mutex file's page, as both file-backed backends (the pthread one on Linux, the file lock on
//! macOS and FreeBSD) handle it: the checks made before a byte of the file is trusted, the read
//! of its page with `pread`, and its shared mapping. Each backend's header decides what the
//! bytes mean; both pages are [`PAGE_SIZE`] bytes.

use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd};
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::stat::SFlag;

use crate::error::Error;
use crate::options::Policy;

/// The size of a mutex file of either backend: one page.
pub(crate) const PAGE_SIZE: usize = 4096;

/// A mode that lets every user write the file is refused at creation exactly as every opener
/// would refuse the file afterwards: never a file its own creator can use and nobody else can.
pub(crate) fn refuse_insecure_mode(mode: u32) -> Result<(), Error> {
    if mode & 0o002 == 0 {
        return Ok(());
    }
    Err(Error::Insecure { path: None, reason: insecure_mode_reason(mode) })
}

fn insecure_mode_reason(mode: u32) -> String {
    format!("mode {:o} lets every user write it, and a writer can corrupt the memory of every holder", mode & 0o7777)
}

/// Refuses, from its `fstat`, a file that must not be mapped or trusted: not a regular file,
/// owned by another user (unless the policy allows it), or writable by every user.
pub(crate) fn check_kind_and_owner(st: &libc::stat, policy: &Policy) -> Result<(), Error> {
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if kind != SFlag::S_IFREG {
        let what = match kind {
            SFlag::S_IFDIR => "a directory",
            SFlag::S_IFIFO => "a FIFO",
            SFlag::S_IFSOCK => "a socket",
            SFlag::S_IFCHR => "a character device",
            SFlag::S_IFBLK => "a block device",
            _ => "not a regular file",
        };
        return Err(Error::BadMutex { path: None, reason: format!("it is {what}") });
    }
    // SAFETY: geteuid cannot fail and has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if st.st_uid != euid && !policy.allow_other_owner {
        return Err(Error::Insecure {
            path: None,
            reason: format!(
                "owned by uid {}, not by this process's uid {euid} (see OpenOptions::allow_other_owner)",
                st.st_uid
            ),
        });
    }
    if st.st_mode & 0o002 != 0 {
        return Err(Error::Insecure { path: None, reason: insecure_mode_reason(st.st_mode as u32) });
    }
    Ok(())
}

/// Reads the file's page with `pread`, nothing mapped or written: fewer bytes when the file is
/// shorter (the header's validation refuses it then).
pub(crate) fn read_page(fd: BorrowedFd<'_>) -> Result<Vec<u8>, Error> {
    let mut page = vec![0u8; PAGE_SIZE];
    let mut filled = 0;
    while filled < PAGE_SIZE {
        match nix::sys::uio::pread(fd, &mut page[filled..], filled as libc::off_t) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("read", None, e)),
        }
    }
    page.truncate(filled);
    Ok(page)
}

/// A file's page mapped read-write and `MAP_SHARED`, unmapped on drop.
pub(crate) struct SharedPage {
    page: NonNull<u8>,
}

// SAFETY: the page is plain shared memory; each backend reads and writes it concurrently only
// through atomics (and, on Linux, the process-shared pthread mutex inside it).
unsafe impl Send for SharedPage {}
// SAFETY: as above.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// Maps the first page of `fd`. The caller has checked that the file is at least one page
    /// long (a shorter file would raise SIGBUS on access).
    pub(crate) fn map(fd: impl AsFd) -> Result<SharedPage, Error> {
        let len = NonZeroUsize::new(PAGE_SIZE).expect("non-zero");
        // SAFETY: a new mapping chosen by the kernel; it aliases no Rust object. The file is at
        // least PAGE_SIZE bytes (checked by every caller before mapping).
        let page =
            unsafe { mmap(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, fd, 0) }
                .map_err(|e| Error::os("mmap", None, e))?;
        Ok(SharedPage { page: page.cast() })
    }

    /// The start of the page, page-aligned, valid for PAGE_SIZE bytes while `self` lives.
    #[inline(always)]
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.page.as_ptr()
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: mapped in `map` with this length; everything built from the pointer borrows
        // the mapping that owns `self`, so nothing refers to the page any more.
        let _ = unsafe { munmap(self.page.cast(), PAGE_SIZE) };
    }
}

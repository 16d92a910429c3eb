//! The shared mapping of a file-lock mutex file's page (its header of atomics).

use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::ptr::NonNull;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use super::header::{Shared, FILE_SIZE};
use crate::error::Error;

/// One `MAP_SHARED` page, unmapped on drop.
pub(crate) struct Mapping {
    page: NonNull<u8>,
}

// SAFETY: the page is plain shared memory, only accessed through the atomics of `Shared`.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first page of `fd`, a file validated to be at least one page long.
    pub(crate) fn new(fd: impl AsFd) -> Result<Mapping, Error> {
        let len = NonZeroUsize::new(FILE_SIZE).expect("non-zero");
        // SAFETY: a new mapping chosen by the kernel; it aliases no Rust object, and the file is
        // at least FILE_SIZE bytes (validated by every caller).
        let page =
            unsafe { mmap(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, fd, 0) }
                .map_err(|e| Error::os("mmap", None, e))?;
        Ok(Mapping { page: page.cast() })
    }

    /// The header's atomics.
    pub(crate) fn header(&self) -> &Shared {
        // SAFETY: the page is FILE_SIZE bytes, page-aligned and lives as long as `self`; `Shared`
        // is repr(C), smaller than the page and made of atomics only, so shared access is sound
        // whatever other processes write meanwhile.
        unsafe { &*self.page.as_ptr().cast::<Shared>() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length; every reference from `header` borrows `self`.
        let _ = unsafe { munmap(self.page.cast(), FILE_SIZE) };
    }
}

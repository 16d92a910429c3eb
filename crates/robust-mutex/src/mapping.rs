//! The shared mapping of a mutex file's page.

use std::os::fd::AsFd;

use crate::error::Error;
use crate::header::{self, FILE_SIZE, MUTEX_OFFSET};
use crate::page_file::{SharedPage, PAGE_SIZE};
use crate::raw::RawMutex;

const _: () = assert!(FILE_SIZE == PAGE_SIZE);

/// One `MAP_SHARED` page of a mutex file, unmapped on drop.
pub(crate) struct Mapping {
    page: SharedPage,
}

impl Mapping {
    /// Maps the first page of `fd` read-write and shared. The caller has checked that the file is
    /// at least one page long (a shorter file would raise SIGBUS on access).
    pub(crate) fn new(fd: impl AsFd) -> Result<Mapping, Error> {
        Ok(Mapping { page: SharedPage::map(fd)? })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.page.as_ptr()
    }

    /// The header's atomics.
    pub(crate) fn header(&self) -> &header::Shared {
        // SAFETY: the page is FILE_SIZE bytes, page-aligned, and lives as long as `self`;
        // `header::Shared` is repr(C), fits before MUTEX_OFFSET and consists of atomics only, so
        // shared access is sound whatever other processes write to the page meanwhile.
        unsafe { &*self.page.as_ptr().cast::<header::Shared>() }
    }

    /// The mutex inside the page, borrowed from the mapping.
    pub(crate) fn raw_mutex(&self) -> RawMutex<'_> {
        // SAFETY: MUTEX_OFFSET is 64-byte aligned and MUTEX_OFFSET + sizeof(pthread_mutex_t) fits
        // in the page (asserted in header.rs); the returned value borrows `self`, which keeps the
        // page mapped.
        unsafe { RawMutex::from_ptr(self.page.as_ptr().add(MUTEX_OFFSET).cast()) }
    }

    /// Keeps the page mapped for the rest of the process: used when a lock in it may still be
    /// held by this process, because unmapping would break the kernel's robust-list walk at
    /// thread exit (the lock would never be reported as abandoned).
    pub(crate) fn leak(self) {
        std::mem::forget(self);
    }
}

//! The shared mapping of a file-lock mutex file's page (its header of atomics).

use std::os::fd::AsFd;

use super::header::{Shared, FILE_SIZE};
use crate::error::Error;
use crate::page_file::{SharedPage, PAGE_SIZE};

const _: () = assert!(FILE_SIZE == PAGE_SIZE);

/// One `MAP_SHARED` page, unmapped on drop.
pub(crate) struct Mapping {
    page: SharedPage,
}

impl Mapping {
    /// Maps the first page of `fd`, a file validated to be at least one page long.
    pub(crate) fn new(fd: impl AsFd) -> Result<Mapping, Error> {
        Ok(Mapping { page: SharedPage::map(fd)? })
    }

    /// The header's atomics.
    pub(crate) fn header(&self) -> &Shared {
        // SAFETY: the page is FILE_SIZE bytes, page-aligned and lives as long as `self`; `Shared`
        // is repr(C), smaller than the page and made of atomics only, so shared access is sound
        // whatever other processes write meanwhile.
        unsafe { &*self.page.as_ptr().cast::<Shared>() }
    }
}

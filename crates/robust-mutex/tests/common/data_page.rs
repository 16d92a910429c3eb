//! A page of shared 64-bit words in a file (`MAP_SHARED`): the protected state that processes
//! under test update under the lock. Shared by the conformance and torture tests.

use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::AtomicU64;

/// A shared, writable mapping of the first page of a data file: the "protected state" the
/// torture workers update under the mutex, seen by every process at once.
pub struct DataPage {
    ptr: std::ptr::NonNull<std::ffi::c_void>,
}

/// Size of a [`DataPage`].
pub const DATA_SIZE: usize = 4096;

// SAFETY: the page is plain shared memory, accessed only through `AtomicU64`s.
unsafe impl Send for DataPage {}
// SAFETY: as above.
unsafe impl Sync for DataPage {}

impl DataPage {
    /// Creates the data file at `path` zero-filled (replacing any content) and maps it.
    pub fn create(path: &Path) -> DataPage {
        std::fs::write(path, [0u8; DATA_SIZE]).expect("create the data page");
        DataPage::open(path)
    }

    /// Creates (zero-filled) or opens the data file at `path` and maps its first page.
    pub fn open(path: &Path) -> DataPage {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .expect("open data file");
        file.set_len(DATA_SIZE as u64).expect("size data file");
        let len = NonZeroUsize::new(DATA_SIZE).expect("non-zero");
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        // SAFETY: a new shared mapping of a file we just sized to DATA_SIZE bytes; it aliases no
        // Rust object and is only accessed through atomics.
        let ptr = unsafe {
            mmap(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, file.as_fd(), 0)
        }
        .expect("mmap data file");
        DataPage { ptr }
    }

    /// The `index`-th 64-bit word of the page.
    pub fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index < DATA_SIZE / 8, "word {index} is outside the data page");
        // SAFETY: the mapping is DATA_SIZE bytes, page-aligned, alive as long as `self`, and the
        // index was bounds-checked; AtomicU64 has the size and alignment of a u64.
        unsafe { &*self.ptr.as_ptr().cast::<AtomicU64>().add(index) }
    }
}

impl DataPage {
    /// The `index`-th 32-bit word of the page (for futexes). Do not also access these bytes
    /// through [`word`](Self::word).
    pub fn word32(&self, index: usize) -> &std::sync::atomic::AtomicU32 {
        assert!(index < DATA_SIZE / 4, "word32 {index} is outside the data page");
        // SAFETY: in bounds (checked), aligned (page-aligned base), alive as long as `self`.
        unsafe { &*self.ptr.as_ptr().cast::<std::sync::atomic::AtomicU32>().add(index) }
    }
}

impl Drop for DataPage {
    fn drop(&mut self) {
        // SAFETY: mapped in `open` with this length; the borrow checker ties every reference
        // handed out by `word` to `self`, so none outlives this.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr, DATA_SIZE) };
    }
}

//! The backend under test, for the few tests that look inside the pthread backend's file.
//!
//! With the `file-lock-backend` feature the crate has no pthread mutex: the tests that use these
//! items are `#[ignore]`d there with the reason (`cfg_attr(feature = "file-lock-backend",
//! ignore = ...)`), so the stand-ins below are never reached by a test that runs.

#[cfg(not(feature = "file-lock-backend"))]
#[allow(unused_imports)] // not every test binary uses both
pub use robust_mutex::__private::{raw_mutex_ptr, MUTEX_OFFSET};

/// Stand-in: the file-lock backend's file has no pthread mutex.
#[cfg(feature = "file-lock-backend")]
#[allow(dead_code)]
pub const MUTEX_OFFSET: usize = 0;

/// Stand-in: the file-lock backend's file has no pthread mutex.
#[cfg(feature = "file-lock-backend")]
#[allow(dead_code)]
pub fn raw_mutex_ptr(_: &robust_mutex::SharedMutex) -> *mut libc::pthread_mutex_t {
    unreachable!("the file-lock backend has no pthread mutex; this test must be ignored there")
}

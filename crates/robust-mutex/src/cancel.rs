//! Cancellation of a pending wait from another thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag another thread sets to abandon a [`lock_until`](crate::SharedMutex::lock_until) wait.
/// The waiter notices it within one wait slice (at most 100 ms) and fails with
/// [`Error::Cancelled`](crate::Error::Cancelled). Clones share the flag.
///
/// ```
/// use std::time::{Duration, Instant};
/// use robust_mutex::{CancelToken, Error, SharedMutex};
///
/// let mutex = SharedMutex::anonymous()?;
/// let _held = mutex.lock()?;
/// let cancel = CancelToken::new();
/// let result = std::thread::scope(|s| {
///     let waiter = s.spawn(|| mutex.lock_until(Instant::now() + Duration::from_secs(60), &cancel).map(drop));
///     cancel.cancel();
///     waiter.join().unwrap()
/// });
/// assert!(matches!(result, Err(Error::Cancelled)));
/// # Ok::<(), robust_mutex::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    ///
    /// ```
    /// assert!(!robust_mutex::CancelToken::new().is_cancelled());
    /// ```
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancels every wait using this token (or a clone of it), now and later.
    ///
    /// ```
    /// let token = robust_mutex::CancelToken::new();
    /// token.cancel();
    /// assert!(token.is_cancelled());
    /// ```
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    ///
    /// ```
    /// let token = robust_mutex::CancelToken::new();
    /// let clone = token.clone();
    /// clone.cancel();
    /// assert!(token.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

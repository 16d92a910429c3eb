//! Bench-only timestamps along a contended `lock()`'s wake path, to say where a handoff's time
//! goes (`npm run bench` sets `ROBUST_MUTEX_TRACE_HANDOFF=1` in its handoff child). Off, each
//! watch pays one load of a cached flag; nothing on the uncontended path looks here.
//!
//! Times are CLOCK_MONOTONIC nanoseconds, the clock `process.hrtime.bigint()` reads, so they
//! line up with timestamps taken in JavaScript in any process of the machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use napi_derive::napi;

/// The points recorded for the last finished watch.
#[derive(Clone, Copy)]
pub(crate) enum Point {
    /// The watcher thread returned from its futex wait (the lock was released).
    Woke = 0,
    /// The watcher queued the promise's settlement on the threadsafe function.
    Queued = 1,
    /// The settlement runs on the JS thread (before the promise's reactions).
    OnJsThread = 2,
}

static LAST: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

pub(crate) fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("ROBUST_MUTEX_TRACE_HANDOFF").is_some_and(|v| v == "1"))
}

/// Records `point` now, when tracing is on.
#[inline]
pub(crate) fn mark(point: Point) {
    if enabled() {
        LAST[point as usize].store(monotonic_ns(), Ordering::Relaxed);
    }
}

#[cfg(unix)]
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC exists on every Unix we build.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Not traced elsewhere (Node's hrtime is not CLOCK_MONOTONIC there): the points stay 0.
#[cfg(not(unix))]
fn monotonic_ns() -> u64 {
    0
}

/// The last watch's `[woke, queued, onJsThread]` CLOCK_MONOTONIC ns (as strings: they exceed
/// 2^53), all "0" unless `ROBUST_MUTEX_TRACE_HANDOFF=1` was set when the process started (and
/// always on Windows).
#[napi]
pub fn handoff_trace() -> Vec<String> {
    LAST.iter().map(|t| t.load(Ordering::Relaxed).to_string()).collect()
}

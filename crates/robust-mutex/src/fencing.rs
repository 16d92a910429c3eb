//! Fencing tokens, the same on every backend: each acquisition takes the next value of a 64-bit
//! counter kept in the mutex file's header, so tokens strictly increase per file, across every
//! process, owner death, reset and re-initialisation, and none is ever issued twice. A holder
//! hands its token to whatever it protects, which refuses writes carrying an older one: a stale
//! holder (paused, presumed dead) is fenced off downstream.
//!
//! The counter is seeded from the wall clock in nanoseconds since the Unix epoch when a file is
//! created, and raised to the wall clock (never lowered) by every reset and re-initialisation.
//! Acquisitions add one. No lock can be acquired even once per nanosecond (each acquisition is
//! an atomic read-modify-write on a shared word, plus its release), so a file's counter never
//! overtakes the clock: a file destroyed and created again at the same path starts above every
//! token the old one issued, as long as the wall clock was not stepped back in between.
//! 2^64 nanoseconds after 1970 is the year 2554.
//!
//! A file made by a build without tokens holds 0 there (the bytes were reserved, and zero, and
//! such a build never writes them). 0 therefore means "never seeded": the first token issued
//! from it starts from the wall clock, as a new file's would. Counting up from 1 instead would
//! go below the tokens of an earlier file at the same path (and reissue them once an older
//! build re-created the file again), as soon as an older build re-creates a file during a
//! rolling upgrade.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock in nanoseconds since the Unix epoch (0 for a clock set before 1970).
fn wall_clock_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The counter of a new file: the wall clock (see the module comment).
#[cfg_attr(not(any(supported, file_lock, named_mutex)), allow(dead_code))]
pub(crate) fn seed() -> u64 {
    wall_clock_ns()
}

/// The counter after a reset or a re-initialisation: never lower than `last`, caught up with the
/// wall clock.
#[cfg_attr(not(any(supported, file_lock, named_mutex)), allow(dead_code))]
pub(crate) fn reseed(last: u64) -> u64 {
    last.max(wall_clock_ns())
}

/// The token after `last`: `last + 1`, or, when `last` is 0 (a file made by a build without
/// tokens, never seeded), one above the wall clock. (Wrapping only after the year 2554.) The
/// branch tests a value already loaded and is practically never taken: no cost on the fast path.
#[inline(always)]
#[cfg_attr(not(any(supported, file_lock, named_mutex)), allow(dead_code))]
pub(crate) fn next(last: u64) -> u64 {
    if last == 0 {
        seed().wrapping_add(1)
    } else {
        last.wrapping_add(1)
    }
}

/// Issues the next token of a mapped header's counter and returns it. Only the lock holder
/// writes the counter, and the lock orders one holder's store before the next holder's load, so
/// a plain load and store suffice (no read-modify-write on the fast path); they are atomics
/// because `state()` reads the counter while a holder writes it.
#[inline(always)]
#[cfg_attr(not(any(supported, file_lock)), allow(dead_code))]
pub(crate) fn issue(counter: &AtomicU64) -> u64 {
    let token = next(counter.load(Ordering::Relaxed));
    counter.store(token, Ordering::Relaxed);
    token
}

/// Raises a mapped header's counter as [`reseed`] does. Only under the lock (or with the file to
/// oneself), like [`issue`].
#[cfg_attr(not(any(supported, file_lock)), allow(dead_code))]
pub(crate) fn raise(counter: &AtomicU64) {
    counter.store(reseed(counter.load(Ordering::Relaxed)), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_strictly_increase() {
        let counter = AtomicU64::new(seed());
        let first = issue(&counter);
        let second = issue(&counter);
        assert!(second > first);
        assert_eq!(counter.load(Ordering::Relaxed), second, "the counter is the last token issued");
    }

    #[test]
    fn an_unseeded_counter_starts_from_the_clock() {
        let before = wall_clock_ns();
        let counter = AtomicU64::new(0);
        let first = issue(&counter);
        assert!(first > before, "token {first} of a never-seeded counter is above the clock {before}");
        assert_eq!(issue(&counter), first + 1, "then it counts up by one");
    }

    #[test]
    fn a_seed_is_the_wall_clock_in_nanoseconds() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        let seeded = seed();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        assert!(before <= seeded && seeded <= after, "{before} <= {seeded} <= {after}");
    }

    #[test]
    fn reseeding_never_lowers_and_catches_up_with_the_clock() {
        let ahead = u64::MAX - 10;
        assert_eq!(reseed(ahead), ahead);
        let behind = 5;
        assert!(reseed(behind) > 1_600_000_000_000_000_000, "raised to the clock");
        let counter = AtomicU64::new(0);
        raise(&counter);
        let raised = counter.load(Ordering::Relaxed);
        assert!(raised > 0);
        raise(&counter);
        assert!(counter.load(Ordering::Relaxed) >= raised);
    }
}

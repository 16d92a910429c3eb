//! Memory of the guards: an acquisition after an owner death carries a boxed record of the dead
//! owner, which every way of releasing it must free (`release(self)` once leaked it). Counted
//! with a global allocator that tracks the bytes each thread allocated and freed, in a binary of
//! its own.

use robust_mutex::SharedMutex;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::live;

/// A thread locks and ends holding: the next acquisition has a dead owner (and its record).
/// Joined with `pthread_join`, which returns only once the kernel has processed the thread's
/// robust list.
fn abandon(mutex: &SharedMutex) {
    let mutex = mutex.clone();
    std::thread::spawn(move || std::mem::forget(mutex.lock().unwrap())).join().unwrap();
}

#[test]
fn every_release_of_an_owner_died_guard_frees_the_dead_owner_record() {
    let mutex = SharedMutex::anonymous().unwrap();
    for how in ["release", "drop", "release-owned", "release-raw"] {
        abandon(&mutex);
        let before = live();
        match how {
            "release" => {
                let guard = mutex.lock().unwrap();
                assert!(guard.owner_died() && guard.dead_owner().is_some());
                guard.release().unwrap();
            }
            "drop" => {
                let guard = mutex.lock().unwrap();
                assert!(guard.owner_died());
                drop(guard);
            }
            "release-owned" => {
                let guard = mutex.try_lock_owned().unwrap().unwrap();
                assert!(guard.owner_died());
                guard.release().unwrap();
            }
            _ => {
                let held = mutex.try_acquire_raw().unwrap().unwrap();
                assert!(held.owner_died());
                // SAFETY: acquired just above on this thread from this mutex.
                unsafe { mutex.release_raw(held) }.unwrap();
            }
        }
        let after = live();
        assert_eq!(after, before, "{how}: {} bytes leaked", after - before);
    }
}

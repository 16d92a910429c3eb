//! Review of the two-word acquisition (branch `rustguard`): the dead owner's record now lives in
//! a box that the acquisition's tagged flags word points to. These tests walk the release paths
//! that `guard_memory.rs` does not (hand back, dropping an owned guard, dropping a raw
//! acquisition without releasing, poisoning) and check that each frees the record exactly once
//! and that the record and flags still read right through the box. Counted with a global
//! allocator per thread, in a binary of its own; owner deaths are real (a thread ends holding).

use robust_mutex::{Error, SharedMutex};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::live;

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// A thread locks and ends holding; returns its tid. Joined: the kernel has processed its robust
/// list (or the file-lock backend its exit) when this returns.
fn abandon(mutex: &SharedMutex) -> i32 {
    let mutex = mutex.clone();
    std::thread::spawn(move || {
        std::mem::forget(mutex.lock().unwrap());
        gettid()
    })
    .join()
    .unwrap()
}

fn me() -> i32 {
    std::process::id() as i32
}

/// Runs `body` between two counts of this thread's live bytes and asserts none were left.
fn no_leak(what: &str, body: impl FnOnce()) {
    let before = live();
    body();
    let after = live();
    assert_eq!(after, before, "{what}: {} bytes leaked", after - before);
}

#[test]
fn hand_back_of_an_owner_died_acquisition_frees_the_record_and_passes_the_death_on() {
    let mutex = SharedMutex::anonymous().unwrap();
    let tid = abandon(&mutex);
    no_leak("hand_back_raw", || {
        let held = mutex.try_acquire_raw().unwrap().unwrap();
        assert!(held.owner_died());
        let dead = held.dead_owner().expect("the dead thread recorded itself");
        assert_eq!((dead.pid, dead.tid), (me(), tid));
        // SAFETY: acquired just above on this thread from this mutex.
        unsafe { mutex.hand_back_raw(held) }.unwrap();
    });
    // The next acquirer is told the same death, with the same recorded process.
    no_leak("release after hand back", || {
        let guard = mutex.lock().unwrap();
        assert!(guard.owner_died());
        assert_eq!(guard.dead_owner().map(|d| d.pid), Some(me()));
        drop(guard);
    });
    let clean = mutex.lock().unwrap();
    assert!(!clean.owner_died() && clean.dead_owner().is_none());
}

#[test]
fn dropping_an_owned_guard_or_a_raw_acquisition_frees_the_record() {
    let mutex = SharedMutex::anonymous().unwrap();
    abandon(&mutex);
    no_leak("drop OwnedMutexGuard", || {
        let guard = mutex.lock_owned().unwrap();
        assert!(guard.owner_died() && guard.dead_owner().is_some());
        drop(guard);
    });
    assert!(!mutex.state().locked);

    // A raw acquisition dropped without a release keeps the lock (documented) but must still free
    // its own record; done on a thread that then ends, so the lock is recovered as a death. What
    // stays allocated is compared with a clean acquisition dropped the same way: the file-lock
    // backend keeps a per-thread record of the locks a thread holds, which stays while it holds.
    let tid = abandon(&mutex);
    let (died, residue, dropper_tid) = raw_drop_residue(&mutex);
    assert_eq!(died, Some(tid));
    let (clean, clean_residue, _) = raw_drop_residue(&SharedMutex::anonymous().unwrap());
    assert_eq!(clean, None);
    assert_eq!(residue, clean_residue, "drop RawAcquisition: the dead owner's record was not freed");
    let guard = mutex.lock().unwrap();
    assert!(guard.owner_died());
    assert_eq!(guard.dead_owner().map(|d| (d.pid, d.tid)), Some((me(), dropper_tid)));
}

/// On a thread that then ends holding: acquires raw, drops the acquisition without releasing.
/// Returns the dead owner's tid it saw, the bytes still allocated by the thread after the drop,
/// and the thread's tid.
fn raw_drop_residue(mutex: &SharedMutex) -> (Option<i32>, isize, i32) {
    let mutex = mutex.clone();
    std::thread::spawn(move || {
        let before = live();
        let held = mutex.try_acquire_raw().unwrap().unwrap();
        assert_eq!(held.owner_died(), held.dead_owner().is_some());
        let dead = held.dead_owner().map(|d| d.tid);
        drop(held);
        (dead, live() - before, gettid())
    })
    .join()
    .unwrap()
}

#[test]
fn poisoning_through_the_boxed_flags_word_still_poisons() {
    let mutex = SharedMutex::anonymous().unwrap();
    abandon(&mutex);
    no_leak("poison + drop", || {
        let mut guard = mutex.lock().unwrap();
        assert!(guard.owner_died() && guard.dead_owner().is_some());
        guard.poison();
        // Debug of a boxed acquisition shows the unpacked flags and the record.
        let shown = format!("{guard:?}");
        for part in ["owner_died: true", "poison: true", &format!("dead_owner: Some(OwnerInfo {{ pid: {}", me())] {
            assert!(shown.contains(part), "{part:?} missing from {shown}");
        }
        drop(guard);
    });
    assert!(matches!(mutex.lock(), Err(Error::NotRecoverable)));
    mutex.reset_poison().unwrap();
    assert!(!mutex.lock().unwrap().owner_died());
}

// With the Node binding's table: released where it lies, then the entry removed.
#[test]
fn release_in_place_then_removing_the_entry_frees_the_record_once() {
    let mutex = SharedMutex::anonymous().unwrap();
    let tid = abandon(&mutex);
    no_leak("release_raw_in_place + swap_remove", || {
        let mut table = vec![mutex.try_acquire_raw().unwrap().unwrap()];
        assert!(table[0].owner_died());
        assert_eq!(table[0].dead_owner().map(|d| d.tid), Some(tid));
        table[0].poison();
        // SAFETY: same mutex, same thread; the entry is removed right after.
        let result = unsafe { mutex.release_raw_in_place(&table[0]) };
        drop(table.swap_remove(0)); // released just above: only the entry goes
        result.unwrap();
        drop(table);
    });
    assert!(mutex.state().poisoned);
}

//! The watch protocol (see the crate's README), checked with loom: every schedule within the
//! preemption bound. The scenarios must pass on the protocol as it is (`Protocol::REAL`); the
//! mutation tests show that each property can fail, by removing one step of the protocol; the
//! `bug_` tests are executions of the protocol as it was before the review
//! (`Protocol::BEFORE_REVIEW`) that strand a sleeper, and `real_` tests show the same scenarios
//! pass now.

mod model;

use model::{HolderEnd, Js, Protocol, Scenario, WakeOrder};

const ACQUIRE: Js = Js::Acquire { rounds: 2 };
const HAND_BACK: Js = Js::AcquireHandBack { rounds: 2 };

// ----- the protocol as it is -----

#[test]
fn unlock_with_a_sleeper_and_a_watcher_that_acquires() {
    Scenario::new(HolderEnd::Unlock, true, &[ACQUIRE]).check();
    Scenario::new(HolderEnd::Unlock, true, &[ACQUIRE]).order(WakeOrder::Lifo).check();
}

#[test]
fn unlock_with_a_sleeper_and_a_watcher_that_gives_up() {
    Scenario::new(HolderEnd::Unlock, true, &[Js::GiveUp]).check();
    Scenario::new(HolderEnd::Unlock, true, &[Js::GiveUp]).order(WakeOrder::Lifo).preemptions(Some(2)).check();
}

#[test]
fn unlock_with_a_sleeper_and_an_abort_racing_the_watch() {
    Scenario::new(HolderEnd::Unlock, true, &[Js::GiveUpOrAcquire]).check();
}

#[test]
fn death_with_a_sleeper_and_a_watcher_that_acquires() {
    Scenario::new(HolderEnd::Die, true, &[ACQUIRE]).check();
    Scenario::new(HolderEnd::Die, true, &[ACQUIRE]).order(WakeOrder::Lifo).check();
}

#[test]
fn death_with_a_sleeper_and_a_watcher_that_hands_the_death_back() {
    Scenario::new(HolderEnd::Die, true, &[HAND_BACK]).check();
}

#[test]
fn death_with_a_sleeper_and_a_watcher_that_gives_up() {
    Scenario::new(HolderEnd::Die, true, &[Js::GiveUp]).preemptions(Some(2)).check();
    Scenario::new(HolderEnd::Die, true, &[Js::GiveUpOrAcquire]).preemptions(Some(2)).check();
}

#[test]
fn two_watchers_and_a_sleeper() {
    Scenario::new(HolderEnd::Unlock, true, &[ACQUIRE, ACQUIRE]).check();
    Scenario::new(HolderEnd::Die, true, &[ACQUIRE, HAND_BACK]).check();
}

#[test]
fn two_watchers_one_giving_up_and_a_sleeper() {
    // Five threads: one slice per watch keeps this one to seconds.
    Scenario::new(HolderEnd::Unlock, true, &[ACQUIRE, Js::GiveUp]).slices(1).check();
}

#[test]
fn a_holder_that_barges_back_in() {
    Scenario::new(HolderEnd::UnlockRelockUnlock, true, &[ACQUIRE]).check();
    Scenario::new(HolderEnd::UnlockRelockUnlock, true, &[Js::GiveUpOrAcquire]).preemptions(Some(2)).check();
}

// ----- mutations: each removes one step of the protocol, and a property fails -----

#[test]
#[should_panic(expected = "deadlock")]
fn mutation_without_keep_waiters_flagged_strands_the_sleeper() {
    let proto = Protocol { keep_waiters_flagged: false, ..Protocol::BEFORE_REVIEW };
    Scenario::new(HolderEnd::Unlock, true, &[ACQUIRE]).proto(proto).check();
}

#[test]
#[should_panic(expected = "deadlock")]
fn mutation_without_any_pass_wake_strands_the_sleeper() {
    let proto = Protocol {
        watcher_passes_wake: false,
        js_passes_stale_wake: false,
        close_passes_wake: false,
        ..Protocol::BEFORE_REVIEW
    };
    Scenario::new(HolderEnd::Unlock, true, &[Js::GiveUp]).proto(proto).check();
}

#[test]
#[should_panic(expected = "deadlock")]
fn mutation_without_the_stale_watch_pass_wake_strands_the_sleeper() {
    let proto = Protocol { js_passes_stale_wake: false, ..Protocol::BEFORE_REVIEW };
    Scenario::new(HolderEnd::Unlock, true, &[Js::GiveUp]).proto(proto).check();
}

#[test]
#[should_panic(expected = "deadlock")]
fn mutation_without_the_watchers_own_pass_wake_strands_the_sleeper() {
    // The watch takes the unlock's wake, the holder barges back in, and the watch's last slice
    // ends (its deadline) with the lock held: it must pass the wake it took.
    let proto = Protocol { watcher_passes_wake: false, ..Protocol::BEFORE_REVIEW };
    Scenario::new(HolderEnd::UnlockRelockUnlock, true, &[ACQUIRE]).slices(1).proto(proto).preemptions(Some(3)).check();
}

#[test]
#[should_panic(expected = "deadlock")]
fn mutation_without_the_close_pass_wake_strands_the_sleeper() {
    let proto = Protocol { close_passes_wake: false, ..Protocol::FIXED };
    Scenario::new(HolderEnd::Unlock, true, &[Js::GiveUpThenClose]).proto(proto).check();
}

#[test]
#[should_panic(expected = "an owner death must be reported to exactly one acquirer")]
fn mutation_hand_back_forgetting_the_death_loses_the_report() {
    let proto = Protocol { hand_back_records_death: false, ..Protocol::REAL };
    Scenario::new(HolderEnd::Die, true, &[HAND_BACK]).proto(proto).check();
}

#[test]
#[should_panic(expected = "mutual exclusion")]
fn mutation_taking_the_lock_on_the_watchs_word_breaks_mutual_exclusion() {
    let proto = Protocol { js_trusts_the_watch: true, ..Protocol::REAL };
    Scenario::new(HolderEnd::UnlockRelockUnlock, false, &[ACQUIRE]).proto(proto).preemptions(Some(4)).check();
}

// ----- the bugs: the real protocol strands a C-library sleeper -----

/// `close()` right after a waiter gave up: `close()` passes a wake at once, but the stopped
/// watch's thread may still be parked; an unlock then wakes it, `wait_released` returns `Ok`
/// (it checks the token only between slices), and the callback, seeing the handle closed, does
/// not pass the wake on. The C-library sleeper sleeps forever on a free lock.
#[test]
#[should_panic(expected = "deadlock")]
fn bug_close_after_give_up_strands_the_sleeper() {
    Scenario::new(HolderEnd::Unlock, true, &[Js::GiveUpThenClose]).proto(Protocol::BEFORE_REVIEW).check();
}

/// The same with a worker terminated while its `lock()` waits: the teardown hook cancels the
/// watch, the watch returns `Ok` on the unlock's wake, and no JavaScript runs to pass it on.
#[test]
#[should_panic(expected = "deadlock")]
fn bug_worker_termination_strands_the_sleeper() {
    Scenario::new(HolderEnd::Unlock, true, &[Js::Terminate]).proto(Protocol::BEFORE_REVIEW).check();
}

/// The code now: every return of `wait_released` passes its wake on, so neither `close()` nor a
/// terminated worker has anything left to pass.
#[test]
fn real_close_and_termination_strand_nobody() {
    Scenario::new(HolderEnd::Unlock, true, &[Js::GiveUpThenClose]).check();
    Scenario::new(HolderEnd::Unlock, true, &[Js::Terminate]).check();
    Scenario::new(HolderEnd::Unlock, true, &[Js::GiveUpThenClose]).order(WakeOrder::Lifo).check();
    Scenario::new(HolderEnd::Die, true, &[Js::Terminate]).preemptions(Some(2)).check();
}

/// The step that made that so: without the pass on success, close and termination strand the
/// sleeper again.
#[test]
#[should_panic(expected = "deadlock")]
fn mutation_without_the_pass_on_success_strands_the_sleeper() {
    let proto = Protocol { watcher_passes_wake_on_success: false, ..Protocol::REAL };
    Scenario::new(HolderEnd::Unlock, true, &[Js::Terminate]).proto(proto).check();
}

/// The proposed fix: `wait_released` (or the watcher thread) passes the wake when its token was
/// cancelled by the time the wait returned, and the teardown hook passes a wake as `close()`
/// does.
#[test]
fn proposed_fix_close_and_termination() {
    Scenario::new(HolderEnd::Unlock, true, &[Js::GiveUpThenClose]).proto(Protocol::FIXED).check();
    Scenario::new(HolderEnd::Unlock, true, &[Js::Terminate]).proto(Protocol::FIXED).check();
    Scenario::new(HolderEnd::Unlock, true, &[Js::GiveUpThenClose])
        .proto(Protocol::FIXED)
        .order(WakeOrder::Lifo)
        .check();
    Scenario::new(HolderEnd::Die, true, &[Js::Terminate]).proto(Protocol::FIXED).preemptions(Some(2)).check();
}

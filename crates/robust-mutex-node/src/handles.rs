//! This JS thread's table of open handles.
//!
//! Handles are numbers into a thread-local table rather than wrapped objects: a napi-rs class
//! method call costs ~0.5 µs here, several times a whole lock/unlock. The table is thread-local
//! because each JS thread (main or worker) is its own lock owner: every lock in it was acquired
//! by the thread that can see it, and a worker's table dies with its thread.
//!
//! A handle number carries its slot's generation, so a number kept after `close()` never
//! reaches the handle that reuses the slot. Generations and each handle's token ids start at
//! random values, so code holding only the raw binding cannot guess a live (handle, token) pair
//! and release a lock it does not hold: a guess must hit the slot's 12-bit generation (the slot
//! index is small and guessable) and the one id held among 2^28. That guards against accidents
//! and casual misuse, not against code in the same thread (it can read a guard's token anyway).
//!
//! Token ids never repeat in a handle's life: a token kept after its release (a raw caller, or a
//! guard whose release failed) must never release a later acquisition. They start below 2^28 so
//! that a token (`id * 2 + owner_died`) stays a small integer for V8 (a Smi: returning it
//! allocates nothing; a 40-bit start made every tryLock() allocate a heap number, ~6% of a
//! tryLock()+release() pair) for the first 2^28 acquisitions of a handle at least; past 2^29
//! they are heap numbers again, correct and a few ns dearer.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};

use napi::bindgen_prelude::*;
use robust_mutex::{RawAcquisition, SharedMutex};

use crate::errors::{closed, coded, to_napi, Fallible};
use crate::token::Token;
use crate::watcher::Watcher;

const SLOT_BITS: u32 = 20;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

/// A handle's first token id is below this (see the module comment): its tokens are Smis for at
/// least 2^28 acquisitions.
const FIRST_ID_LIMIT: u64 = 1 << 28;

/// The last id a handle issues, so that a token (`id * 2 + 1`) is exact in a double; past it the
/// handle refuses to acquire (`ids_left`).
const ID_END: u64 = 1 << 51;

/// A lock held by this JS thread through one handle.
struct Held {
    id: u64,
    acquisition: RawAcquisition,
}

/// One open handle.
pub(crate) struct Handle {
    pub mutex: SharedMutex,
    pub watcher: Watcher,
    /// Locks this thread holds through this handle (rarely more than one).
    held: Vec<Held>,
    /// The last id issued; the next is the one after it (ids never repeat in a handle's life).
    last_id: u64,
}

impl Handle {
    /// Records a lock this thread just acquired; returns its token, and publishes its fencing
    /// token for the caller to read (see `fence.rs`; `env` is the running callback's).
    #[inline]
    pub(crate) fn hold(&mut self, env: napi::sys::napi_env, acquisition: RawAcquisition) -> f64 {
        crate::fence::publish(env, acquisition.fencing_token());
        // Below or at ID_END: every acquisition first asked `ids_left`.
        let id = self.last_id + 1;
        self.last_id = id;
        let token = Token { id, owner_died: acquisition.owner_died() };
        self.held.push(Held { id, acquisition });
        token.encode()
    }

    /// Refuses an acquisition, before it locks, once this handle has issued its last id: an id
    /// issued again would let a stale token release a later hold. (2^51 - 2^28 acquisitions:
    /// years at the fastest rate; reached in tests through `ROBUST_MUTEX_TEST_LAST_TOKEN_ID`.)
    #[inline(always)]
    pub(crate) fn ids_left(&self) -> Result<()> {
        if self.last_id < ID_END {
            return Ok(());
        }
        Err(coded("EOVERFLOW", "this handle has issued all its lock tokens; close it and open the mutex again"))
    }

    /// Unlocks (consistent after an owner death, or poisoned). The entry is gone either way: an
    /// unlock that fails (only a thread that does not hold the lock can get that) is not retried,
    /// and `index.ts` marks the guard released whatever this returns.
    #[inline]
    pub(crate) fn release(&mut self, id: u64, poison: bool) -> Fallible<()> {
        let Some(index) = self.held.iter().position(|h| h.id == id) else {
            return Err(coded("ERELEASED", "the lock guard was already released").into());
        };
        // Released where it lies, then removed: moving it out first cost a store-forwarding
        // stall (the value written to the stack in two halves, read back as one).
        let acquisition = &mut self.held[index].acquisition;
        if poison {
            acquisition.poison();
        }
        // SAFETY: `acquisition` was acquired from `self.mutex` by this thread (the table is
        // thread-local, so only the acquiring thread can reach the entry), and its entry is
        // removed right below whatever the call returned, so it is never released twice (the
        // core's release returns errors; it has no panic path once it has unlocked).
        let result = unsafe { self.mutex.release_raw_in_place(acquisition) };
        self.held.swap_remove(index);
        result.map_err(|err| to_napi(err).into())
    }

    pub(crate) fn dead_owner(&self, id: u64) -> Option<robust_mutex::OwnerInfo> {
        self.held.iter().find(|h| h.id == id).and_then(|h| h.acquisition.dead_owner())
    }

    pub(crate) fn holds_any(&self) -> bool {
        !self.held.is_empty()
    }
}

// Dropping a `Handle` that still holds keeps the lock held (a `RawAcquisition` does not unlock
// on drop): the critical section never finished, and the thread's exit makes the kernel report
// the owner death to the next acquirer.

struct Slot {
    generation: u32,
    handle: Option<Handle>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    teardown_hook: bool,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

fn split(handle: u32) -> (usize, u32) {
    ((handle & SLOT_MASK) as usize, handle >> SLOT_BITS)
}

/// Runs `f` on an open handle of this thread. (`E` is `napi::Error`, or its box on the hot path:
/// see `Fallible`.)
#[inline]
pub(crate) fn with_handle<T, E: From<napi::Error>>(
    handle: u32,
    f: impl FnOnce(&mut Handle) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let (index, generation) = split(handle);
    TABLE.with(|table| {
        let mut table = table.borrow_mut();
        match table.slots.get_mut(index) {
            Some(Slot { generation: g, handle: Some(h) }) if *g == generation => f(h),
            _ => Err(closed().into()),
        }
    })
}

/// Adds a handle; the first one of a thread also registers the environment's teardown hook.
pub(crate) fn register(env: &Env, mutex: SharedMutex) -> Result<u32> {
    let needs_hook = TABLE.with(|table| !table.borrow().teardown_hook);
    if needs_hook {
        // One hook per environment, never removed: napi-rs's remove_env_cleanup_hook leaks the
        // hook's boxed data, so a hook per handle leaked ~175 bytes per open/close.
        env.add_env_cleanup_hook((), |()| stop_all_watches())?;
        TABLE.with(|table| table.borrow_mut().teardown_hook = true);
    }
    // A random start below FIRST_ID_LIMIT: the first id is the one after it.
    let last_id = last_id_for_testing().unwrap_or_else(|| random() % FIRST_ID_LIMIT);
    let handle = Handle { mutex, watcher: Watcher::default(), held: Vec::new(), last_id };
    TABLE.with(|table| {
        let mut table = table.borrow_mut();
        let index = match table.slots.iter().position(|s| s.handle.is_none()) {
            Some(index) => index,
            None if table.slots.len() <= SLOT_MASK as usize => {
                table.slots.push(Slot { generation: random() as u32, handle: None });
                table.slots.len() - 1
            }
            None => return Err(coded("EMFILE", "too many open mutex handles in this thread")),
        };
        let slot = &mut table.slots[index];
        slot.generation = next_generation(slot.generation);
        slot.handle = Some(handle);
        Ok(index as u32 | (slot.generation << SLOT_BITS))
    })
}

/// `ROBUST_MUTEX_TEST_LAST_TOKEN_ID=n`: every handle's ids count from n + 1 instead of a random
/// start, so that tests reach the tokens of long-lived handles (2^31 and beyond, two words in the
/// call slot) without billions of acquisitions. Read once per process.
fn last_id_for_testing() -> Option<u64> {
    static LAST_ID: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *LAST_ID.get_or_init(|| {
        let value = std::env::var("ROBUST_MUTEX_TEST_LAST_TOKEN_ID").ok()?;
        value.parse::<u64>().ok().filter(|&id| id < ID_END)
    })
}

/// The generation after `generation`: 1 to `u32::MAX >> SLOT_BITS`, never 0, so that no handle
/// number is 0 (the call slot's cleared handle word, `call_slot.rs`).
fn next_generation(generation: u32) -> u32 {
    generation % (u32::MAX >> SLOT_BITS) + 1
}

/// 64 unpredictable bits (std's per-process random hash keys, advanced at every call).
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

/// Takes a handle out of the table if `check` allows; `Ok(None)` if it was already closed.
pub(crate) fn remove(handle: u32, check: impl FnOnce(&Handle) -> Result<()>) -> Result<Option<Handle>> {
    let (index, generation) = split(handle);
    TABLE.with(|table| {
        let mut table = table.borrow_mut();
        match table.slots.get_mut(index) {
            Some(slot) if slot.generation == generation && slot.handle.is_some() => {
                check(slot.handle.as_ref().expect("checked"))?;
                Ok(slot.handle.take())
            }
            _ => Ok(None),
        }
    })
}

/// The environment is going away (worker terminated, process exiting): stop every native
/// watch of this thread. Nothing is held on another thread, so there is nothing to give back;
/// locks this thread holds are reported by the kernel when the thread exits.
fn stop_all_watches() {
    let _ = TABLE.try_with(|table| {
        if let Ok(table) = table.try_borrow() {
            for handle in table.slots.iter().filter_map(|s| s.handle.as_ref()) {
                handle.watcher.stop_all();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{next_generation, FIRST_ID_LIMIT, ID_END, SLOT_BITS};
    use crate::token::Token;

    #[test]
    fn first_tokens_are_small_integers_for_v8() {
        // 2^30 - 1 is the largest Smi with pointer compression (31-bit signed), the tighter case:
        // a handle's first 2^28 tokens stay below it whatever its random start.
        let largest = Token { id: 2 * FIRST_ID_LIMIT - 1, owner_died: true }.encode();
        assert!(largest < f64::from(1u32 << 30));
    }

    #[test]
    fn no_generation_is_zero_so_no_handle_number_is() {
        let last = u32::MAX >> SLOT_BITS;
        for start in [0, 1, last - 1, last, u32::MAX, 0x1234_5678] {
            let mut generation = start;
            for _ in 0..=last + 1 {
                generation = next_generation(generation);
                assert!((1..=last).contains(&generation), "{generation} after {start}");
            }
        }
    }

    #[test]
    fn the_last_id_is_exact_in_a_token() {
        let last = Token { id: ID_END, owner_died: true };
        assert_eq!(Token::decode(last.encode()).unwrap(), last);
    }
}

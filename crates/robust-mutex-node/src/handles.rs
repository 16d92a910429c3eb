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
//! and release a lock it does not hold: a guess must hit the slot's 12-bit generation (the
//! slot index is small and guessable) and the one id held among 2^29 (at most a handful are
//! held at a time). Ids stay below 2^29 so that a token is a small integer for V8 (see
//! `ID_LIMIT`); they wrap around and never reuse an id still held. That is a guard against
//! accidents and casual misuse, not a secret: code in the same thread can also read the guard's
//! token through a debugger or a patched module.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};

use napi::bindgen_prelude::*;
use robust_mutex::{RawAcquisition, SharedMutex};

use crate::errors::{closed, coded, to_napi};
use crate::token::Token;
use crate::watcher::Watcher;

const SLOT_BITS: u32 = 20;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

/// Token ids are below this: a token (`id * 2 + owner_died`) is then below 2^30, an integer V8
/// keeps unboxed (a Smi, 31 bits even with pointer compression), so returning it allocates
/// nothing. From 40-bit ids, every tryLock() allocated a heap number (~6% of a
/// tryLock()+release() pair with the scavenges it caused).
const ID_LIMIT: u32 = 1 << 29;

/// A lock held by this JS thread through one handle.
struct Held {
    id: u32,
    acquisition: RawAcquisition,
}

/// One open handle.
pub(crate) struct Handle {
    pub mutex: SharedMutex,
    pub watcher: Watcher,
    /// Locks this thread holds through this handle (rarely more than one).
    held: Vec<Held>,
    /// The last id issued (ids are 1..ID_LIMIT).
    last_id: u32,
}

impl Handle {
    /// Records a lock this thread just acquired; returns its token, and publishes its fencing
    /// token for the caller to read (see `fence.rs`; `env` is the running callback's).
    #[inline]
    pub(crate) fn hold(&mut self, env: napi::sys::napi_env, acquisition: RawAcquisition) -> f64 {
        crate::fence::publish(env, acquisition.fencing_token());
        let held = &self.held;
        let id = next_free_id(self.last_id, |id| held.iter().any(|h| h.id == id));
        self.last_id = id;
        let token = Token { id: u64::from(id), owner_died: acquisition.owner_died() };
        self.held.push(Held { id, acquisition });
        token.encode()
    }

    /// Unlocks (consistent after an owner death, or poisoned). The entry is gone either way: an
    /// unlock that fails (only a thread that does not hold the lock can get that) leaves nothing
    /// this thread could retry.
    #[inline]
    pub(crate) fn release(&mut self, id: u64, poison: bool) -> Result<()> {
        let Some(index) = self.held.iter().position(|h| u64::from(h.id) == id) else {
            return Err(coded("ERELEASED", "the lock guard was already released"));
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
        result.map_err(to_napi)
    }

    pub(crate) fn dead_owner(&self, id: u64) -> Option<robust_mutex::OwnerInfo> {
        self.held.iter().find(|h| u64::from(h.id) == id).and_then(|h| h.acquisition.dead_owner())
    }

    pub(crate) fn holds_any(&self) -> bool {
        !self.held.is_empty()
    }
}

/// The id after `last`, wrapping from `ID_LIMIT - 1` to 1 and skipping every id `held` still
/// uses (so a wrap-around never gives a live lock's token to another). Ends: a handle holds far
/// fewer than 2^29 locks (one per acquisition by this thread, each a table entry).
#[inline]
fn next_free_id(mut last: u32, held: impl Fn(u32) -> bool) -> u32 {
    loop {
        last = if last + 1 >= ID_LIMIT { 1 } else { last + 1 };
        if !held(last) {
            return last;
        }
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

/// Runs `f` on an open handle of this thread.
#[inline]
pub(crate) fn with_handle<T>(handle: u32, f: impl FnOnce(&mut Handle) -> Result<T>) -> Result<T> {
    let (index, generation) = split(handle);
    TABLE.with(|table| {
        let mut table = table.borrow_mut();
        match table.slots.get_mut(index) {
            Some(Slot { generation: g, handle: Some(h) }) if *g == generation => f(h),
            _ => Err(closed()),
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
    // A random start in 0..ID_LIMIT: the first id is the one after it.
    let handle = Handle { mutex, watcher: Watcher::default(), held: Vec::new(), last_id: (random() % u64::from(ID_LIMIT)) as u32 };
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
        slot.generation = (slot.generation + 1) & (u32::MAX >> SLOT_BITS);
        slot.handle = Some(handle);
        Ok(index as u32 | (slot.generation << SLOT_BITS))
    })
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
    use super::{next_free_id, ID_LIMIT};
    use crate::token::Token;

    #[test]
    fn ids_count_up_and_wrap_below_the_limit() {
        assert_eq!(next_free_id(0, |_| false), 1);
        assert_eq!(next_free_id(41, |_| false), 42);
        assert_eq!(next_free_id(ID_LIMIT - 2, |_| false), ID_LIMIT - 1);
        assert_eq!(next_free_id(ID_LIMIT - 1, |_| false), 1, "wraps to 1, never 0 (token 0 means 'not acquired')");
    }

    #[test]
    fn a_wrap_around_skips_ids_still_held() {
        let held = [1, 2, 4];
        assert_eq!(next_free_id(ID_LIMIT - 1, |id| held.contains(&id)), 3);
        let held = [ID_LIMIT - 1, 1];
        assert_eq!(next_free_id(ID_LIMIT - 2, |id| held.contains(&id)), 2);
    }

    #[test]
    fn every_token_is_a_small_integer_for_v8() {
        // 2^30 - 1: the largest Smi with pointer compression (31-bit signed), the tighter case.
        let largest = Token { id: u64::from(ID_LIMIT - 1), owner_died: true }.encode();
        assert!(largest < f64::from(1u32 << 30));
        assert_eq!(Token::decode(largest).unwrap().id, u64::from(ID_LIMIT - 1));
    }
}

//! This JS thread's table of open handles.
//!
//! Handles are numbers into a thread-local table rather than wrapped objects: a napi-rs class
//! method call costs ~0.5 µs here, several times a whole lock/unlock. The table is thread-local
//! because each JS thread (main or worker) is its own lock owner: every lock in it was acquired
//! by the thread that can see it, and a worker's table dies with its thread.
//!
//! A handle number carries its slot's generation, so a number kept after `close()` never
//! reaches the handle that reuses the slot. Generations and token ids start at random values, so
//! code holding only the raw binding cannot guess a live (handle, token) pair and release a lock
//! it does not hold.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};

use napi::bindgen_prelude::*;
use robust_mutex::{RawAcquisition, SharedMutex};

use crate::errors::{closed, coded, to_napi};
use crate::token::Token;
use crate::watcher::Watcher;

const SLOT_BITS: u32 = 20;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

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
    next_id: u64,
}

impl Handle {
    /// Records a lock this thread just acquired; returns its token, and publishes its fencing
    /// token for the caller to read (see `fence.rs`; `env` is the running callback's).
    #[inline]
    pub(crate) fn hold(&mut self, env: napi::sys::napi_env, acquisition: RawAcquisition) -> f64 {
        crate::fence::publish(env, acquisition.fencing_token());
        self.next_id += 1;
        let token = Token { id: self.next_id, owner_died: acquisition.owner_died() };
        self.held.push(Held { id: self.next_id, acquisition });
        token.encode()
    }

    #[inline]
    fn take(&mut self, id: u64) -> Result<RawAcquisition> {
        match self.held.iter().position(|h| h.id == id) {
            Some(index) => Ok(self.held.swap_remove(index).acquisition),
            None => Err(coded("ERELEASED", "the lock guard was already released")),
        }
    }

    /// Unlocks (consistent after an owner death, or poisoned). The entry is gone either way: an
    /// unlock that fails (only a thread that does not hold the lock can get that) leaves nothing
    /// this thread could retry.
    #[inline]
    pub(crate) fn release(&mut self, id: u64, poison: bool) -> Result<()> {
        let mut acquisition = self.take(id)?;
        if poison {
            acquisition.poison();
        }
        // SAFETY: `acquisition` was acquired from `self.mutex` by this thread: the table is
        // thread-local, so only the acquiring thread can reach the entry.
        unsafe { self.mutex.release_raw(acquisition) }.map_err(to_napi)
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
    // Token ids stay below 2^52 (exact in a double even doubled), however long the handle lives.
    let handle = Handle { mutex, watcher: Watcher::default(), held: Vec::new(), next_id: random() >> 24 };
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

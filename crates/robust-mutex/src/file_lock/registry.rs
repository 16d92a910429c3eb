//! One `Inner` (one open file description, one mapping, one thread gate) per mutex file per
//! process, keyed by (st_dev, st_ino). Two descriptions of one file in a process would be two
//! lockers that exclude each other even between threads that hold nothing in common, and a
//! thread gate per handle would not exclude the threads of one process at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::Inner;
use crate::error::Error;

type Key = (u64, u64);

static REGISTRY: Mutex<Option<HashMap<Key, Weak<Inner>>>> = Mutex::new(None);

/// Returns the live `Inner` for `key`, or builds one with `make` and registers it (under the
/// registry lock, so two threads opening one file at once share).
pub(crate) fn get_or_insert(key: Key, make: impl FnOnce() -> Result<Inner, Error>) -> Result<Arc<Inner>, Error> {
    let mut guard = REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(live);
    }
    let inner = Arc::new(make()?);
    let _ = inner.me.set(Arc::downgrade(&inner));
    map.insert(key, Arc::downgrade(&inner));
    Ok(inner)
}

/// Removes the entry of a dropped `Inner`, unless the key was meanwhile taken by a newer one.
///
/// In a `fork()` child (`in_fork_child`) another thread of the parent may have held the
/// registry lock at the fork, and nobody will release it there: the child only tries, and
/// otherwise leaves a dead `Weak` (which `get_or_insert` replaces).
pub(crate) fn remove(key: Key, dropped: *const Inner, in_fork_child: bool) {
    let mut guard = if in_fork_child {
        match REGISTRY.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        }
    } else {
        REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    if let Some(map) = guard.as_mut() {
        if map.get(&key).is_some_and(|weak| std::ptr::eq(weak.as_ptr(), dropped)) {
            map.remove(&key);
        }
    }
}

//! One mapping per file per process.
//!
//! The same file mapped twice in one process is two addresses for one futex: a lock taken
//! through one would look foreign through the other, and unmapping either while held breaks the
//! kernel's robust-list walk. So handles are keyed by (st_dev, st_ino) and share one `Inner`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::error::Error;
use crate::mutex::Inner;

type Key = (u64, u64);

static REGISTRY: Mutex<Option<HashMap<Key, Weak<Inner>>>> = Mutex::new(None);

/// Returns the live `Inner` for `key`, or builds one with `make` and registers it. `make` runs
/// under the registry lock so two threads opening one file at once end up sharing.
pub(crate) fn get_or_insert(key: Key, make: impl FnOnce() -> Result<Inner, Error>) -> Result<Arc<Inner>, Error> {
    // Before the first entry exists: a fork child must know it is one to drop what it inherited.
    crate::sys::register_atfork();
    let mut guard = REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(live);
    }
    let inner = Arc::new(make()?);
    map.insert(key, Arc::downgrade(&inner));
    Ok(inner)
}

/// Removes the entry of a dropped `Inner`, unless the key was meanwhile taken by a newer one.
///
/// In a `fork()` child another thread of the parent may have held the registry lock at the
/// fork, and nobody will ever release it there: the child only tries, and otherwise leaves the
/// entry (a dead `Weak`, which `get_or_insert` replaces). So a child can drop the handles it
/// inherited; opening new ones there is as unsafe as any locking between fork and exec.
pub(crate) fn remove(key: Key, dropped: *const Inner) {
    let mut guard = if crate::sys::in_fork_child() {
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

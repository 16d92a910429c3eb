//! What the calling thread holds, so that a thread that ends holding is an owner death, as with
//! a robust pthread mutex: a file lock belongs to the process (its open file description), so
//! without this the lock would stay held until the process ends.
//!
//! Every acquisition is recorded in a thread-local list; its destructor, which runs when the
//! thread ends (returns, is joined, or a Node worker is terminated), gives back the file lock
//! and the thread gate of each hold still recorded, *without* clearing the holder record. The
//! next acquirer, in any process, finds the record and is told its owner died.
//!
//! What it cannot cover: a thread that never runs its thread-local destructors (killed by
//! `pthread_cancel`, or the main thread when the process leaves through `_exit`); the process
//! ends then anyway, and its file lock with it, except in a `fork()` child that shares it.

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Weak};
use std::thread::ThreadId;

use super::{os, Inner};

/// One hold: the mutex (which may be dropped before the thread ends, through a leaked guard)
/// and its descriptor, kept open by the hold until it is given back.
struct Hold {
    inner: Weak<Inner>,
    fd: Arc<OwnedFd>,
    /// The process that acquired it: a `fork()` child's copy of the list is not its own.
    pid: i32,
}

struct Holds {
    list: RefCell<Vec<Hold>>,
    thread: ThreadId,
}

thread_local! {
    // Room for a few holds from the start: the list is allocated once per thread, not by the
    // acquisitions that follow.
    static HOLDS: Holds = Holds { list: RefCell::new(Vec::with_capacity(4)), thread: std::thread::current().id() };
}

/// Sets up the calling thread's list, so that its first acquisition does not allocate it.
pub(crate) fn prepare() {
    let _ = HOLDS.try_with(|_| ());
}

/// Records that the calling thread now holds `inner`.
pub(crate) fn push(inner: &Inner, pid: i32) {
    let hold = Hold { inner: inner.me(), fd: Arc::clone(&inner.fd), pid };
    // Fails only while the thread's destructors run; a hold taken then ends with the process.
    let _ = HOLDS.try_with(|holds| holds.list.borrow_mut().push(hold));
}

/// Forgets the calling thread's hold of `inner` (it is being released).
pub(crate) fn remove(inner: &Inner) {
    let _ = HOLDS.try_with(|holds| {
        let mut list = holds.list.borrow_mut();
        if let Some(at) = list.iter().rposition(|hold| std::ptr::eq(hold.inner.as_ptr(), inner)) {
            list.swap_remove(at);
        }
    });
}

impl Drop for Holds {
    fn drop(&mut self) {
        let pid = os::pid();
        for hold in self.list.get_mut().drain(..) {
            if hold.pid != pid {
                continue; // the parent's, copied by fork(): its lock is the parent's to give back
            }
            match hold.inner.upgrade() {
                Some(inner) => inner.abandon(self.thread),
                // Every handle is gone: the gate went with them, the file lock is still ours.
                None => {
                    let _ = os::unlock(hold.fd.as_fd());
                }
            }
        }
    }
}

//! Exclusion between the threads of one process. A file lock belongs to an open file
//! description, and a process has one per mutex file (see `registry.rs`), so the kernel cannot
//! tell its threads apart: this gate does. A thread passes the gate first, then takes the file
//! lock; it leaves the gate after giving the file lock back.
//!
//! A thread that ends holding leaves it through its thread-exit record (`holds.rs`).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::Duration;

#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    freed: Condvar,
}

#[derive(Default)]
struct GateState {
    holder: Option<ThreadId>,
    /// Threads sleeping on `freed`: `leave` notifies (a system call) only when there are some.
    sleepers: usize,
}

/// What an attempt to pass the gate found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// The calling thread passed; it must `leave` later.
    Passed,
    /// Another thread of this process holds it.
    Busy,
    /// The calling thread itself holds it.
    Mine,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        // The gate's own state is consistent at every step (a panic never leaves it half-written).
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Passes if nobody holds the gate.
    pub(crate) fn try_enter(&self) -> Entry {
        let me = std::thread::current().id();
        let mut state = self.lock();
        Self::enter_locked(&mut state, me)
    }

    fn enter_locked(state: &mut GateState, me: ThreadId) -> Entry {
        match state.holder {
            None => {
                state.holder = Some(me);
                Entry::Passed
            }
            Some(holder) if holder == me => Entry::Mine,
            Some(_) => Entry::Busy,
        }
    }

    /// Passes, waiting at most `slice` for the holder to leave.
    pub(crate) fn enter_within(&self, slice: Duration) -> Entry {
        let me = std::thread::current().id();
        let mut state = self.lock();
        match Self::enter_locked(&mut state, me) {
            Entry::Busy => {}
            done => return done,
        }
        state.sleepers += 1;
        let (mut state, _) = self
            .freed
            .wait_timeout_while(state, slice, |s| s.holder.is_some())
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.sleepers -= 1;
        Self::enter_locked(&mut state, me)
    }

    /// Leaves the gate; only its holder calls this.
    pub(crate) fn leave(&self) {
        let mut state = self.lock();
        state.holder = None;
        let wake = state.sleepers > 0;
        drop(state);
        if wake {
            self.freed.notify_one();
        }
    }

    /// Whether the calling thread holds the gate.
    pub(crate) fn is_mine(&self) -> bool {
        self.lock().holder == Some(std::thread::current().id())
    }

    /// Whether `thread` holds the gate.
    pub(crate) fn is_held_by(&self, thread: ThreadId) -> bool {
        self.lock().holder == Some(thread)
    }

    /// Runs `f` with whether some thread of this process holds the gate, keeping the gate
    /// closed to others meanwhile (for probes that must not race with a thread taking it).
    pub(crate) fn inspect<T>(&self, f: impl FnOnce(bool) -> T) -> T {
        let state = self.lock();
        f(state.holder.is_some())
    }
}

//! `NativeGuard`: a held lock as JavaScript sees it, whichever thread holds it.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use robust_mutex::OwnedMutexGuard;

use crate::errors::{coded, to_napi};
use crate::waiter::{Control, WaiterShared};

enum Holder {
    /// Acquired on the JS thread by the fast path or `lockSync`; released here.
    JsThread(OwnedMutexGuard),
    /// Acquired by the handle's waiter thread, which releases it when told.
    Waiter(SyncSender<Control>),
}

/// A held lock. Released exactly once, by `release()`; `index.ts` wraps it in `LockGuard`.
#[napi]
pub struct NativeGuard {
    holder: Option<Holder>,
    owner_died: bool,
    dead_owner: Option<robust_mutex::OwnerInfo>,
    poison: bool,
    shared: Arc<WaiterShared>,
}

impl NativeGuard {
    pub(crate) fn js_thread(guard: OwnedMutexGuard, shared: Arc<WaiterShared>) -> NativeGuard {
        shared.held.fetch_add(1, Ordering::Relaxed);
        NativeGuard {
            owner_died: guard.owner_died(),
            dead_owner: guard.dead_owner(),
            holder: Some(Holder::JsThread(guard)),
            poison: false,
            shared,
        }
    }

    pub(crate) fn remote(
        control: SyncSender<Control>,
        owner_died: bool,
        dead_owner: Option<robust_mutex::OwnerInfo>,
        shared: Arc<WaiterShared>,
    ) -> NativeGuard {
        shared.held.fetch_add(1, Ordering::Relaxed);
        NativeGuard { holder: Some(Holder::Waiter(control)), owner_died, dead_owner, poison: false, shared }
    }

    fn take(&mut self) -> Result<Holder> {
        let holder = self.holder.take().ok_or_else(|| coded("ERELEASED", "the lock guard was already released"))?;
        self.shared.held.fetch_sub(1, Ordering::Relaxed);
        Ok(holder)
    }
}

#[napi]
impl NativeGuard {
    /// The previous holder died holding the lock.
    #[napi(getter)]
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Who died holding the lock, as it recorded itself.
    #[napi(getter)]
    pub fn dead_owner(&self) -> Option<crate::mutex::NativeOwner> {
        self.dead_owner.map(Into::into)
    }

    /// Whether `release()` (or `disposeUnclaimed()`) already ran.
    #[napi(getter)]
    pub fn released(&self) -> bool {
        self.holder.is_none()
    }

    /// Poison the mutex when this guard is released.
    #[napi]
    pub fn mark_unrecoverable(&mut self) -> Result<()> {
        if self.holder.is_none() {
            return Err(coded("ERELEASED", "the lock guard was already released"));
        }
        self.poison = true;
        Ok(())
    }

    /// Unlocks (marking the mutex consistent after an owner death, or poisoned), on the thread
    /// that holds it. Returns when the lock is free.
    #[napi]
    pub fn release(&mut self) -> Result<()> {
        match self.take()? {
            Holder::JsThread(mut guard) => {
                if self.poison {
                    guard.poison();
                }
                guard.release().map_err(to_napi)
            }
            Holder::Waiter(control) => {
                let (ack_tx, ack_rx) = mpsc::sync_channel(1);
                control
                    .send(Control::Release { poison: self.poison, ack: ack_tx })
                    .map_err(|_| coded("EPERM", "the thread holding this lock is gone"))?;
                ack_rx
                    .recv()
                    .map_err(|_| coded("EPERM", "the thread holding this lock is gone"))?
                    .map_err(to_napi)
            }
        }
    }

    /// For a grant that arrived after its request was aborted: give it back without claiming
    /// it. A lock whose previous owner died is abandoned (the next acquirer is told), any other
    /// is unlocked.
    #[napi]
    pub fn dispose_unclaimed(&mut self) {
        match self.take() {
            Ok(Holder::Waiter(control)) => {
                let _ = control.send(Control::Dispose);
            }
            Ok(Holder::JsThread(guard)) => {
                if self.owner_died {
                    // Keep it held: this thread's exit reports the death again.
                    std::mem::forget(guard);
                } else {
                    drop(guard);
                }
            }
            Err(_) => {}
        }
    }
}

impl Drop for NativeGuard {
    /// A guard collected while still holding: the critical section never finished, so the lock
    /// is not silently unlocked. A waiter-thread lock is abandoned at once (the next acquirer
    /// sees `ownerDied`); a JS-thread lock stays held until that thread exits.
    fn drop(&mut self) {
        let Some(holder) = self.holder.take() else { return };
        self.shared.held.fetch_sub(1, Ordering::Relaxed);
        match holder {
            Holder::JsThread(guard) => {
                eprintln!(
                    "robust-mutex: a LockGuard was garbage-collected while holding its lock; the \
                     lock stays held until this thread exits (release guards explicitly)"
                );
                std::mem::forget(guard);
            }
            Holder::Waiter(control) => {
                eprintln!(
                    "robust-mutex: a LockGuard was garbage-collected while holding its lock; the \
                     lock is abandoned and the next locker will see ownerDied"
                );
                let _ = control.send(Control::Abandon);
            }
        }
    }
}

//! The per-handle waiter thread: contended `lock()` calls wait here, never on the libuv pool and
//! never on the JS thread.
//!
//! A pthread mutex belongs to the thread that locked it, so the waiter thread that acquires the
//! lock for a JS caller also holds it until the caller releases, and the release runs here too.
//! Requests are served one at a time in arrival order (FIFO within a handle); the promise of each
//! is settled through a napi deferred (a threadsafe function), which keeps the event loop alive
//! while a wait is pending and only then.
//!
//! If a grant cannot be handed to JavaScript (its request was aborted, its guard object was
//! collected unreleased, or its environment is being torn down) and the previous owner had
//! died, the thread *abandons* the lock: it hands its queue to a successor thread and exits
//! holding it, so the kernel marks the lock owner-died again and the next acquirer still learns
//! that the protected state may be half-written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use napi::{Env, JsDeferred};
use robust_mutex::{CancelToken, OwnedMutexGuard, OwnerInfo, SharedMutex};

use crate::errors::{cancelled, coded, to_napi};
use crate::token::Token;

/// What a JS holder decided about a lock held on the waiter thread.
pub(crate) enum Control {
    /// Unlock (first marking it consistent or poisoned); the result goes back on `ack`.
    Release { poison: bool, ack: SyncSender<Result<(), robust_mutex::Error>> },
    /// Nobody took the grant: unlock, or abandon it if its previous owner died.
    Dispose,
    /// The environment is going away while holding: abandon.
    Abandon,
}

/// A contended acquisition request from the JS thread.
pub(crate) struct Request {
    pub id: u64,
    pub deadline: Option<Instant>,
    pub cancel: CancelToken,
    pub deferred: JsDeferred<f64, Resolver>,
}

/// Settles on the JS thread with the token (or the error) of a request.
pub(crate) type Resolver = Box<dyn FnOnce(Env) -> napi::Result<f64> + Send>;

/// The lock currently held on the waiter thread on behalf of JavaScript.
struct Grant {
    id: u64,
    control: SyncSender<Control>,
    dead_owner: Option<OwnerInfo>,
}

static GRANT_IDS: AtomicU64 = AtomicU64::new(1);

/// State shared by a handle, its waiter thread and its environment's cleanup hook.
#[derive(Default)]
pub(crate) struct WaiterShared {
    queue: Mutex<Option<Sender<Request>>>,
    /// The lock currently held on the waiter thread, if any.
    grant: Mutex<Option<Grant>>,
    /// Requests not yet settled, by id, with their cancel tokens.
    pending: Mutex<Vec<(u64, CancelToken)>>,
}

impl WaiterShared {
    /// Queues a request, starting the waiter thread on first use.
    pub(crate) fn submit(self: &Arc<Self>, mutex: &SharedMutex, request: Request) -> napi::Result<()> {
        lock(&self.pending).push((request.id, request.cancel.clone()));
        let mut queue = lock(&self.queue);
        if queue.is_none() {
            let (tx, rx) = mpsc::channel();
            spawn_waiter(mutex.clone(), rx, Arc::clone(self))
                .map_err(|e| crate::errors::coded("EAGAIN", format!("cannot start the waiter thread: {e}")))?;
            *queue = Some(tx);
        }
        let sender = queue.as_ref().expect("just set");
        sender.send(request).map_err(|_| crate::errors::coded("EAGAIN", "the waiter thread is gone"))
    }

    pub(crate) fn has_pending(&self) -> bool {
        lock(&self.pending).iter().any(|(_, c)| !c.is_cancelled())
    }

    /// Stops the waiter thread once its queue is drained (handle closed).
    pub(crate) fn shutdown(&self) {
        lock(&self.queue).take();
    }

    /// Environment teardown: cancel every wait and abandon a lock held for this environment.
    pub(crate) fn abandon_all(&self) {
        for (_, cancel) in lock(&self.pending).drain(..) {
            cancel.cancel();
        }
        if let Some(grant) = lock(&self.grant).take() {
            let _ = grant.control.send(Control::Abandon);
        }
        self.shutdown();
    }

    /// A lock is held on the waiter thread for JavaScript (a sync lock from the JS thread would
    /// wait for itself).
    pub(crate) fn holding(&self) -> bool {
        lock(&self.grant).is_some()
    }

    fn take_grant(&self, id: u64) -> napi::Result<Grant> {
        let mut grant = lock(&self.grant);
        match grant.take() {
            Some(g) if g.id == id => Ok(g),
            other => {
                *grant = other;
                Err(coded("ERELEASED", "the lock guard was already released"))
            }
        }
    }

    /// Unlocks the grant `id` on the waiter thread (consistent or poisoned first) and returns
    /// once the lock is free.
    pub(crate) fn release(&self, id: u64, poison: bool) -> napi::Result<()> {
        let grant = self.take_grant(id)?;
        let gone = || coded("EPERM", "the thread holding this lock is gone");
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        grant.control.send(Control::Release { poison, ack: ack_tx }).map_err(|_| gone())?;
        ack_rx.recv().map_err(|_| gone())?.map_err(to_napi)
    }

    /// Gives back a grant nobody claimed (abort race) or abandons one whose guard was lost.
    pub(crate) fn give_back(&self, id: u64, abandon: bool) {
        if let Ok(grant) = self.take_grant(id) {
            let _ = grant.control.send(if abandon { Control::Abandon } else { Control::Dispose });
        }
    }

    pub(crate) fn dead_owner(&self, id: u64) -> Option<OwnerInfo> {
        lock(&self.grant).as_ref().filter(|g| g.id == id).and_then(|g| g.dead_owner)
    }

    fn settled(&self, id: u64) {
        lock(&self.pending).retain(|(pending, _)| *pending != id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn spawn_waiter(mutex: SharedMutex, requests: Receiver<Request>, shared: Arc<WaiterShared>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("robust-mutex-waiter".into())
        .spawn(move || serve(mutex, requests, shared))
        .map(drop)
}

fn serve(mutex: SharedMutex, requests: Receiver<Request>, shared: Arc<WaiterShared>) {
    while let Ok(request) = requests.recv() {
        let Request { id, deadline, cancel, deferred } = request;
        if cancel.is_cancelled() {
            shared.settled(id);
            deferred.reject(cancelled());
            continue;
        }
        let guard = match mutex.lock_until_owned(deadline, &cancel) {
            Ok(guard) => guard,
            Err(err) => {
                shared.settled(id);
                deferred.reject(to_napi(err));
                continue;
            }
        };
        shared.settled(id);
        let owner_died = guard.owner_died();
        let id = GRANT_IDS.fetch_add(1, Ordering::Relaxed);
        let (control, control_rx) = mpsc::sync_channel(1);
        *lock(&shared.grant) = Some(Grant { id, control, dead_owner: guard.dead_owner() });
        let handoff = Arc::clone(&shared);
        deferred.resolve(Box::new(move |_env| {
            // Runs on the JS thread. An abort that raced the acquisition wins: the grant is
            // given back instead of resolving a promise nobody waits for.
            if cancel.is_cancelled() {
                handoff.give_back(id, false);
                return Err(cancelled());
            }
            Ok(Token { id, remote: true, owner_died }.encode())
        }));
        // Every way out of a grant takes it from `shared.grant` first; a grant whose environment
        // vanished (the resolver dropped unrun) is abandoned by the cleanup hook.
        let decision = control_rx.recv().unwrap_or(Control::Abandon);
        match decision {
            Control::Release { poison, ack } => {
                let _ = ack.send(release(guard, poison));
            }
            Control::Dispose if !owner_died => drop(guard),
            Control::Dispose | Control::Abandon => {
                // Hand the queue to a successor, then end this thread holding the lock.
                match spawn_waiter(mutex.clone(), requests, Arc::clone(&shared)) {
                    Ok(()) => {
                        std::mem::forget(guard);
                        return;
                    }
                    Err(_) => {
                        // No successor possible: release rather than strand the queue.
                        drop(guard);
                        return;
                    }
                }
            }
        }
    }
}

fn release(mut guard: OwnedMutexGuard, poison: bool) -> Result<(), robust_mutex::Error> {
    if poison {
        guard.poison();
    }
    guard.release()
}

//! The per-handle watcher thread: a contended `lock()` waits here for the lock to be *free*,
//! never on the libuv pool and never on the JS thread; the JS thread then takes the lock itself.
//!
//! The watcher never acquires, so a hold always has one owner, the JS thread that will release
//! it: an abort, a timeout, a worker's termination, `close()` or garbage collection only stops a
//! watch, and there is never a grant to give back. (`SharedMutex::wait_released` passes on a
//! wake that a cancelled watch consumed.) Each watch settles a napi deferred (a threadsafe
//! function), which keeps the event loop alive while it is pending and only then.

use std::sync::mpsc::{self, Receiver, Sender};

use napi::{Env, JsDeferred};
use robust_mutex::{CancelToken, SharedMutex};

use crate::errors::{coded, to_napi};

/// A watch needs little stack (a futex wait and a few checks); the default is 2 MiB per thread.
const WATCHER_STACK: usize = 128 * 1024;

/// Settles a watch on the JS thread.
pub(crate) type Resolver = Box<dyn FnOnce(Env) -> napi::Result<()> + Send>;

/// One request: resolve `deferred` once the lock is free (or reject with why not).
pub(crate) struct Watch {
    pub cancel: CancelToken,
    pub deferred: JsDeferred<(), Resolver>,
}

/// A handle's watcher thread, started on first use; it ends when the handle is closed.
#[derive(Default)]
pub(crate) struct Watcher {
    requests: Option<Sender<Watch>>,
    /// Cancel tokens of watches not yet finished (the thread cancels a token when it finishes).
    tokens: Vec<CancelToken>,
}

impl Watcher {
    pub(crate) fn submit(&mut self, mutex: &SharedMutex, watch: Watch) -> napi::Result<()> {
        self.tokens.retain(|t| !t.is_cancelled());
        self.tokens.push(watch.cancel.clone());
        let watch = match &self.requests {
            Some(requests) => match requests.send(watch) {
                Ok(()) => return Ok(()),
                // The thread is gone (it cannot be, short of a panic): start another.
                Err(mpsc::SendError(watch)) => watch,
            },
            None => watch,
        };
        let (tx, rx) = mpsc::channel();
        let mutex = mutex.clone();
        std::thread::Builder::new()
            .name("robust-mutex-watch".into())
            .stack_size(WATCHER_STACK)
            .spawn(move || serve(mutex, rx))
            .map_err(|e| coded("EAGAIN", format!("cannot start the watcher thread: {e}")))?;
        tx.send(watch).map_err(|_| coded("EAGAIN", "the watcher thread is gone"))?;
        self.requests = Some(tx);
        Ok(())
    }

    /// A watch is still running for JavaScript.
    pub(crate) fn busy(&self) -> bool {
        self.tokens.iter().any(|t| !t.is_cancelled())
    }

    pub(crate) fn stop_all(&self) {
        for token in &self.tokens {
            token.cancel();
        }
    }
}

impl Drop for Watcher {
    /// The handle is closed: stop the watches; the thread ends once its channel is empty.
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn serve(mutex: SharedMutex, requests: Receiver<Watch>) {
    while let Ok(Watch { cancel, deferred }) = requests.recv() {
        let result = mutex.wait_released(None, &cancel);
        cancel.cancel(); // finished: no longer counts as busy
        match result {
            Ok(()) => deferred.resolve(Box::new(|_| Ok(()))),
            Err(err) => deferred.reject(to_napi(err)),
        }
    }
}

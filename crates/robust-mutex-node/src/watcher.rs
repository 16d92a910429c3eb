//! The watcher threads: a contended `lock()` waits here for the lock to be *free*, never on the
//! libuv pool and never on the JS thread; the JS thread then takes the lock itself.
//!
//! A watcher never acquires, so a hold always has one owner, the JS thread that will release
//! it: an abort, a timeout, a worker's termination, `close()` or garbage collection only stops a
//! watch, and there is never a grant to give back. (`SharedMutex::wait_released_then` passes on
//! the wake that ended a watch, right after the watch is settled.) Each watch settles a napi deferred (a threadsafe function), which
//! keeps the event loop alive while it is pending and only then.
//!
//! The threads form one pool per process: a watch occupies a thread while it sleeps on the
//! lock word, and a thread idle for `IDLE_EXIT` ends, so handles that were contended once keep
//! no thread.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use napi::{Env, JsDeferred};
use robust_mutex::{CancelToken, SharedMutex};

use crate::errors::{coded, to_napi};
use crate::trace::{self, Point};

/// A watch needs little stack (a futex wait and a few checks); the default is 2 MiB per thread.
const WATCHER_STACK: usize = 128 * 1024;

/// A pool thread with nothing to watch for this long ends (starting one costs ~50 µs, so a
/// lock contended now and then pays little for it).
const IDLE_EXIT: Duration = Duration::from_millis(200);

/// Settles a watch on the JS thread.
pub(crate) type Resolver = Box<dyn FnOnce(Env) -> napi::Result<()> + Send>;

/// One request: resolve `deferred` once the lock is free (or reject with why not).
pub(crate) struct Watch {
    pub cancel: CancelToken,
    pub deferred: JsDeferred<(), Resolver>,
}

/// A handle's watches: their cancel tokens, to stop them at close or environment teardown.
#[derive(Default)]
pub(crate) struct Watcher {
    /// Tokens of watches not yet finished (a pool thread cancels a token when it finishes).
    tokens: Vec<CancelToken>,
}

impl Watcher {
    pub(crate) fn submit(&mut self, mutex: &SharedMutex, watch: Watch) -> napi::Result<()> {
        self.tokens.retain(|t| !t.is_cancelled());
        let token = watch.cancel.clone();
        pool().submit(Job { mutex: mutex.clone(), watch })?;
        self.tokens.push(token);
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
    /// The handle is closed: stop its watches.
    fn drop(&mut self) {
        self.stop_all();
    }
}

struct Job {
    mutex: SharedMutex,
    watch: Watch,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job.
    waiting: usize,
}

#[derive(Default)]
struct Pool {
    queue: Mutex<Queue>,
    ready: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(Pool::default)
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands the job to a waiting thread, or starts one when every thread is busy.
    fn submit(&'static self, job: Job) -> napi::Result<()> {
        let mut queue = self.lock();
        queue.jobs.push_back(job);
        if queue.jobs.len() <= queue.waiting {
            self.ready.notify_one();
            return Ok(());
        }
        let spawned = std::thread::Builder::new()
            .name("robust-mutex-watch".into())
            .stack_size(WATCHER_STACK)
            .spawn(move || self.serve());
        if let Err(e) = spawned {
            // The job was just queued and no thread can take it: drop it (the caller rejects).
            queue.jobs.pop_back();
            return Err(coded("EAGAIN", format!("cannot start a watcher thread: {e}")));
        }
        Ok(())
    }

    fn serve(&self) {
        let mut queue = self.lock();
        loop {
            if let Some(job) = queue.jobs.pop_front() {
                drop(queue);
                run(job);
                queue = self.lock();
                continue;
            }
            queue.waiting += 1;
            let (guard, timeout) =
                self.ready.wait_timeout(queue, IDLE_EXIT).unwrap_or_else(|poisoned| poisoned.into_inner());
            queue = guard;
            queue.waiting -= 1;
            // Only with the queue empty, under its lock: a job queued meanwhile is still served.
            if timeout.timed_out() && queue.jobs.is_empty() {
                return;
            }
        }
    }
}

fn run(Job { mutex, watch: Watch { cancel, deferred } }: Job) {
    // Settle first, then pass the wake on (inside `wait_released_then`): the JS thread is told
    // one system call sooner, and the pass still happens whatever JavaScript does next.
    mutex.wait_released_then(None, &cancel, |result| {
        trace::mark(Point::Woke);
        cancel.cancel(); // finished: no longer counts as busy
        match result {
            Ok(()) => deferred.resolve(Box::new(|_| {
                trace::mark(Point::OnJsThread);
                Ok(())
            })),
            Err(err) => deferred.reject(to_napi(err)),
        }
        trace::mark(Point::Queued);
    });
}

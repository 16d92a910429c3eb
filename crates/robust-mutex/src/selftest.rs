//! The first-use check that owner death is really reported here.
//!
//! Some sandboxes (qemu-user, a few library OSes) accept robust mutexes but never register the
//! robust list with the kernel, so a dead holder's lock stays locked forever. Rather than be
//! silently non-robust, find out once: a thread locks a robust, process-shared mutex and exits;
//! the next `trylock` must report `EOWNERDEAD`.

use std::num::NonZeroUsize;
use std::sync::OnceLock;

use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};

use crate::error::Error;
use crate::raw::{Acquired, RawMutex};

/// Runs the check once per process; later calls return the remembered verdict.
pub(crate) fn ensure_robust() -> Result<(), Error> {
    static VERDICT: OnceLock<Result<(), String>> = OnceLock::new();
    VERDICT.get_or_init(run).clone().map_err(Error::unsupported)
}

fn run() -> Result<(), String> {
    let len = NonZeroUsize::new(4096).expect("non-zero");
    // SAFETY: a fresh anonymous shared mapping; no existing memory is affected.
    let page = unsafe { mmap_anonymous(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED) }
        .map_err(|e| format!("mmap for the robustness self-test failed: {e}"))?;
    // SAFETY: the page is ours, page-aligned and large enough for a pthread_mutex_t; it is never
    // unmapped (see below), so it outlives `mutex`.
    let mutex = unsafe { RawMutex::from_ptr(page.as_ptr().cast()) };
    // The page is deliberately never unmapped: when the probe fails, this thread may still hold
    // the mutex (it is then on glibc's robust list, which would write into whatever is mapped at
    // this address later). One page per process, once.
    probe(&mutex)
}

fn probe(mutex: &RawMutex) -> Result<(), String> {
    // SAFETY: the mutex memory was just mapped and nobody else can see it.
    unsafe { mutex.init() }.map_err(|e| format!("pthread_mutex_init(robust, pshared) failed: {e}"))?;
    std::thread::scope(|s| s.spawn(|| mutex.try_lock()).join())
        .map_err(|_| "the self-test thread panicked".to_string())?
        .map_err(|e| format!("the self-test thread could not lock: {e}"))?
        .ok_or("the self-test mutex was unexpectedly busy")?;
    match mutex.try_lock() {
        Ok(Some(Acquired::OwnerDied)) => {
            // SAFETY: EOWNERDEAD means this thread now holds the lock.
            unsafe { mutex.unlock(true) }.map_err(|e| format!("recovery unlock failed: {e}"))
        }
        Ok(Some(Acquired::Clean)) => {
            Err("a thread exited holding a robust mutex and the lock was silently freed".into())
        }
        Ok(None) => Err("a thread exited holding a robust mutex and the lock stayed held: this \
                         kernel or sandbox does not process robust futex lists (qemu-user?)"
            .into()),
        Err(e) => Err(format!("the self-test trylock failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_machine_reports_owner_death() {
        super::ensure_robust().expect("robust futexes work on the test machine");
    }
}

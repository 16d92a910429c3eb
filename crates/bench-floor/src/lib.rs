//! Bench-only: the floor under a two-process handoff, i.e. the same two cross-thread wake-ups
//! with no lock logic at all. One process bumps a word in a shared file mapping and
//! `FUTEX_WAKE`s it; in the other, a native thread sleeping in `FUTEX_WAIT` on that word wakes
//! and calls a threadsafe function whose JavaScript callback runs on the JS thread. `npm run
//! bench` prints a handoff's latency beside this one's (scripts/bench/handoff.cjs), so what the
//! library adds shows apart from what the machine's scheduler costs.
//!
//! The threadsafe function is raw Node-API with no `call_js` (Node calls the callback with no
//! arguments): the cheapest way there is from a native thread into JavaScript. Nothing in the
//! library uses this file; Linux only (futexes on a shared mapping), elsewhere every call throws.

use napi::bindgen_prelude::*;
use napi_derive::napi;

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::CString;
    use std::ptr;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Mutex;
    use std::thread::JoinHandle;

    use napi::bindgen_prelude::*;
    use napi::sys;

    /// Tells this process's listener thread to end (process-local: the shared word is not
    /// the place, a later run on the same file would find it set).
    static STOPPING: AtomicBool = AtomicBool::new(false);

    /// The process's one mapping of the floor file (its first 4 bytes are the word).
    struct Word(*const AtomicU32);
    // SAFETY: the pointer is to a MAP_SHARED page that is never unmapped (bench-only, one per
    // process) and is only accessed atomically.
    unsafe impl Send for Word {}

    /// The raw threadsafe function, moved to the listener thread.
    struct Tsfn(sys::napi_threadsafe_function);
    // SAFETY: a threadsafe function is made to be called and released from other threads.
    unsafe impl Send for Tsfn {}

    static WORD: Mutex<Option<Word>> = Mutex::new(None);
    static LISTENER: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);

    fn word() -> Result<&'static AtomicU32> {
        let guard = WORD.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            // SAFETY: the mapping lives for the rest of the process (see `Word`).
            Some(w) => Ok(unsafe { &*w.0 }),
            None => Err(Error::from_reason("floorOpen(path) first")),
        }
    }

    pub(super) fn open(path: String) -> Result<()> {
        let mut slot = WORD.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return Ok(());
        }
        let c = CString::new(path).map_err(|_| Error::from_reason("path contains NUL"))?;
        // SAFETY: a NUL-terminated path; the descriptor is closed below (the mapping stays).
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC, 0o600) };
        if fd < 0 {
            return Err(Error::from_reason(format!("open: {}", std::io::Error::last_os_error())));
        }
        // SAFETY: fd is open for writing; 4096 bytes cover the word.
        let sized = unsafe { libc::ftruncate(fd, 4096) } == 0;
        // SAFETY: a fresh shared mapping of the file's first page.
        let map = unsafe { libc::mmap(ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
        let err = std::io::Error::last_os_error();
        // SAFETY: fd is ours; the mapping does not need it.
        unsafe { libc::close(fd) };
        if !sized || map == libc::MAP_FAILED {
            return Err(Error::from_reason(format!("map: {err}")));
        }
        *slot = Some(Word(map.cast()));
        Ok(())
    }

    fn futex(word: &AtomicU32, op: libc::c_int, value: u32) {
        // SAFETY: a futex call on a live, aligned word of a shared mapping (no timeout).
        unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, value, ptr::null::<libc::timespec>(), ptr::null::<u32>(), 0) };
    }

    /// The other process's "release": bump the word and wake its sleeper.
    pub(super) fn wake() -> Result<()> {
        let word = word()?;
        word.fetch_add(1, Ordering::Release);
        futex(word, libc::FUTEX_WAKE, 1);
        Ok(())
    }

    /// Starts the listener thread: each change of the word calls `callback` once on this JS
    /// thread (through a threadsafe function, which keeps the event loop alive until `stop`).
    pub(super) fn listen(env: sys::napi_env, callback: sys::napi_value) -> Result<()> {
        let word = word()?;
        let mut listener = LISTENER.lock().unwrap_or_else(|p| p.into_inner());
        if listener.is_some() {
            return Err(Error::from_reason("already listening"));
        }
        STOPPING.store(false, Ordering::Release);
        let mut name = ptr::null_mut();
        let mut tsfn = ptr::null_mut();
        // SAFETY: env/callback are the running call's; the name is a valid UTF-8 string; no
        // finalizer, context or call_js (Node then calls `callback` with no arguments).
        let ok = unsafe {
            sys::napi_create_string_utf8(env, c"floor".as_ptr(), 5, &mut name) == sys::Status::napi_ok
                && sys::napi_create_threadsafe_function(
                    env, callback, ptr::null_mut(), name, 0, 1, ptr::null_mut(), None, ptr::null_mut(), None, &mut tsfn,
                ) == sys::Status::napi_ok
        };
        if !ok {
            return Err(Error::from_reason("cannot create the threadsafe function"));
        }
        let tsfn = Tsfn(tsfn);
        let mut seen = word.load(Ordering::Acquire);
        *listener = Some(std::thread::spawn(move || {
            let tsfn = tsfn;
            loop {
                if STOPPING.load(Ordering::Acquire) {
                    break;
                }
                let now = word.load(Ordering::Acquire);
                if now != seen {
                    seen = now;
                    // SAFETY: this thread holds the function (initial thread count 1) until the
                    // release below.
                    unsafe { sys::napi_call_threadsafe_function(tsfn.0, ptr::null_mut(), sys::ThreadsafeFunctionCallMode::nonblocking) };
                    continue;
                }
                futex(word, libc::FUTEX_WAIT, now);
            }
            // SAFETY: this thread's one reference, released once.
            unsafe { sys::napi_release_threadsafe_function(tsfn.0, sys::ThreadsafeFunctionReleaseMode::release) };
        }));
        Ok(())
    }

    /// Ends the listener (and with it the threadsafe function's hold on the event loop).
    pub(super) fn stop() -> Result<()> {
        let word = word()?;
        STOPPING.store(true, Ordering::Release);
        // A change of the word, so that a listener about to sleep on its old value does not.
        word.fetch_add(1, Ordering::Release);
        futex(word, libc::FUTEX_WAKE, i32::MAX as u32);
        if let Some(thread) = LISTENER.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use napi::bindgen_prelude::*;
    use napi::sys;

    fn unsupported() -> Result<()> {
        Err(Error::from_reason("the handoff floor bench needs Linux futexes"))
    }
    pub(super) fn open(_path: String) -> Result<()> {
        unsupported()
    }
    pub(super) fn wake() -> Result<()> {
        unsupported()
    }
    pub(super) fn listen(_env: sys::napi_env, _callback: sys::napi_value) -> Result<()> {
        unsupported()
    }
    pub(super) fn stop() -> Result<()> {
        unsupported()
    }
}

/// Bench-only (handoff floor): maps the first page of `path` (created if missing) as the shared
/// word; once per process.
#[napi]
pub fn floor_open(path: String) -> Result<()> {
    imp::open(path)
}

/// Bench-only (handoff floor): bumps the shared word and futex-wakes its sleeper.
#[napi]
pub fn floor_wake() -> Result<()> {
    imp::wake()
}

/// Bench-only (handoff floor): a native thread sleeps on the shared word and calls `callback`
/// (no arguments) on this thread through a threadsafe function each time it changes, until
/// `floorStop()`.
#[napi(ts_args_type = "callback: () => void")]
pub fn floor_listen(callback: Function<'_, (), ()>) -> Result<()> {
    let value = callback.value();
    imp::listen(value.env, value.value)
}

/// Bench-only (handoff floor): ends the listener thread (and its hold on the event loop).
#[napi]
pub fn floor_stop() -> Result<()> {
    imp::stop()
}

//! Bench-only Node addon, never shipped (a crate of its own, built only by `npm run bench`:
//! scripts/bench/run.sh): the floor under a two-process handoff, i.e. the same two cross-thread
//! wake-ups with no lock logic at all. One process bumps a word in a shared file mapping and
//! `FUTEX_WAKE`s it; in the other, a native thread sleeping in `FUTEX_WAIT` on that word wakes
//! and calls a threadsafe function whose JavaScript callback runs on the JS thread.
//! scripts/bench/handoff.cjs prints a handoff's latency beside this one's, so what the library
//! adds shows apart from what the machine's scheduler costs.
//!
//! The threadsafe function is raw Node-API with no `call_js` (Node calls the callback with no
//! arguments): the cheapest way there is from a native thread into JavaScript.
//!
//! Limits, fine for a bench and the reason this is not in the library's addon: one listener per
//! process, on the main thread only (scripts/bench/floor.cjs refuses a worker: the listener
//! thread would outlive a worker's environment), Linux only. Its file is its own: created new
//! (`O_EXCL`) with a magic word, and an existing file is used only when it is exactly such a
//! file, so pointing it at anything else changes nothing.

// Unit tests build the crate without napi's registration, so the exported functions look unused.
#![cfg_attr(test, allow(dead_code))]

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

    /// The file's size, and the magic at byte 8 that says it is a floor file.
    pub(super) const SIZE: usize = 4096;
    pub(super) const MAGIC: &[u8; 8] = b"rmfloor1";

    /// Creates the floor file (it must not exist), or opens one this module created: exactly
    /// `SIZE` bytes with `MAGIC` at byte 8. Anything else is refused untouched.
    pub(super) fn open_file(path: &str) -> Result<libc::c_int> {
        let c = CString::new(path).map_err(|_| Error::from_reason("path contains NUL"))?;
        let flags = libc::O_RDWR | libc::O_CLOEXEC;
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CREAT | libc::O_EXCL, 0o600) };
        if fd >= 0 {
            let mut page = vec![0u8; SIZE];
            page[8..16].copy_from_slice(MAGIC);
            // SAFETY: fd is open for writing; `page` holds SIZE bytes.
            let written = unsafe { libc::pwrite(fd, page.as_ptr().cast(), SIZE, 0) };
            if written != SIZE as isize {
                let err = std::io::Error::last_os_error();
                // SAFETY: fd is ours.
                unsafe { libc::close(fd) };
                return Err(Error::from_reason(format!("write {path}: {err}")));
            }
            return Ok(fd);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(Error::from_reason(format!("create {path}: {err}")));
        }
        // SAFETY: as above, without creating.
        let fd = unsafe { libc::open(c.as_ptr(), flags) };
        if fd < 0 {
            return Err(Error::from_reason(format!("open {path}: {}", std::io::Error::last_os_error())));
        }
        let mut head = [0u8; 16];
        // SAFETY: an all-zero stat is a valid out-value; `head` holds 16 bytes.
        let (size, read) = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            let size = if libc::fstat(fd, &mut st) == 0 { st.st_size } else { -1 };
            (size, libc::pread(fd, head.as_mut_ptr().cast(), 16, 0))
        };
        if size != SIZE as libc::off_t || read != 16 || &head[8..16] != MAGIC {
            // SAFETY: fd is ours.
            unsafe { libc::close(fd) };
            return Err(Error::from_reason(format!("{path} exists and is not a floor file: left as it is")));
        }
        Ok(fd)
    }

    pub(super) fn open(path: String) -> Result<()> {
        let mut slot = WORD.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return Ok(());
        }
        let fd = open_file(&path)?;
        // SAFETY: a fresh shared mapping of the file's first page (the file is SIZE bytes).
        let map =
            unsafe { libc::mmap(ptr::null_mut(), SIZE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
        let err = std::io::Error::last_os_error();
        // SAFETY: fd is ours; the mapping does not need it.
        unsafe { libc::close(fd) };
        if map == libc::MAP_FAILED {
            return Err(Error::from_reason(format!("map: {err}")));
        }
        *slot = Some(Word(map.cast()));
        Ok(())
    }

    fn futex(word: &AtomicU32, op: libc::c_int, value: u32) {
        // SAFETY: a futex call on a live, aligned word of a shared mapping (no timeout).
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                op,
                value,
                ptr::null::<libc::timespec>(),
                ptr::null::<u32>(),
                0,
            )
        };
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
                    env,
                    callback,
                    ptr::null_mut(),
                    name,
                    0,
                    1,
                    ptr::null_mut(),
                    None,
                    ptr::null_mut(),
                    None,
                    &mut tsfn,
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
                    unsafe {
                        sys::napi_call_threadsafe_function(
                            tsfn.0,
                            ptr::null_mut(),
                            sys::ThreadsafeFunctionCallMode::nonblocking,
                        )
                    };
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

/// Maps the floor file at `path` (created new, or one made by this function before: see
/// `open_file`) as the shared word; once per process.
#[napi]
pub fn floor_open(path: String) -> Result<()> {
    imp::open(path)
}

/// Bumps the shared word and futex-wakes its sleeper.
#[napi]
pub fn floor_wake() -> Result<()> {
    imp::wake()
}

/// A native thread sleeps on the shared word and calls `callback`
/// (no arguments) on this thread through a threadsafe function each time it changes, until
/// `floorStop()`.
#[napi(ts_args_type = "callback: () => void")]
pub fn floor_listen(callback: Function<'_, (), ()>) -> Result<()> {
    let value = callback.value();
    imp::listen(value.env, value.value)
}

/// Ends the listener thread (and its hold on the event loop).
#[napi]
pub fn floor_stop() -> Result<()> {
    imp::stop()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::imp::{open_file, MAGIC, SIZE};

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("robust-mutex-bench-floor-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("floor")
    }

    #[test]
    fn a_new_floor_file_is_made_and_reopened() {
        let path = temp("new");
        let fd = open_file(path.to_str().unwrap()).unwrap();
        // SAFETY: fd was just opened by open_file.
        unsafe { libc::close(fd) };
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), SIZE);
        assert_eq!(&bytes[8..16], MAGIC);
        let again = open_file(path.to_str().unwrap()).expect("its own file is accepted");
        // SAFETY: as above.
        unsafe { libc::close(again) };
    }

    #[test]
    fn a_file_that_is_not_a_floor_file_is_refused_unchanged() {
        let path = temp("foreign");
        for content in [vec![7u8; 14_000], vec![], vec![1u8; SIZE]] {
            std::fs::write(&path, &content).unwrap();
            let err = open_file(path.to_str().unwrap()).expect_err("refused");
            assert!(err.reason.contains("not a floor file"), "{}", err.reason);
            assert_eq!(std::fs::read(&path).unwrap(), content, "left byte for byte as it was");
        }
    }
}

//! The Windows backend: a named kernel mutex (`CreateMutexW`), whose name is derived from the
//! file's identity (volume serial number and file index), and the file's header for what the
//! kernel mutex does not keep (poison, retirement, diagnostics).
//!
//! A Windows mutex belongs to a thread, like a robust pthread mutex: when its owning thread or
//! process ends, the kernel releases it and the next successful wait returns `WAIT_ABANDONED`,
//! a native owner-died signal. It is recursive, so relocking by the holder is refused here
//! (`Deadlock`) before waiting. Names live in the session's `Local\` namespace: processes of
//! one login session share a mutex; services in session 0 and users in other sessions do not.

mod header;
mod watch;

use std::collections::HashMap;
use std::fs::File;
use std::os::windows::io::AsRawHandle;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{CloseHandle, GetLastError, HANDLE, WAIT_ABANDONED, WAIT_OBJECT_0, WAIT_TIMEOUT};
use windows_sys::Win32::Storage::FileSystem::{GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION};
use windows_sys::Win32::System::Threading::{
    CreateMutexW, GetCurrentProcessId, GetCurrentThreadId, ReleaseMutex, WaitForSingleObject,
};

use self::header::State;
use crate::error::Error;
use crate::guard::Acquisition;
use crate::handle::{Purpose, SliceCheck, Wait};
use crate::options::{OpenOptions, Policy};
use crate::state::{MutexState, OwnerInfo};

/// How often (5 ms apart) `destroy` tries the lock before answering `Busy`.
const DESTROY_ATTEMPTS: usize = 20;

/// The per-process state of one mutex file, shared by all handles to it.
pub(crate) struct Inner {
    file: File,
    mutex: HANDLE,
    key: (u64, u64),
    /// The thread of this process holding it, for `Deadlock` (the kernel mutex is recursive).
    holder: Mutex<Option<ThreadId>>,
}

// SAFETY: a kernel mutex handle may be used from any thread (ownership is the kernel's, per
// thread, and checked by ReleaseMutex); the other fields are Send and Sync.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

fn last_error(op: &'static str) -> Error {
    // SAFETY: reads the calling thread's last-error value; no preconditions.
    Error::Os { op, path: None, errno: unsafe { GetLastError() } as i32 }
}

fn io(op: &'static str, e: std::io::Error) -> Error {
    Error::Os { op, path: None, errno: e.raw_os_error().unwrap_or(0) }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn since(ns: u64) -> Option<std::time::SystemTime> {
    (ns != 0).then(|| std::time::UNIX_EPOCH + Duration::from_nanos(ns))
}

fn file_key(file: &File) -> Result<(u64, u64), Error> {
    // SAFETY: an all-zero BY_HANDLE_FILE_INFORMATION is a valid value to be overwritten.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: the handle is the open file's, and `info` is a valid, writable struct.
    if unsafe { GetFileInformationByHandle(file.as_raw_handle() as HANDLE, &mut info) } == 0 {
        return Err(last_error("GetFileInformationByHandle"));
    }
    Ok((u64::from(info.dwVolumeSerialNumber), u64::from(info.nFileIndexHigh) << 32 | u64::from(info.nFileIndexLow)))
}

type Registry = HashMap<(u64, u64), Weak<Inner>>;

/// One `Inner` (one mutex handle, one in-process holder record) per file per process.
static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// What one wait on the kernel mutex returned.
enum Waited {
    Acquired { abandoned: bool },
    TimedOut,
}

impl Inner {
    pub(crate) fn open(path: &Path, policy: &Policy) -> Result<Arc<Inner>, Error> {
        for _ in 0..64 {
            match std::fs::OpenOptions::new().read(true).write(true).open(path) {
                Ok(file) => {
                    let h = header::validate(&file).map_err(|e| e.at(Some(path)))?;
                    if h.state() == Some(State::Tombstone) {
                        // Retired by a destroy that did not get to remove it: finish the job.
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    return Inner::adopt(file);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && policy.create => {
                    if let Some(file) = create(path)? {
                        return Inner::adopt(file);
                    }
                }
                Err(e) => {
                    return Err(Error::Os { op: "open", path: Some(path.into()), errno: e.raw_os_error().unwrap_or(0) })
                }
            }
        }
        Err(Error::Busy { path: Some(path.into()) })
    }

    /// A mutex in a temporary file, removed at once (the open handle keeps it, and its name).
    pub(crate) fn anonymous() -> Result<Arc<Inner>, Error> {
        let path = std::env::temp_dir().join(format!("robust-mutex-anon-{}-{}", std::process::id(), now_ns()));
        let inner = Inner::open(&path, &OpenOptions::new().policy)?;
        let _ = std::fs::remove_file(&path);
        Ok(inner)
    }

    fn adopt(file: File) -> Result<Arc<Inner>, Error> {
        let key = file_key(&file)?;
        let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        let map = registry.get_or_insert_with(HashMap::new);
        if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
            return Ok(live);
        }
        let name: Vec<u16> =
            format!("Local\\robust-mutex-{:08x}-{:016x}", key.0, key.1).encode_utf16().chain([0]).collect();
        // SAFETY: no security attributes (default), not initially owned, a NUL-terminated name.
        let mutex = unsafe { CreateMutexW(std::ptr::null(), 0, name.as_ptr()) };
        if mutex.is_null() {
            return Err(last_error("CreateMutexW"));
        }
        let inner = Arc::new(Inner { file, mutex, key, holder: Mutex::new(None) });
        map.insert(key, Arc::downgrade(&inner));
        Ok(inner)
    }

    pub(crate) fn key(&self) -> (u64, u64) {
        self.key
    }

    fn holder(&self) -> std::sync::MutexGuard<'_, Option<ThreadId>> {
        self.holder.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn held_by_this_thread(&self) -> bool {
        *self.holder() == Some(std::thread::current().id())
    }

    /// One wait of at most `ms` milliseconds.
    fn wait_once(&self, ms: u32) -> Result<Waited, Error> {
        // SAFETY: the handle is a live mutex handle owned by `self`.
        match unsafe { WaitForSingleObject(self.mutex, ms) } {
            WAIT_OBJECT_0 => Ok(Waited::Acquired { abandoned: false }),
            WAIT_ABANDONED => Ok(Waited::Acquired { abandoned: true }),
            WAIT_TIMEOUT => Ok(Waited::TimedOut),
            _ => Err(last_error("WaitForSingleObject")),
        }
    }

    fn release_kernel(&self) -> Result<(), Error> {
        // SAFETY: the handle is live; ReleaseMutex fails (and changes nothing) unless the calling
        // thread owns it.
        if unsafe { ReleaseMutex(self.mutex) } == 0 {
            return Err(Error::NotOwner);
        }
        Ok(())
    }

    pub(crate) fn try_acquire(&self) -> Result<Option<Acquisition>, Error> {
        self.try_acquire_counted(false)
    }

    /// A non-blocking acquire; `contended`: after a wait (see `watch.rs`).
    fn try_acquire_counted(&self, contended: bool) -> Result<Option<Acquisition>, Error> {
        if self.held_by_this_thread() {
            return Err(Error::Deadlock);
        }
        match self.wait_once(0)? {
            Waited::Acquired { abandoned } => self.admit(abandoned, contended).map(Some),
            Waited::TimedOut => self.busy(),
        }
    }

    fn busy(&self) -> Result<Option<Acquisition>, Error> {
        match header::read(&self.file)?.state() {
            Some(State::Tombstone) => Err(Error::Stale { path: None }),
            Some(State::Poisoned) => Err(Error::NotRecoverable),
            _ => Ok(None),
        }
    }

    pub(crate) fn acquire(&self, wait: &Wait<'_>) -> Result<Acquisition, Error> {
        if let Some(acq) = self.try_acquire()? {
            return Ok(acq);
        }
        let abandoned = self.wait_slices(wait)?;
        self.admit(abandoned, true)
    }

    /// Waits in slices; returns whether the previous owner abandoned the mutex.
    fn wait_slices(&self, wait: &Wait<'_>) -> Result<bool, Error> {
        loop {
            let slice = self.before_slice(wait)?;
            let ms = slice.as_millis().clamp(1, u128::from(u32::MAX - 1)) as u32;
            if let Waited::Acquired { abandoned } = self.wait_once(ms)? {
                return Ok(abandoned);
            }
        }
    }

    fn before_slice(&self, wait: &Wait<'_>) -> Result<Duration, Error> {
        let state = header::read(&self.file)?.state();
        let check = SliceCheck { poisoned: state == Some(State::Poisoned), retired: state == Some(State::Tombstone) };
        wait.next_slice(check, || self.is_stale(wait.path))
    }

    /// The kernel mutex was just acquired by this thread.
    fn admit(&self, abandoned: bool, contended: bool) -> Result<Acquisition, Error> {
        let mut h = match header::read(&self.file) {
            Ok(h) => h,
            Err(e) => {
                let _ = self.release_kernel();
                return Err(e);
            }
        };
        let refused = match h.state() {
            Some(State::Ready) => None,
            Some(State::Poisoned) => Some(Error::NotRecoverable),
            Some(State::Tombstone) => Some(Error::Stale { path: None }),
            None => Some(Error::BadMutex { path: None, reason: "the header state was overwritten".into() }),
        };
        if let Some(err) = refused {
            if abandoned {
                // Refused, but not forgotten: reported by the acquire that follows a reset.
                h.pending_death = 1;
                let _ = header::write(&self.file, &h);
            }
            let _ = self.release_kernel();
            return Err(err);
        }
        // SAFETY: no preconditions.
        let pid = unsafe { GetCurrentProcessId() };
        let mut acq = Acquisition::new(abandoned || h.pending_death != 0, pid as i32);
        acq.clear_inconsistent();
        if acq.owner_died() {
            acq.set_dead_owner((h.owner_pid != 0).then(|| OwnerInfo {
                pid: h.owner_pid as i32,
                tid: h.owner_tid as i32,
                since: since(h.owner_since_ns),
            }));
            h.owner_deaths += 1;
            h.pending_death = 0;
        }
        h.owner_pid = pid;
        // SAFETY: no preconditions.
        h.owner_tid = unsafe { GetCurrentThreadId() };
        h.owner_since_ns = now_ns();
        h.fencing_token = crate::fencing::next(h.fencing_token);
        acq.fencing_token = h.fencing_token;
        h.acquisitions += 1;
        if contended {
            h.contended += 1;
        }
        if let Err(e) = header::write(&self.file, &h) {
            let _ = self.release_kernel();
            return Err(e);
        }
        *self.holder() = Some(std::thread::current().id());
        Ok(acq)
    }

    /// # Safety
    /// The calling thread must hold the lock through `acq` (checked anyway: `NotOwner`).
    pub(crate) unsafe fn release(&self, acq: &Acquisition) -> Result<(), Error> {
        if !self.held_by_this_thread() {
            return Err(Error::NotOwner);
        }
        let mut h = header::read(&self.file)?;
        h.owner_pid = 0;
        h.owner_tid = 0;
        h.owner_since_ns = 0;
        if acq.poisoned() {
            h.state = State::Poisoned as u32;
        }
        header::write(&self.file, &h)?;
        *self.holder() = None;
        self.release_kernel()
    }

    /// # Safety
    /// As for [`release`](Self::release).
    pub(crate) unsafe fn hand_back(&self, acq: &Acquisition) -> Result<(), Error> {
        if !acq.owner_died() || !self.held_by_this_thread() {
            // SAFETY: forwarded from this function's contract.
            return unsafe { self.release(acq) };
        }
        let mut h = header::read(&self.file)?;
        let dead = acq.dead_owner();
        h.owner_pid = dead.map_or(0, |d| d.pid as u32);
        h.owner_tid = dead.map_or(0, |d| d.tid as u32);
        h.owner_since_ns = dead
            .and_then(|d| d.since)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        h.pending_death = 1;
        // The next acquirer counts this death again: un-count ours.
        h.owner_deaths = h.owner_deaths.saturating_sub(1);
        header::write(&self.file, &h)?;
        *self.holder() = None;
        self.release_kernel()
    }

    pub(crate) fn held_by_this_process(&self) -> bool {
        self.holder().is_some()
    }

    pub(crate) fn is_stale(&self, path: Option<&Path>) -> bool {
        let Some(path) = path else { return false };
        match File::open(path).map_err(|e| io("open", e)).and_then(|f| file_key(&f)) {
            Ok(key) => key != self.key,
            Err(_) => true,
        }
    }

    /// A snapshot. `locked` is probed with a zero-time wait when no thread of this process
    /// holds it; a probe that finds the mutex abandoned records the death for the next acquirer.
    pub(crate) fn state(&self) -> MutexState {
        let h = header::read(&self.file).unwrap_or_default();
        let (locked, abandoned) = if self.holder().is_some() {
            (true, false)
        } else {
            match self.wait_once(0) {
                Ok(Waited::Acquired { abandoned }) => {
                    if abandoned {
                        self.record_pending_death();
                    }
                    let _ = self.release_kernel();
                    (false, abandoned || h.pending_death != 0)
                }
                _ => (true, false),
            }
        };
        let owner = (h.owner_pid != 0).then(|| OwnerInfo {
            pid: h.owner_pid as i32,
            tid: h.owner_tid as i32,
            since: since(h.owner_since_ns),
        });
        MutexState {
            locked,
            holder_tid: (locked && h.owner_tid != 0).then_some(h.owner_tid as i32),
            abandoned,
            owner,
            poisoned: h.state() == Some(State::Poisoned),
            generation: h.generation,
            acquisitions: h.acquisitions,
            contended: h.contended,
            owner_deaths: h.owner_deaths,
            fencing_token: h.fencing_token,
        }
    }

    /// Records, while holding the kernel mutex, an abandonment this thread met without taking
    /// the lock for itself: the next acquirer is told its owner died.
    fn record_pending_death(&self) {
        if let Ok(mut h) = header::read(&self.file) {
            h.pending_death = 1;
            let _ = header::write(&self.file, &h);
        }
    }

    pub(crate) fn reset_poison(&self, deadline: Instant, path: Option<&Path>) -> Result<(), Error> {
        if self.held_by_this_thread() {
            return Err(Error::Deadlock);
        }
        let wait = Wait { deadline: Some(deadline), cancel: None, purpose: Purpose::Admin, path };
        let abandoned = match self.wait_once(0)? {
            Waited::Acquired { abandoned } => abandoned,
            Waited::TimedOut => self.wait_slices(&wait)?,
        };
        let result = header::read(&self.file).and_then(|mut h| {
            if h.state() == Some(State::Tombstone) {
                return Err(Error::Stale { path: path.map(Path::to_path_buf) });
            }
            h.state = State::Ready as u32;
            h.generation += 1;
            h.fencing_token = crate::fencing::reseed(h.fencing_token);
            if abandoned {
                h.pending_death = 1;
            }
            header::write(&self.file, &h)
        });
        self.release_kernel()?;
        result
    }

    pub(crate) fn reset(path: &Path, deadline: Instant) -> Result<(), Error> {
        let mut options = OpenOptions::new();
        options.create(false);
        Inner::open(path, &options.policy)?.reset_poison(deadline, Some(path))
    }

    /// Retires the file and removes it, unless someone holds the lock (then `Busy`).
    pub(crate) fn destroy(path: &Path) -> Result<(), Error> {
        let mut options = OpenOptions::new();
        options.create(false);
        let inner = Inner::open(path, &options.policy)?;
        // The kernel mutex is recursive: a zero-time wait by its holder would succeed.
        if inner.held_by_this_thread() {
            return Err(Error::Busy { path: None });
        }
        let mut got = None;
        for _ in 0..DESTROY_ATTEMPTS {
            if let Waited::Acquired { abandoned } = inner.wait_once(0)? {
                got = Some(abandoned);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if got.is_none() {
            return Err(Error::Busy { path: None });
        }
        let result = header::read(&inner.file).and_then(|mut h| {
            h.state = State::Tombstone as u32;
            header::write(&inner.file, &h)
        });
        let removed = std::fs::remove_file(path).map_err(|e| io("remove", e));
        inner.release_kernel()?;
        result.and(removed)
    }
}

/// Builds the file under a temporary name and publishes it with a hard link, which never
/// replaces a name: `Ok(None)` when another process published first.
fn create(path: &Path) -> Result<Option<File>, Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = dir.join(format!(".robust-mutex.{}.{}.tmp", std::process::id(), now_ns()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(|e| Error::Os { op: "create", path: Some(temp.clone()), errno: e.raw_os_error().unwrap_or(0) })?;
    let written = file.seek_write_all(&header::initial_page());
    let linked = written.and_then(|()| std::fs::hard_link(&temp, path));
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(Error::Os { op: "link", path: Some(path.into()), errno: e.raw_os_error().unwrap_or(0) }),
    }
}

trait WriteAllAt {
    fn seek_write_all(&self, bytes: &[u8]) -> std::io::Result<()>;
}

impl WriteAllAt for File {
    fn seek_write_all(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        use std::os::windows::fs::FileExt;
        let mut at = 0u64;
        while !bytes.is_empty() {
            let n = self.seek_write(bytes, at)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[n..];
            at += n as u64;
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(map) = registry.as_mut() {
            if map.get(&self.key).is_some_and(|w| std::ptr::eq(w.as_ptr(), self)) {
                map.remove(&self.key);
            }
        }
        // SAFETY: the handle was created in `adopt` and is closed once, here. A thread of this
        // process that still owns the mutex keeps owning it: the kernel abandons it when that
        // thread ends.
        unsafe { CloseHandle(self.mutex) };
    }
}

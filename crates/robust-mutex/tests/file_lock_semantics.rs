//! What the file-lock backend promises differently from the pthread backend, tested as such
//! (the README's platform table). The shared promises run in the conformance and torture suites
//! with `--features file-lock-backend`; this binary holds only the differences, so it compiles
//! to nothing without that feature.
//!
//! Run: `cargo test -p robust-mutex --features file-lock-backend --test file_lock_semantics`
#![cfg(feature = "file-lock-backend")]

mod conformance_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use conformance_support::{
    arg, helper_main, num_field, say, wait_for_start, Barrier, DataPage, Helper, TempDir, PROMPT,
};
use robust_mutex::{Error, SharedMutex};

#[test]
#[ignore = "entry point of the helper processes the tests spawn"]
fn helper_entry() {
    helper_main(|role, args| match role {
        "count" => Some(count(&args[0], &args[1], args[2].parse().unwrap())),
        _ => None,
    });
}

/// Helper: `rounds` increments of the shared counter under the lock, by path.
fn count(path: &str, data: &str, rounds: u64) -> i32 {
    let mutex = SharedMutex::open(path).unwrap();
    let page = DataPage::open(std::path::Path::new(data));
    say("ready");
    wait_for_start();
    let mut problems = 0;
    for _ in 0..rounds {
        let guard = mutex.lock().unwrap();
        if guard.owner_died() || page.word(1).swap(1, Ordering::Relaxed) != 0 {
            problems += 1;
        }
        let value = page.word(0).load(Ordering::Relaxed);
        std::thread::yield_now();
        page.word(0).store(value + 1, Ordering::Relaxed);
        page.word(1).store(0, Ordering::Relaxed);
        drop(guard);
    }
    say(format!("done problems={problems}"));
    0
}

/// The 16-process counter, by path: each process opens the file itself (the forked variant
/// of the pthread backend's suite, under an anonymous mutex, cannot apply here), and the
/// counter is exact.
#[test]
fn sixteen_processes_count_to_16000_by_path() {
    const PROCESSES: usize = 16;
    const ROUNDS: u64 = 1000;
    let dir = TempDir::new("fl-sixteen");
    let (path, data) = (dir.join("lock"), dir.join("data"));
    let mutex = SharedMutex::open(&path).unwrap();
    let page = DataPage::create(&data);
    let barrier = Barrier::new();
    let args = [arg(&path), arg(&data), ROUNDS.to_string()];
    let mut helpers: Vec<Helper> =
        (0..PROCESSES).map(|_| Helper::spawn_with_stdin("count", &args, barrier.stdin())).collect();
    for helper in &mut helpers {
        helper.expect("ready");
    }
    barrier.release(PROCESSES);
    let deadline = Instant::now() + Duration::from_secs(120);
    for helper in &mut helpers {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let line = helper.expect_within("done", left);
        assert_eq!(num_field(&line, "problems"), 0, "{line}");
        helper.expect_success();
    }
    assert_eq!(page.word(0).load(Ordering::Relaxed), PROCESSES as u64 * ROUNDS);
    let state = mutex.state();
    assert_eq!(state.acquisitions, PROCESSES as u64 * ROUNDS);
    assert!(!state.locked && state.owner_deaths == 0, "{state:?}");
}

/// A file lock belongs to the process, yet a thread that ends holding is an owner death while
/// its process lives on (the thread-exit record gives the lock back, the holder record stays).
#[test]
fn a_thread_that_ends_holding_is_an_owner_death_while_its_process_lives() {
    let dir = TempDir::new("fl-thread-exit");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let mut helper = Helper::spawn("thread-exit", &[arg(&path)]);
    let ended = helper.expect("thread-ended");
    let dead_tid = num_field(&ended, "tid") as i32;
    assert!(helper.is_running());
    let guard = mutex.lock_timeout(PROMPT).expect("given back when the thread ended");
    assert!(guard.owner_died());
    let dead = guard.dead_owner().expect("recorded");
    assert_eq!((dead.pid, dead.tid), (helper.pid, dead_tid));
    drop(guard);
    helper.close_stdin();
    helper.wait();
    assert!(!mutex.lock().unwrap().owner_died(), "the process's end is no second death");
}

/// `destroy` is refused only while the lock is held, not while handles are open: a handle opened
/// before finds the mutex retired (`Stale`) on its next acquire, and the path gets a new mutex.
#[test]
fn destroy_retires_an_open_but_unheld_mutex() {
    let dir = TempDir::new("fl-destroy");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let held = mutex.lock().unwrap();
    let busy = std::thread::scope(|s| s.spawn(|| SharedMutex::destroy(&path)).join().unwrap());
    assert!(matches!(busy, Err(Error::Busy { .. })), "{busy:?}");
    drop(held);

    SharedMutex::destroy(&path).unwrap();
    assert!(!path.exists());
    assert!(matches!(mutex.lock(), Err(Error::Stale { .. })));
    assert!(matches!(mutex.try_lock(), Err(Error::Stale { .. })));
    let fresh = SharedMutex::open(&path).unwrap();
    assert!(!fresh.lock().unwrap().owner_died());
}

/// A `fork()` child shares its parent's open file description, hence its file lock: locking
/// through an inherited handle is refused, and dropping it leaves the parent's hold alone.
#[test]
fn a_fork_child_cannot_lock_through_inherited_handles() {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    let dir = TempDir::new("fl-fork");
    let mutex = SharedMutex::open(dir.join("lock")).unwrap();
    let held = mutex.lock().unwrap();
    // SAFETY: the child only locks through the crate (an error path that allocates, which
    // glibc's fork handlers make safe), drops, and leaves with `_exit`.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = match mutex.try_lock() {
                Err(e) if e.code() == "EUNSUPPORTED" => 0,
                _ => 1,
            };
            drop(held);
            // SAFETY: `_exit` ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
            assert!(mutex.state().locked, "the child's exit did not release the parent's hold");
            drop(held);
            assert!(!mutex.state().locked);
        }
    }
}

/// A file of the pthread backend is refused by name, never used: the two backends would not
/// exclude each other.
#[test]
fn a_pthread_backend_file_is_refused() {
    let dir = TempDir::new("fl-foreign");
    let path = dir.join("lock");
    let mut page = vec![0u8; 4096];
    page[..8].copy_from_slice(b"RBMUTEX\0");
    std::fs::write(&path, &page).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    match SharedMutex::open(&path) {
        Err(Error::BadMutex { reason, .. }) => assert!(reason.contains("pthread-backend"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), page, "the file is left as it was");
}

/// The holder record is what reports a death: a process killed while holding leaves it, and
/// `state()` shows the lock abandoned (free, the dead holder on record) until the next acquire.
#[test]
fn a_killed_holder_leaves_its_record_and_the_lock_free() {
    let dir = TempDir::new("fl-killed");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let mut holder = Helper::spawn("locker", &[arg(&path), "lock".into()]);
    holder.expect("opened");
    holder.expect("locked");
    holder.kill_and_reap();
    let state = mutex.state();
    assert!(!state.locked && state.abandoned, "{state:?}");
    assert_eq!(state.owner.map(|o| o.pid), Some(holder.pid));
    let guard = mutex.try_lock().unwrap().expect("free");
    assert!(guard.owner_died());
    drop(guard);
    assert!(!mutex.state().abandoned && !mutex.lock().unwrap().owner_died());
}

/// Hostile files, the file-lock layout's own corpus (the pthread layout's is in
/// `torture_hostile.rs`): each is refused with its typed error by `open` and `destroy`, and
/// left exactly as it was.
#[test]
fn hostile_files_are_refused_untouched() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("fl-hostile");
    let genuine = {
        let path = dir.join("genuine");
        drop(SharedMutex::open(&path).unwrap());
        std::fs::read(&path).unwrap()
    };
    let patched = |offset: usize, bytes: &[u8]| {
        let mut page = genuine.clone();
        page[offset..offset + bytes.len()].copy_from_slice(bytes);
        page
    };
    let files: Vec<(&str, Vec<u8>, u32, &str)> = vec![
        ("empty", vec![], 0o600, "EBADMUTEX"),
        ("short", genuine[..4095].to_vec(), 0o600, "EBADMUTEX"),
        ("random", (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(), 0o600, "EBADMUTEX"),
        ("wrong-magic", patched(0, b"RMFLOCKX"), 0o600, "EBADMUTEX"),
        ("wrong-version", patched(8, &2u32.to_ne_bytes()), 0o600, "EBADMUTEX"),
        ("other-byte-order", patched(12, &0x0403_0201u32.to_ne_bytes()), 0o600, "EBADMUTEX"),
        ("unknown-state", patched(16, &9u32.to_ne_bytes()), 0o600, "EBADMUTEX"),
        ("pthread-backend-file", patched(0, b"RBMUTEX\0"), 0o600, "EBADMUTEX"),
        ("world-writable", genuine.clone(), 0o606, "EINSECURE"),
    ];
    for (name, bytes, mode, code) in files {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let open = SharedMutex::open(&path).map(drop).unwrap_err();
        assert_eq!(open.code(), code, "open {name}: {open}");
        let destroy = SharedMutex::destroy(&path).unwrap_err();
        assert_eq!(destroy.code(), code, "destroy {name}: {destroy}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}: bytes changed");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{name}: mode changed");
    }
    let sub = dir.join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    assert!(SharedMutex::open(&sub).is_err());
    let fifo = dir.join("a-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert_eq!(SharedMutex::open(&fifo).map(drop).unwrap_err().code(), "EBADMUTEX");
    let link = dir.join("a-symlink");
    std::os::unix::fs::symlink(dir.join("genuine"), &link).unwrap();
    assert_eq!(SharedMutex::open(&link).map(drop).unwrap_err().code(), "EINSECURE");
    assert_eq!(SharedMutex::destroy(&link).unwrap_err().code(), "EINSECURE");
    assert!(dir.join("genuine").exists() && std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Arbitrary identity bytes: a page opens exactly when magic, version, byte order and state
    /// are a genuine file's, and nothing panics.
    #[test]
    fn a_page_opens_exactly_when_its_identity_is_genuine(
        identity in proptest::collection::vec(proptest::prelude::any::<u8>(), 20),
        keep in proptest::collection::vec(proptest::prelude::any::<bool>(), 5),
    ) {
        let dir = TempDir::new("fl-prop");
        let path = dir.join("lock");
        drop(SharedMutex::open(&path).unwrap());
        let mut page = std::fs::read(&path).unwrap();
        // Fields: magic 0..8, version 8..12, byte order 12..16, state 16..20 (ready 1..=3).
        let fields = [0..8, 8..12, 12..16, 16..20];
        for (field, keep) in fields.iter().zip(&keep) {
            if !keep {
                page[field.clone()].copy_from_slice(&identity[field.clone()]);
            }
        }
        std::fs::write(&path, &page).unwrap();
        let state = u32::from_ne_bytes(page[16..20].try_into().unwrap());
        let genuine = &page[0..8] == b"RMFLOCK\0"
            && u32::from_ne_bytes(page[8..12].try_into().unwrap()) == 1
            && u32::from_ne_bytes(page[12..16].try_into().unwrap()) == 0x0102_0304
            && (1..=3).contains(&state);
        match SharedMutex::open(&path) {
            // A retired (state 3) file at its path is finished off and a fresh one created.
            Ok(_) => proptest::prop_assert!(genuine),
            Err(e) => proptest::prop_assert!(!genuine && e.code() == "EBADMUTEX", "{e}"),
        }
    }
}

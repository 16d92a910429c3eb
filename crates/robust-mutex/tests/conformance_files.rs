//! Conformance, the file (research §2.4, numbers in the test names): a file from a previous boot
//! (23), deleted and replaced files (24), many processes creating one file at once (25),
//! validation of foreign and damaged files (26), and `destroy`.
//!
//! Not tested here:
//! - 23, "file copied while locked": a copy keeps the boot id, so nothing tells the copy from
//!   the original, and its lock word names the original holder. The crate does not record the
//!   inode in the header, so this case is not detected (the copy's lock looks held until a
//!   timeout); only the boot-id half of 23 is in scope.
//! - 26, other-boot and other-PID-namespace *refusals* at the ABI level (27, 28) need other
//!   toolchains or `unshare`; the PID-namespace field is crafted here instead.

mod conformance_support;

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use conformance_support::MUTEX_OFFSET;
use conformance_support::{
    arg, destroy_unused, dev_ino, field, gettid, helper_main, num_field, say, spawn_locker, wait_for_start,
    wait_until_blocked_in_futex, with_hang_guard, Barrier, Helper, Mode, Rng, TempDir, BLOCKING_MODES, PROMPT, STARTUP,
};
use robust_mutex::{Error, OpenOptions, SharedMutex};

#[test]
#[ignore = "entry point of the helper processes the conformance tests spawn"]
fn helper_entry() {
    helper_main(|role, args| match role {
        "opener" => Some(opener(&args[0], args.get(1).map(String::as_str) == Some("lock"))),
        "destroyer" => {
            let result = SharedMutex::destroy(&args[0]);
            say(format!("destroyed {:?}", result.map_err(|e| e.code())));
            Some(0)
        }
        _ => None,
    });
}

/// Helper: waits at the start barrier, opens `path`, reports `opened dev= ino= gen= abandoned=
/// poisoned=` (or `error code=`), then, with `lock`, locks once and reports `locked died=`.
fn opener(path: &str, lock: bool) -> i32 {
    say("ready");
    wait_for_start();
    let mutex = match SharedMutex::open(path) {
        Ok(mutex) => mutex,
        Err(e) => {
            say(format!("error code={} what={}", e.code(), e.to_string().replace(' ', "_")));
            return 0;
        }
    };
    let (dev, ino) = dev_ino(&mutex);
    let state = mutex.state();
    say(format!(
        "opened dev={dev} ino={ino} gen={} abandoned={} poisoned={}",
        state.generation, state.abandoned, state.poisoned
    ));
    if lock {
        match mutex.lock() {
            Ok(guard) => say(format!("locked died={}", guard.owner_died())),
            Err(e) => say(format!("error code={}", e.code())),
        }
    }
    0
}

/// Byte offset of the futex word in the file: glibc's `__lock` is the mutex's first int, musl's
/// `_m_lock` its second.
const LOCK_WORD: usize = MUTEX_OFFSET + if cfg!(target_env = "musl") { 4 } else { 0 };
/// glibc's `__owner` (the holder's tid, kept beside the lock word).
const GLIBC_OWNER: usize = MUTEX_OFFSET + 8;
const STATE: usize = 16;
const ACQUISITIONS: usize = 96;
const BOOT_ID: std::ops::Range<usize> = 40..56;
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
/// A thread id no live thread can have (above the kernel's PID_MAX_LIMIT of 4194304).
const GONE_TID: u32 = 5_000_000;

fn current_boot_id() -> [u8; 16] {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let hex: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    assert_eq!(hex.len(), 32, "{text:?}");
    let mut id = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        id[i] = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
    }
    id
}

fn write_u32(path: &Path, offset: usize, value: u32) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&value.to_ne_bytes(), offset as u64).unwrap();
}

/// Makes a closed mutex file look as if it was last used in another boot: the boot id is
/// changed (it is compared as a whole).
fn move_to_previous_boot(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let flipped: Vec<u8> = bytes[BOOT_ID].iter().map(|b| !b).collect();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&flipped, BOOT_ID.start as u64).unwrap();
}

/// Scenario 23: a file that survived a reboot, whose lock word may name a thread of the old
/// boot, is re-initialised on open (exactly once, even with several processes opening it
/// together): generation + 1, this boot's id, the lock acquirable, and the first acquirer told its
/// owner died when the lock was held (or abandoned) at the reboot. A POISONED file stays poisoned.
#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: its lock word names a thread of the boot that wrote it, hence the re-initialisation; the file-lock backend's file holds no lock (the kernel's file lock does), and a holder recorded before a crash is reported as an owner death"
)]
fn c23_file_from_a_previous_boot_is_reinitialised_on_open() {
    struct Case {
        name: &'static str,
        lock_word: u32,
        poisoned: bool,
        expect_died: bool,
    }
    let cases = [
        Case { name: "unlocked-at-reboot", lock_word: 0, poisoned: false, expect_died: false },
        Case { name: "held-at-reboot", lock_word: GONE_TID, poisoned: false, expect_died: true },
        Case { name: "abandoned-before-reboot", lock_word: FUTEX_OWNER_DIED, poisoned: false, expect_died: true },
        Case { name: "poisoned-at-reboot", lock_word: 0, poisoned: true, expect_died: false },
    ];
    let dir = TempDir::new("c23");
    for case in cases {
        let path = dir.join(case.name);
        let original = {
            let mutex = SharedMutex::open(&path).unwrap();
            drop(mutex.lock().unwrap());
            (dev_ino(&mutex), mutex.state().generation, mutex.state().fencing_token)
        };
        write_u32(&path, LOCK_WORD, case.lock_word);
        if cfg!(target_env = "gnu") && case.lock_word & 0x3fff_ffff != 0 {
            write_u32(&path, GLIBC_OWNER, case.lock_word);
        }
        if case.poisoned {
            write_u32(&path, STATE, 2);
        }
        if case.lock_word == GONE_TID {
            // In this boot, such a lock word is just a lock someone holds: nothing can take it.
            let mutex = SharedMutex::open(&path).unwrap();
            assert_eq!(mutex.state().holder_tid, Some(GONE_TID as i32));
            assert!(mutex.try_lock().unwrap().is_none());
            assert!(matches!(mutex.lock_timeout(Duration::from_millis(200)), Err(Error::Timeout)));
        }
        move_to_previous_boot(&path);
        assert_ne!(std::fs::read(&path).unwrap()[BOOT_ID], current_boot_id());

        // Several processes open it at once; one re-initialises, all see the result.
        let barrier = Barrier::new();
        let mut openers: Vec<Helper> =
            (0..4).map(|_| Helper::spawn_with_stdin("opener", &[arg(&path)], barrier.stdin())).collect();
        for opener in &mut openers {
            opener.expect("ready");
        }
        barrier.release(openers.len());
        for opener in &mut openers {
            let line = opener.expect("opened");
            assert_eq!(num_field(&line, "gen"), original.1 as i64 + 1, "{}: {line}", case.name);
            assert_eq!(num_field(&line, "ino"), original.0 .1 as i64, "{}: re-initialised in place", case.name);
            assert_eq!(field(&line, "poisoned"), case.poisoned.to_string(), "{}: {line}", case.name);
            opener.expect_success();
        }

        let mutex = SharedMutex::open(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap()[BOOT_ID], current_boot_id(), "{}", case.name);
        let state = mutex.state();
        assert_eq!(state.generation, original.1 + 1, "{}: {state:?}", case.name);
        assert!(!state.locked, "{}: {state:?}", case.name);
        assert_eq!(state.abandoned, case.expect_died, "{}: {state:?}", case.name);
        assert_eq!(state.poisoned, case.poisoned, "{}: {state:?}", case.name);
        if case.poisoned {
            assert!(matches!(mutex.lock(), Err(Error::NotRecoverable)), "{}", case.name);
            SharedMutex::reset(&path).unwrap();
            assert_eq!(mutex.state().generation, original.1 + 2);
        }
        let guard = mutex.lock_timeout(PROMPT).unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        assert_eq!(guard.owner_died(), case.expect_died, "{}", case.name);
        assert!(guard.dead_owner().is_none(), "{}: no holder of this boot recorded itself", case.name);
        assert!(guard.fencing_token() > original.2, "{}: tokens go on above the last one of the old boot", case.name);
        drop(guard);
        let again = mutex.lock().unwrap();
        assert!(!again.owner_died(), "{}", case.name);
        drop(again);
        assert_eq!(mutex.state().owner_deaths, case.expect_died as u64, "{}", case.name);
    }
}

/// Scenario 23, crash variant: the process re-initialising a file from a previous boot is
/// SIGKILLed inside the re-initialisation, after the mutex was re-initialised and before the
/// boot id was written (a test hook pauses it exactly there). The file must stay usable: the
/// next opener redoes the re-initialisation, and the lock held at the reboot is still reported
/// as an owner death.
#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: its lock word names a thread of the boot that wrote it, hence the re-initialisation; the file-lock backend's file holds no lock (the kernel's file lock does), and a holder recorded before a crash is reported as an owner death"
)]
fn c23_reinitialisation_killed_before_its_commit_point_is_redone() {
    let dir = TempDir::new("c23-killed");
    let path = dir.join("lock");
    let generation = SharedMutex::open(&path).unwrap().state().generation;
    write_u32(&path, LOCK_WORD, GONE_TID);
    if cfg!(target_env = "gnu") {
        write_u32(&path, GLIBC_OWNER, GONE_TID);
    }
    move_to_previous_boot(&path);
    let marker = dir.join("paused");
    let mut repairer = Helper::spawn_with_env(
        "opener",
        &[arg(&path)],
        &[("ROBUST_MUTEX_TEST_PAUSE_BEFORE_COMMIT", marker.to_str().unwrap())],
    );
    repairer.expect("ready");
    repairer.send("go");
    let deadline = std::time::Instant::now() + STARTUP;
    while !marker.exists() {
        assert!(std::time::Instant::now() < deadline, "the re-initialisation never reached the test pause");
        std::thread::sleep(Duration::from_millis(5));
    }
    repairer.kill_and_reap();

    let mutex = SharedMutex::open(&path).expect("a file whose re-initialisation was killed still opens");
    assert_eq!(std::fs::read(&path).unwrap()[BOOT_ID], current_boot_id());
    let state = mutex.state();
    assert!(state.generation > generation, "{state:?}");
    assert!(state.abandoned, "the lock held at the reboot is still abandoned: {state:?}");
    let guard = mutex.lock_timeout(PROMPT).expect("lock");
    assert!(guard.owner_died(), "the abandoned mark survived the killed re-initialisation");
}

/// Scenario 24: a file deleted under a live handle makes the handle stale; opening the path
/// again creates a new file, which is not stale.
#[test]
fn c24_deleted_file_is_detected() {
    let dir = TempDir::new("c24d");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let old = dev_ino(&mutex);
    assert!(!mutex.is_stale());
    std::fs::remove_file(&path).unwrap();
    assert!(mutex.is_stale());
    let fresh = SharedMutex::open(&path).unwrap();
    assert!(!fresh.is_stale());
    assert_ne!(dev_ino(&fresh), old);
    assert!(mutex.is_stale(), "still stale: the path names another file");
    assert_eq!(fresh.state().acquisitions, 0);
}

/// Scenario 24: a file replaced at its path (another mutex file renamed over it) makes the handle
/// stale; opening the path gets the replacement.
#[test]
fn c24_replaced_file_is_detected() {
    let dir = TempDir::new("c24r");
    let path = dir.join("lock");
    let other = dir.join("other");
    let mutex = SharedMutex::open(&path).unwrap();
    let replacement = SharedMutex::open(&other).unwrap();
    let replacement_id = dev_ino(&replacement);
    drop(replacement);
    std::fs::rename(&other, &path).unwrap();
    assert!(mutex.is_stale());
    let now = SharedMutex::open(&path).unwrap();
    assert_eq!(dev_ino(&now), replacement_id);
    assert!(!now.is_stale());
}

/// Scenario 24: a thread waiting in an acquire on a handle whose file is then deleted or replaced
/// fails with `Stale` (ESTALE) instead of waiting on a lock nobody else uses any more. Every
/// blocking flavour; the holder is another process.
#[test]
fn c24_waiter_on_a_file_deleted_or_replaced_gets_estale() {
    let dir = TempDir::new("c24w");
    for (round, mode) in BLOCKING_MODES.into_iter().enumerate() {
        for replace in [false, true] {
            let path = dir.join(&format!("lock-{round}-{replace}"));
            let mutex = SharedMutex::open(&path).unwrap();
            let (mut holder, _) = spawn_locker(&path, Mode::Lock);
            holder.expect("locked");
            let (tid_tx, tid_rx) = mpsc::channel();
            let (done_tx, done_rx) = mpsc::channel();
            let waiter = {
                let mutex = mutex.clone();
                std::thread::spawn(move || {
                    tid_tx.send(gettid()).unwrap();
                    done_tx.send(mode.acquire(&mutex).map(drop)).unwrap();
                })
            };
            wait_until_blocked_in_futex(std::process::id() as i32, tid_rx.recv().unwrap());
            if replace {
                let other = dir.join("replacement");
                drop(SharedMutex::open(&other).unwrap());
                std::fs::rename(&other, &path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
            let result = done_rx.recv_timeout(PROMPT).expect("the waiter must notice (hang guard)");
            waiter.join().unwrap();
            let err = result.expect_err("a stale handle's waiter got the lock");
            assert!(matches!(err, Error::Stale { .. }), "{mode:?}, replace={replace}: {err:?}");
            assert_eq!(err.code(), "ESTALE");
            assert_eq!(err.path(), Some(path.as_path()));
            holder.kill_and_reap();
        }
    }
}

/// Scenario 24, retired under a live handle: once the header says TOMBSTONE (what `destroy`
/// writes; here by a process that bypassed the live-user marker), every acquire through a handle
/// is refused with ESTALE, the non-blocking one included and whether or not someone holds the
/// lock: a header load on the path where `trylock` fails, not a system call.
#[test]
fn c24_retired_mutex_is_refused_by_every_acquire() {
    let dir = TempDir::new("c24-retired");
    for held in [false, true] {
        let path = dir.join(&format!("lock-{held}"));
        let mutex = SharedMutex::open(&path).unwrap();
        let mut holder = held.then(|| {
            let (mut holder, _) = spawn_locker(&path, Mode::Lock);
            holder.expect("locked");
            holder
        });
        write_u32(&path, STATE, 3);
        let codes = [
            mutex.try_lock().map(|g| g.is_some()).map_err(|e| e.code()),
            mutex.try_lock_owned().map(|g| g.is_some()).map_err(|e| e.code()),
            mutex.try_acquire_raw().map(|g| g.is_some()).map_err(|e| e.code()),
            mutex.lock().map(|_| true).map_err(|e| e.code()),
            mutex.lock_timeout(Duration::from_millis(300)).map(|_| true).map_err(|e| e.code()),
        ];
        for (i, code) in codes.iter().enumerate() {
            assert_eq!(*code, Err("ESTALE"), "acquire flavour {i}, held elsewhere: {held}");
        }
        if let Some(holder) = &mut holder {
            holder.kill_and_reap();
        }
    }
}

/// Each handle keeps the path it was opened from, even when another handle of this process
/// opened the same file (one shared mapping) through another name first; `is_stale` checks
/// that handle's own path.
#[test]
fn each_handle_keeps_its_own_path() {
    let dir = TempDir::new("own-path");
    let first = dir.join("first");
    let second = dir.join("second");
    let a = SharedMutex::open(&first).unwrap();
    std::fs::hard_link(&first, &second).unwrap();
    let b = SharedMutex::open(&second).unwrap();
    assert_eq!(dev_ino(&a), dev_ino(&b), "one file");
    assert_eq!(a.path(), Some(first.as_path()));
    assert_eq!(b.path(), Some(second.as_path()));
    std::fs::remove_file(&first).unwrap();
    assert!(a.is_stale(), "its path no longer names the file");
    assert!(!b.is_stale(), "its path still does");
}

/// A mode that lets others write is refused when creating, with the error every other opener
/// would get: never a file only its creator can use.
#[test]
fn insecure_modes_are_refused_at_creation_too() {
    let dir = TempDir::new("mode-symmetry");
    for mode in [0o666, 0o602, 0o777] {
        let path = dir.join(&format!("lock-{mode:o}"));
        let err = OpenOptions::new().mode(mode).open(&path).expect_err("world-writable mode");
        assert_eq!(err.code(), "EINSECURE", "{mode:o}: {err}");
        assert!(!path.exists(), "{mode:o}: nothing created");
    }
    let path = dir.join("group");
    drop(OpenOptions::new().mode(0o660).open(&path).expect("group-writable is allowed"));
    drop(SharedMutex::open(&path).expect("and opens for everyone alike"));
}

/// `destroy` unlinks only the file it retired: a file put at the path between its retiring and
/// its unlinking (paused there by a test hook) is left in place.
#[test]
fn destroy_never_unlinks_a_file_put_at_the_path_meanwhile() {
    let dir = TempDir::new("destroy-race");
    let path = dir.join("lock");
    drop(SharedMutex::open(&path).unwrap());
    let marker = dir.join("paused");
    let mut destroyer = Helper::spawn_with_env(
        "destroyer",
        &[arg(&path)],
        &[("ROBUST_MUTEX_TEST_PAUSE_BEFORE_UNLINK", marker.to_str().unwrap())],
    );
    let deadline = std::time::Instant::now() + STARTUP;
    while !marker.exists() {
        assert!(std::time::Instant::now() < deadline, "destroy never reached the test pause");
        std::thread::sleep(Duration::from_millis(2));
    }
    let other = dir.join("other");
    let replacement = dev_ino(&SharedMutex::open(&other).unwrap());
    std::fs::rename(&other, &path).unwrap();
    std::fs::remove_file(&marker).unwrap();
    destroyer.expect_within("destroyed Ok(())", PROMPT);
    let now = std::fs::metadata(&path).expect("the replacement is still at the path");
    assert_eq!((now.dev(), now.ino()), replacement);
}

/// A waiter already blocked when the mutex is retired (or poisoned) under it fails within a
/// slice with ESTALE (or ENOTRECOVERABLE), and a non-blocking attempt on a poisoned mutex that
/// someone holds fails too, instead of answering "busy".
#[test]
fn c24_waiters_notice_a_mutex_retired_or_poisoned_under_them() {
    let dir = TempDir::new("c24-retired-waiting");
    for (state, code) in [(3, "ESTALE"), (2, "ENOTRECOVERABLE")] {
        let path = dir.join(&format!("lock-{state}"));
        let mutex = SharedMutex::open(&path).unwrap();
        let (mut holder, _) = spawn_locker(&path, Mode::Lock);
        holder.expect("locked");
        let (tid_tx, tid_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let waiter = {
            let mutex = mutex.clone();
            std::thread::spawn(move || {
                tid_tx.send(gettid()).unwrap();
                done_tx.send(mutex.lock_timeout(Duration::from_secs(30)).map(drop).map_err(|e| e.code())).unwrap();
            })
        };
        wait_until_blocked_in_futex(std::process::id() as i32, tid_rx.recv().unwrap());
        write_u32(&path, STATE, state);
        let result = done_rx.recv_timeout(PROMPT).expect("the waiter must notice (hang guard)");
        waiter.join().unwrap();
        assert_eq!(result, Err(code), "state {state}");
        assert_eq!(mutex.try_lock().map(|g| g.is_some()).map_err(|e| e.code()), Err(code), "state {state}, held");
        holder.kill_and_reap();
    }
}

/// Scenario 24, tombstone: a file whose `destroy` died after retiring it but before unlinking it
/// (crafted: state TOMBSTONE, nobody using it) is not used again: opening the path gets a fresh
/// mutex in a new file.
#[test]
fn c24_retired_file_left_at_its_path_is_not_reused() {
    let dir = TempDir::new("c24t");
    let path = dir.join("lock");
    // The retired file is written with plain file calls, never opened as a mutex here: no
    // descriptor of this process holds its flock (a helper being spawned by another test would
    // share such a descriptor for a moment and make the file look in use).
    let mut bytes = valid_bytes(&dir);
    bytes[STATE..STATE + 4].copy_from_slice(&3u32.to_ne_bytes());
    bytes[ACQUISITIONS..ACQUISITIONS + 8].copy_from_slice(&7u64.to_ne_bytes());
    write_file(&path, &bytes, 0o600);
    // Keep the retired inode alive (a plain descriptor, no flock), so its number cannot be
    // reused by the next file and the check below means something.
    let retired = std::fs::File::open(&path).unwrap();
    let old = (retired.metadata().unwrap().dev(), retired.metadata().unwrap().ino());
    let mutex = with_hang_guard("open a retired file", Duration::from_secs(30), {
        let path = path.clone();
        move || SharedMutex::open(&path)
    })
    .expect("open past a retired file");
    assert_ne!(dev_ino(&mutex), old, "the retired file was reused");
    assert_eq!(retired.metadata().unwrap().nlink(), 0, "the retired file was unlinked");
    let state = mutex.state();
    assert_eq!((state.generation, state.acquisitions), (1, 0), "{state:?}");
    assert!(!mutex.lock().unwrap().owner_died());
}

/// Scenario 25: 16 processes open the same new path at once (released together from a start
/// barrier), four rounds: exactly one file is created, everyone maps that inode with no error
/// and sees generation 1, no temporary file is left behind, and the 16 acquisitions all land on
/// the one mutex.
#[test]
fn c25_concurrent_first_opens_create_exactly_one_file() {
    const OPENERS: usize = 16;
    let dir = TempDir::new("c25");
    for round in 0..4 {
        let round_dir = dir.join(&format!("round{round}"));
        std::fs::create_dir(&round_dir).unwrap();
        let path = round_dir.join("lock");
        let barrier = Barrier::new();
        let mut openers: Vec<Helper> = (0..OPENERS)
            .map(|_| Helper::spawn_with_stdin("opener", &[arg(&path), "lock".into()], barrier.stdin()))
            .collect();
        for opener in &mut openers {
            opener.expect("ready");
        }
        barrier.release(OPENERS);
        let mut seen = BTreeSet::new();
        for opener in &mut openers {
            let line = opener.expect("opened");
            seen.insert((num_field(&line, "dev") as u64, num_field(&line, "ino") as u64));
            assert_eq!(num_field(&line, "gen"), 1, "round {round}: {line}");
            assert_eq!(field(&opener.expect("locked"), "died"), "false");
            opener.expect_success();
        }
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(seen, BTreeSet::from([(meta.dev(), meta.ino())]), "round {round}: not one inode");
        let entries: Vec<_> = std::fs::read_dir(&round_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("lock")], "round {round}: leftovers");
        let mutex = SharedMutex::open(&path).unwrap();
        let state = mutex.state();
        assert_eq!((state.generation, state.acquisitions), (1, OPENERS as u64), "round {round}: {state:?}");
    }
}

/// A file's bytes, mode and inode, to prove it was not modified.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    bytes: Vec<u8>,
    mode: u32,
    ino: u64,
    len: u64,
}

fn snapshot(path: &Path) -> Snapshot {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let bytes = if meta.is_file() { std::fs::read(path).unwrap() } else { Vec::new() };
    Snapshot { bytes, mode: meta.mode(), ino: meta.ino(), len: meta.len() }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The bytes of a valid, unused mutex file made by this build.
fn valid_bytes(dir: &TempDir) -> Vec<u8> {
    let path = dir.join("template");
    drop(SharedMutex::open(&path).unwrap());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(bytes.len(), 4096);
    bytes
}

fn patched(base: &[u8], offset: usize, patch: &[u8]) -> Vec<u8> {
    let mut bytes = base.to_vec();
    bytes[offset..offset + patch.len()].copy_from_slice(patch);
    bytes
}

fn code_of<T>(result: Result<T, Error>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => e.code().into(),
    }
}

/// Scenario 26: foreign, damaged and unsafe files are refused with a specific error code, by
/// `open` (creating or not), `from_fd` and `destroy`, and are left exactly as they were (bytes,
/// mode, inode); nothing else appears in the directory.
#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: crafted bytes at the offsets of the pthread backend's header (ABI tag, PID namespace, lock word); the file-lock backend's layout is tested in file_lock_semantics (hostile files)"
)]
fn c26_foreign_and_damaged_files_are_refused_untouched() {
    let dir = TempDir::new("c26");
    let good = valid_bytes(&dir);
    let mut rng = Rng::new(26);
    let random: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
    let mut other_abi = good.clone();
    other_abi[26] = if usize::BITS == 64 { 32 } else { 64 }; // pointer width
    let mut other_libc = good.clone();
    other_libc[28] = if cfg!(target_env = "musl") { 1 } else { 2 };

    // (name, bytes, mode, expected code, whether destroy checks it the same way)
    let cases: Vec<(&str, Vec<u8>, u32, &str, bool)> = vec![
        ("empty", Vec::new(), 0o600, "EBADMUTEX", true),
        ("100-bytes", good[..100].to_vec(), 0o600, "EBADMUTEX", true),
        ("4095-bytes", good[..4095].to_vec(), 0o600, "EBADMUTEX", true),
        ("random-page", random, 0o600, "EBADMUTEX", true),
        ("zero-page", vec![0u8; 4096], 0o600, "EBADMUTEX", true),
        ("wrong-version", patched(&good, 8, &99u32.to_ne_bytes()), 0o600, "EBADMUTEX", true),
        ("wrong-header-size", patched(&good, 12, &256u32.to_ne_bytes()), 0o600, "EBADMUTEX", true),
        ("other-pointer-width", other_abi, 0o600, "EABIMISMATCH", true),
        ("other-libc", other_libc, 0o600, "EABIMISMATCH", true),
        ("state-zero", patched(&good, STATE, &0u32.to_ne_bytes()), 0o600, "EBADMUTEX", true),
        ("state-unknown", patched(&good, STATE, &9u32.to_ne_bytes()), 0o600, "EBADMUTEX", true),
        ("unknown-flags", patched(&good, 20, &1u32.to_ne_bytes()), 0o600, "EBADMUTEX", true),
        // Another PID namespace's file is a valid mutex file: destroy may retire it.
        ("other-pid-namespace", patched(&good, 56, &[0xA5; 16]), 0o600, "EPIDNS", false),
        ("world-writable", good.clone(), 0o666, "EINSECURE", true),
    ];
    for (name, bytes, mode, expected, destroy_too) in &cases {
        let path = dir.join(name);
        write_file(&path, bytes, *mode);
        let before = snapshot(&path);
        let open = SharedMutex::open(&path);
        assert_eq!(code_of(open), *expected, "open {name}");
        assert_eq!(code_of(OpenOptions::new().create(false).open(&path)), *expected, "open(create=false) {name}");
        let fd: OwnedFd = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap().into();
        assert_eq!(code_of(SharedMutex::from_fd(fd)), *expected, "from_fd {name}");
        if *destroy_too {
            assert_eq!(code_of(SharedMutex::destroy(&path)), *expected, "destroy {name}");
        }
        assert_eq!(snapshot(&path), before, "{name} was modified");
        if let Err(Error::BadMutex { path: Some(p), .. } | Error::Insecure { path: Some(p), .. }) =
            SharedMutex::open(&path)
        {
            assert_eq!(p, path, "the error names the file");
        }
    }

    // Owned by another user (only root can make one).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let path = dir.join("other-owner");
        write_file(&path, &good, 0o600);
        std::os::unix::fs::chown(&path, Some(4242), None).unwrap();
        let before = snapshot(&path);
        assert_eq!(code_of(SharedMutex::open(&path)), "EINSECURE");
        assert_eq!(code_of(SharedMutex::destroy(&path)), "EINSECURE");
        assert_eq!(snapshot(&path), before);
        std::fs::remove_file(&path).unwrap();
    }

    // Not regular files.
    let subdir = dir.join("a-directory");
    std::fs::create_dir(&subdir).unwrap();
    let before = snapshot(&subdir);
    assert_eq!(code_of(SharedMutex::open(&subdir)), "EISDIR");
    assert_eq!(code_of(SharedMutex::destroy(&subdir)), "EISDIR");
    let dir_fd: OwnedFd = std::fs::File::open(&subdir).unwrap().into();
    assert_eq!(code_of(SharedMutex::from_fd(dir_fd)), "EBADMUTEX");
    assert_eq!(snapshot(&subdir), before);
    assert_eq!(std::fs::read_dir(&subdir).unwrap().count(), 0);

    let fifo = dir.join("a-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let fifo_codes = with_hang_guard("open a FIFO", Duration::from_secs(30), {
        let fifo = fifo.clone();
        move || (code_of(SharedMutex::open(&fifo)), code_of(SharedMutex::destroy(&fifo)))
    });
    assert_eq!(fifo_codes, ("EBADMUTEX".into(), "EBADMUTEX".into()));
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    // Symbolic links are never followed, even to a valid mutex file, or to nothing.
    let target = dir.join("target");
    drop(SharedMutex::open(&target).unwrap());
    let target_before = snapshot(&target);
    let link = dir.join("a-link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = SharedMutex::open(&link).unwrap_err();
    assert!(matches!(err, Error::Insecure { .. }), "{err:?}");
    assert_eq!(err.code(), "EINSECURE");
    assert_eq!(code_of(SharedMutex::destroy(&link)), "EINSECURE");
    assert_eq!(snapshot(&target), target_before);
    let dangling = dir.join("a-dangling-link");
    let nowhere = dir.join("nowhere");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    assert_eq!(code_of(SharedMutex::open(&dangling)), "EINSECURE");
    assert!(!nowhere.exists(), "opening a dangling link created its target");

    // Nothing was created beside the refused files (no temporary files left behind).
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let mut expected: Vec<String> = cases.iter().map(|c| c.0.to_string()).collect();
    expected.extend(["a-dangling-link", "a-directory", "a-fifo", "a-link", "target"].map(String::from));
    expected.sort();
    assert_eq!(names, expected);
}

/// `destroy`: refused with `Busy` (EBUSY) while the file is open here or in another process, and
/// the file is then untouched; works once nobody has it open (the path is gone and the next open
/// creates a fresh mutex); refuses a file that is not a mutex file, leaving it intact; a missing
/// path is ENOENT.
#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "file-lock backend: destroy is refused only while the lock is held, not while the file is open (no live-user marker: flock and fcntl locks interact on the BSDs); tested in file_lock_semantics"
)]
fn destroy_is_refused_while_in_use_and_for_foreign_files() {
    let dir = TempDir::new("destroy");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    drop(mutex.lock().unwrap());
    let before = snapshot(&path);
    assert_eq!(code_of(SharedMutex::destroy(&path)), "EBUSY", "open in this process");
    assert_eq!(snapshot(&path), before);
    assert!(!mutex.is_stale());
    drop(mutex);

    let (mut user, _) = spawn_locker(&path, Mode::Lock);
    user.expect("locked");
    user.send("release");
    user.expect("released");
    let before = snapshot(&path);
    assert_eq!(code_of(SharedMutex::destroy(&path)), "EBUSY", "open in another process");
    assert_eq!(snapshot(&path), before);
    user.close_stdin();
    user.expect_success();

    destroy_unused(&path);
    assert!(!path.exists());
    assert_eq!(code_of(SharedMutex::destroy(&path)), "ENOENT");
    let fresh = SharedMutex::open(&path).unwrap();
    let state = fresh.state();
    assert_eq!((state.generation, state.acquisitions, state.owner_deaths), (1, 0, 0), "{state:?}");
    drop(fresh);

    let text = dir.join("notes.txt");
    write_file(&text, b"not a mutex, keep me\n", 0o600);
    let before = snapshot(&text);
    let err = SharedMutex::destroy(&text).unwrap_err();
    assert!(matches!(err, Error::BadMutex { .. }), "{err:?}");
    assert_eq!(err.path(), Some(text.as_path()));
    assert_eq!(snapshot(&text), before);
}

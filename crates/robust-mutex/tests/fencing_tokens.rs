//! Fencing tokens (issue 9, local half), with real processes: every acquisition's token is
//! greater than every token issued before it for the same file — across contending processes,
//! a SIGKILLed holder, resets (under the lock, and the re-initialisation of an unused file),
//! an acquisition handed back, and a file destroyed and created again at the same path.
//! (The pthread-level unrecoverable re-initialisation is checked in `conformance_recovery.rs`,
//! the re-initialisation after a reboot in `conformance_files.rs`, 16 forked processes in
//! `conformance_fork.rs`.)

mod conformance_support;

use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{SystemTime, UNIX_EPOCH};

use conformance_support::*;
use robust_mutex::{CancelToken, SharedMutex};

#[test]
#[ignore = "entry point of the helper processes the fencing tests spawn"]
fn helper_entry() {
    helper_main(|role, args| match role {
        "contender" => Some(contender(Path::new(&args[0]), Path::new(&args[1]), args[2].parse().expect("rounds"))),
        _ => None,
    });
}

// Words of the data page the contenders share.
const LAST_TOKEN: usize = 0;
const COUNTER: usize = 1;
const INSIDE: usize = 2;

// Exit codes of a contender.
const EXIT_NOT_INCREASING: i32 = 30;
const EXIT_TWO_INSIDE: i32 = 31;
const EXIT_LOCK_FAILED: i32 = 32;
const EXIT_OWNER_DIED: i32 = 33;
const EXIT_STATE_DISAGREES: i32 = 34;

/// One contending process: after the start barrier, `rounds` acquisitions, rotating through
/// the guard types (borrowed, owned, raw) and the acquire flavours. Under the lock it checks
/// that its token is greater than the last one recorded in the data page by any process (the
/// order of acquisition), that `state()` reports it, and makes a non-atomic increment of a
/// shared counter. Returns 0 or the code of the broken rule.
fn contender(path: &Path, data_path: &Path, rounds: u64) -> i32 {
    let mutex = SharedMutex::open(path).expect("open");
    let data = DataPage::open(data_path);
    say("ready");
    wait_for_start();
    let cancel = CancelToken::new();
    for round in 0..rounds {
        let inside = |token: u64, owner_died: bool| -> Result<(), i32> {
            if owner_died {
                return Err(EXIT_OWNER_DIED);
            }
            if data.word(INSIDE).swap(1, SeqCst) != 0 {
                return Err(EXIT_TWO_INSIDE);
            }
            let last = data.word(LAST_TOKEN).load(SeqCst);
            if token <= last {
                eprintln!("token {token} after {last}");
                return Err(EXIT_NOT_INCREASING);
            }
            if mutex.state().fencing_token != token {
                return Err(EXIT_STATE_DISAGREES);
            }
            let count = data.word(COUNTER).load(SeqCst);
            if round % 64 == 0 {
                std::thread::yield_now();
            }
            data.word(COUNTER).store(count + 1, SeqCst);
            data.word(LAST_TOKEN).store(token, SeqCst);
            data.word(INSIDE).store(0, SeqCst);
            Ok(())
        };
        let checked = match round % 4 {
            0 => match Mode::Lock.acquire(&mutex) {
                Ok(guard) => inside(guard.fencing_token(), guard.owner_died()),
                Err(_) => Err(EXIT_LOCK_FAILED),
            },
            1 => match Mode::Try.acquire(&mutex) {
                Ok(guard) => inside(guard.fencing_token(), guard.owner_died()),
                Err(_) => Err(EXIT_LOCK_FAILED),
            },
            2 => match mutex.lock_owned() {
                Ok(guard) => inside(guard.fencing_token(), guard.owner_died()),
                Err(_) => Err(EXIT_LOCK_FAILED),
            },
            _ => match mutex.acquire_raw_until(None, &cancel) {
                Ok(held) => {
                    let result = inside(held.fencing_token(), held.owner_died());
                    // SAFETY: acquired just above, on this thread, from this mutex.
                    unsafe { mutex.release_raw(held) }.expect("release_raw");
                    result
                }
                Err(_) => Err(EXIT_LOCK_FAILED),
            },
        };
        if let Err(code) = checked {
            return code;
        }
    }
    0
}

/// Several processes contend for one file, with every guard type and acquire flavour: in the
/// order the lock was taken, each token is greater than the one before (checked under the lock
/// by each process), exactly one token is issued per acquisition, and `state()` reports the last.
#[test]
fn tokens_strictly_increase_across_contending_processes() {
    const PROCESSES: usize = 12;
    const ROUNDS: u64 = 240;
    let dir = TempDir::new("fence-contend");
    let path = dir.join("lock");
    let data_path = dir.join("data");
    let data = DataPage::create(&data_path);
    let mutex = SharedMutex::open(&path).expect("create");
    let before = mutex.state().fencing_token;
    let barrier = Barrier::new();
    let mut helpers: Vec<Helper> = (0..PROCESSES)
        .map(|_| {
            Helper::spawn_with_stdin("contender", &[arg(&path), arg(&data_path), ROUNDS.to_string()], barrier.stdin())
        })
        .collect();
    for helper in &mut helpers {
        helper.expect("ready");
    }
    barrier.release(PROCESSES);
    for helper in &mut helpers {
        let status = helper.wait();
        assert!(status.success(), "contender {} ended with {status:?} (30: a token did not increase, 31: two holders, 32: lock failed, 33: owner died, 34: state() disagreed)", helper.pid);
    }
    let total = PROCESSES as u64 * ROUNDS;
    assert_eq!(data.word(COUNTER).load(SeqCst), total, "the lock excluded");
    let last = data.word(LAST_TOKEN).load(SeqCst);
    let state = mutex.state();
    assert_eq!(state.fencing_token, last, "state() reports the last token issued");
    assert_eq!(last - before, total, "one token per acquisition, none issued twice");
}

/// A holder SIGKILLed inside its critical section: its successor is told, and gets a greater
/// token; while nobody holds the abandoned lock, `state()` still reports the dead holder's token.
#[test]
fn a_killed_holders_successor_gets_a_greater_token() {
    let dir = TempDir::new("fence-kill");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("create");
    let mut last = mutex.state().fencing_token;
    for mode in ALL_MODES {
        let (mut holder, _) = spawn_locker(&path, mode);
        let line = holder.expect_within("locked", PROMPT);
        let dead_token = u64_field(&line, "token");
        assert!(dead_token > last, "{mode:?}: {dead_token} after {last}");
        holder.kill_and_reap();
        let state = mutex.state();
        assert!(state.abandoned, "{state:?}");
        assert_eq!(state.fencing_token, dead_token, "the dead holder's token is the last issued");
        let guard = mutex.lock_timeout(PROMPT).expect("lock after the kill");
        assert!(guard.owner_died());
        assert!(guard.fencing_token() > dead_token, "{} after the dead holder's {dead_token}", guard.fencing_token());
        last = guard.fencing_token();
    }
}

/// Resets never lower the counter: a reset under the lock (the file in use), a reset that
/// re-initialises the unused file in place, and `reset_poison` through a handle.
#[test]
fn resets_never_lower_the_tokens() {
    let dir = TempDir::new("fence-reset");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("create");
    let poison = |mutex: &SharedMutex| {
        let mut guard = mutex.lock().expect("lock");
        guard.poison();
        let token = guard.fencing_token();
        drop(guard);
        token
    };

    let poisoned_at = poison(&mutex);
    SharedMutex::reset(&path).expect("reset while in use");
    let after_reset = mutex.lock().expect("lock after reset").fencing_token();
    assert!(after_reset > poisoned_at, "{after_reset} after {poisoned_at}");

    let poisoned_at = poison(&mutex);
    mutex.reset_poison().expect("reset_poison");
    let after_handle_reset = mutex.lock().expect("lock").fencing_token();
    assert!(after_handle_reset > poisoned_at);

    let poisoned_at = poison(&mutex);
    drop(mutex);
    // Nobody has the file open: the pthread backend re-initialises it in place.
    SharedMutex::reset(&path).expect("reset of an unused file");
    let (mut next, _) = spawn_locker(&path, Mode::Lock);
    let line = next.expect_within("locked", PROMPT);
    assert!(u64_field(&line, "token") > poisoned_at, "{line} after {poisoned_at}");
    next.send("release");
    next.expect("released");
}

/// An acquisition handed back unused (`hand_back_raw`) passes an owner death on, and the next
/// acquirer's token is still greater than the handed-back one: tokens are never reissued, even
/// for an acquisition nobody used.
#[test]
fn a_handed_back_acquisition_is_not_reissued() {
    let dir = TempDir::new("fence-hand-back");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("create");
    let (mut holder, _) = spawn_locker(&path, Mode::Lock);
    let dead_token = u64_field(&holder.expect_within("locked", PROMPT), "token");
    holder.send("exit");
    holder.expect_success();

    let held = mutex.try_acquire_raw().expect("try").expect("free after the exit");
    assert!(held.owner_died());
    let handed_back = held.fencing_token();
    assert!(handed_back > dead_token);
    // SAFETY: acquired just above, on this thread, from this mutex.
    unsafe { mutex.hand_back_raw(held) }.expect("hand back");

    let (mut next, _) = spawn_locker(&path, Mode::Lock);
    let line = next.expect_within("locked", PROMPT);
    assert_eq!(field(&line, "died"), "true", "the death was passed on: {line}");
    let next_token = u64_field(&line, "token");
    assert!(next_token > handed_back, "{next_token} after the handed-back {handed_back}");
    next.send("release");
    next.expect("released");

    let clean = mutex.try_acquire_raw().expect("try").expect("free");
    let clean_token = clean.fencing_token();
    assert!(clean_token > next_token);
    // SAFETY: as above.
    unsafe { mutex.hand_back_raw(clean) }.expect("hand back a clean acquisition");
    assert!(mutex.lock().expect("lock").fencing_token() > clean_token);
}

fn wall_clock_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos() as u64
}

/// A new file's tokens start at the wall clock (ns since the epoch), and acquiring as fast as
/// possible does not overtake it: so a file destroyed and created again at the same path (here
/// by another process) hands out greater tokens than the old one did.
#[test]
fn a_destroyed_and_recreated_file_continues_above_the_old_tokens() {
    let dir = TempDir::new("fence-recreate");
    let path = dir.join("lock");
    let created_after = wall_clock_ns();
    let mutex = SharedMutex::open(&path).expect("create");
    let first = mutex.lock().expect("lock").fencing_token();
    assert!(first > created_after && first <= wall_clock_ns() + 1, "seeded from the clock: {first}");
    let mut last = first;
    for _ in 0..200_000 {
        last = mutex.try_lock().expect("try").expect("uncontended").fencing_token();
    }
    assert_eq!(last, first + 200_000);
    assert!(last < wall_clock_ns(), "acquisitions never outrun the clock");
    drop(mutex);
    destroy_unused(&path);

    let (mut creator, _) = spawn_locker(&path, Mode::Lock);
    let line = creator.expect_within("locked", PROMPT);
    let recreated = u64_field(&line, "token");
    assert!(recreated > last, "the re-created file's first token {recreated} is above the old file's last {last}");
    creator.send("release");
    creator.expect("released");
}

//! Conformance, owner death across processes (research §2.4, numbers in the test names): a
//! waiter blocked when the holder is SIGKILLed (5), every acquire flavour after a death (6),
//! SIGKILL of a many-threaded process on ten mutexes (8, simplified tst-robust8), exec while
//! holding (9), chained deaths (11), poisoning with waiters blocked in three processes (13),
//! reset (14), lost-wake-up stress over processes and threads (18).
//!
//! Every death here is real: helper processes are killed with SIGKILL (sent by this process, or
//! by the helper to itself), exit, or exec while holding; nothing calls the crate's internals.
//!
//! A holder that execs from a thread other than its main thread is not reported by the kernel;
//! the crate's waiters detect the vanished holder between slices instead, see
//! `c09_exec_from_a_non_leader_thread_reports_owner_death`.

mod conformance_support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use conformance_support::{
    arg, field, gettid, helper_main, num_field, say, spawn_locker, wait_for_start, wait_until_blocked_in_futex,
    Barrier, DataPage, Helper, Mode, Rng, TempDir, ALL_MODES, BLOCKING_MODES, PROMPT,
};
use robust_mutex::{CancelToken, Error, MutexGuard, SharedMutex};

#[test]
#[ignore = "entry point of the helper processes the conformance tests spawn"]
fn helper_entry() {
    helper_main(|role, args| match role {
        "chaos" => Some(chaos(&args[0], args[1].parse().unwrap(), args[2].parse().unwrap())),
        "leader-exec-locker" => Some(leader_exec_locker(&args[0])),
        "stress" => Some(stress(&args[0], &args[1], args[2].parse().unwrap(), args[3].parse().unwrap())),
        _ => None,
    });
}

fn my_pid() -> i32 {
    std::process::id() as i32
}

/// What a waiter thread of this process saw.
struct Outcome {
    died: bool,
    dead_pid: i32,
}

/// Starts a thread of this process that acquires `mutex` with `mode`; returns its thread id (once
/// it is about to wait) and the channel on which its outcome arrives.
fn spawn_waiter(mutex: &SharedMutex, mode: Mode) -> (i32, mpsc::Receiver<Result<Outcome, Error>>) {
    let mutex = mutex.clone();
    let (tid_tx, tid_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        tid_tx.send(gettid()).unwrap();
        let outcome = mode
            .acquire(&mutex)
            .map(|guard| Outcome { died: guard.owner_died(), dead_pid: guard.dead_owner().map_or(0, |d| d.pid) });
        let _ = tx.send(outcome);
    });
    (tid_rx.recv().unwrap(), rx)
}

/// Scenario 5: A waiter already blocked in an acquire when the holder process is SIGKILLed gets the
/// lock with `owner_died`: waiters in this process (each blocking flavour) and in another one.
#[test]
fn c05_waiter_blocked_when_the_holder_process_is_killed() {
    let dir = TempDir::new("c05");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    for mode in BLOCKING_MODES {
        // A waiter thread in this process.
        let (mut holder, _) = spawn_locker(&path, Mode::Lock);
        holder.expect("locked");
        let (tid, outcome) = spawn_waiter(&mutex, mode);
        wait_until_blocked_in_futex(my_pid(), tid);
        holder.sigkill();
        let outcome = outcome.recv_timeout(PROMPT).expect("the blocked waiter must get the lock (hang guard)");
        let outcome = outcome.unwrap_or_else(|e| panic!("{mode:?}: {e:?}"));
        assert!(outcome.died, "{mode:?}");
        assert_eq!(outcome.dead_pid, holder.pid, "{mode:?}");
        holder.wait();

        // A waiter in a third process.
        let (mut holder, _) = spawn_locker(&path, Mode::Lock);
        holder.expect("locked");
        let (mut waiter, waiter_tid) = spawn_locker(&path, mode);
        wait_until_blocked_in_futex(waiter.pid, waiter_tid);
        holder.sigkill();
        let locked = waiter.expect_within("locked", PROMPT);
        assert_eq!(field(&locked, "died"), "true", "{mode:?}");
        assert_eq!(num_field(&locked, "dead_pid"), holder.pid as i64, "{mode:?}");
        waiter.send("release");
        waiter.expect("released");
        holder.wait();
    }
    assert_eq!(mutex.state().owner_deaths, 2 * BLOCKING_MODES.len() as u64);
    assert!(!mutex.lock().unwrap().owner_died());
}

/// Scenario 6: After the holder process was SIGKILLed (and reaped), every acquire flavour, here and in
/// another process, acquires the lock and reports `owner_died`, naming the dead holder.
#[test]
fn c06_every_acquire_flavour_acquires_a_dead_owners_lock() {
    let dir = TempDir::new("c06");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let mut deaths = 0;
    for mode in ALL_MODES {
        let (mut holder, holder_tid) = spawn_locker(&path, Mode::Lock);
        holder.expect("locked");
        holder.kill_and_reap();
        deaths += 1;
        let state = mutex.state();
        assert!(!state.locked && state.abandoned, "{mode:?}: {state:?}");
        assert_eq!(state.owner.map(|o| o.pid), Some(holder.pid), "the dead holder stays on record");

        let guard = mode.acquire(&mutex).unwrap();
        assert!(guard.owner_died(), "{mode:?}");
        let dead = guard.dead_owner().unwrap();
        assert_eq!((dead.pid, dead.tid), (holder.pid, holder_tid), "{mode:?}");
        let state = mutex.state();
        assert!(state.locked && !state.abandoned, "{mode:?}: {state:?}");
        assert_eq!(state.holder_tid, Some(gettid()));
        assert_eq!(state.owner_deaths, deaths);
        drop(guard);
        assert!(!mutex.try_lock().unwrap().unwrap().owner_died());

        // The same, acquired by another process.
        let (mut holder, _) = spawn_locker(&path, Mode::Lock);
        holder.expect("locked");
        holder.kill_and_reap();
        deaths += 1;
        let (mut heir, _) = spawn_locker(&path, mode);
        let locked = heir.expect_within("locked", PROMPT);
        assert_eq!(field(&locked, "died"), "true", "{mode:?}");
        assert_eq!(num_field(&locked, "dead_pid"), holder.pid as i64);
        heir.send("release");
        heir.expect("released");
    }
    // The guards that own their handle, too.
    for owned in [true, false] {
        let (mut holder, _) = spawn_locker(&path, Mode::Lock);
        holder.expect("locked");
        holder.kill_and_reap();
        let died = if owned {
            mutex.try_lock_owned().unwrap().unwrap().owner_died()
        } else {
            mutex.lock_until_owned(None, &CancelToken::new()).unwrap().owner_died()
        };
        assert!(died);
    }
    assert_eq!(mutex.state().owner_deaths, deaths + 2);
}

const CHAOS_MUTEXES: usize = 10;
const CHAOS_THREADS: usize = 6;

fn chaos_paths(dir: &Path) -> Vec<PathBuf> {
    (0..CHAOS_MUTEXES).map(|i| dir.join(format!("m{i}"))).collect()
}

/// Helper of 8: threads take 1 to 3 of the ten mutexes (in index order, so they cannot deadlock
/// each other) with random flavours (lock, try_lock, lock_timeout(0)), hold them briefly, release
/// them in random order, and repeat; after a random while the process reports its counts and
/// SIGKILLs itself, so most threads die holding something.
fn chaos(dir: &str, seed: u64, lifetime_ms: u64) -> i32 {
    let mutexes: Vec<SharedMutex> = chaos_paths(Path::new(dir)).iter().map(|p| SharedMutex::open(p).unwrap()).collect();
    let ops = AtomicU64::new(0);
    let anomalies = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..CHAOS_THREADS {
            let (mutexes, ops, anomalies) = (&mutexes, &ops, &anomalies);
            s.spawn(move || {
                let mut rng = Rng::new(seed * 1000 + t as u64 + 1);
                loop {
                    let mut picks: Vec<usize> =
                        (0..1 + rng.below(3)).map(|_| rng.below(CHAOS_MUTEXES as u64) as usize).collect();
                    picks.sort_unstable();
                    picks.dedup();
                    let mut held: Vec<MutexGuard<'_>> = Vec::new();
                    for i in picks {
                        let got = match rng.below(3) {
                            0 => mutexes[i].lock().map(Some),
                            1 => mutexes[i].try_lock(),
                            _ => match mutexes[i].lock_timeout(Duration::ZERO) {
                                Err(Error::Timeout) => Ok(None),
                                other => other.map(Some),
                            },
                        };
                        match got {
                            Ok(Some(guard)) => {
                                if guard.owner_died() {
                                    // Nobody died in this round before us: the parent released
                                    // everything before starting the round.
                                    anomalies.fetch_add(1, Ordering::Relaxed);
                                }
                                held.push(guard);
                            }
                            Ok(None) => {}
                            Err(_) => {
                                anomalies.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                    for _ in 0..rng.below(200) {
                        std::hint::spin_loop();
                    }
                    while !held.is_empty() {
                        let at = rng.below(held.len() as u64) as usize;
                        if held.swap_remove(at).release().is_err() {
                            anomalies.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(lifetime_ms));
        say(format!("dying ops={} anomalies={}", ops.load(Ordering::Relaxed), anomalies.load(Ordering::Relaxed)));
        nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL).unwrap();
        unreachable!("SIGKILL returned");
    })
}

/// Scenario 8 (simplified tst-robust8). A process with six threads doing random lock / try_lock /
/// lock_timeout(0) / release on ten mutex files SIGKILLs itself; afterwards no mutex is held by
/// anyone, every one whose owner died says so on its next acquisition (and no other does), and all
/// are acquirable. Four rounds; then every file can be destroyed.
#[test]
fn c08_sigkill_of_a_many_threaded_holder_on_ten_mutexes() {
    let dir = TempDir::new("c08");
    let paths = chaos_paths(dir.path());
    let mutexes: Vec<SharedMutex> = paths.iter().map(|p| SharedMutex::open(p).unwrap()).collect();
    let mut recovered = 0;
    for round in 0..4u64 {
        let mut helper = Helper::spawn("chaos", &[arg(dir.path()), round.to_string(), (150 + 50 * round).to_string()]);
        let report = helper.expect("dying");
        assert_eq!(num_field(&report, "anomalies"), 0, "round {round}: {report}");
        assert!(num_field(&report, "ops") > 0, "round {round}: {report}");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(helper.wait().signal(), Some(libc::SIGKILL));

        for (i, mutex) in mutexes.iter().enumerate() {
            let state = mutex.state();
            assert!(!state.locked, "round {round}, mutex {i}: still held after its holder died: {state:?}");
            let guard = mutex
                .lock_timeout(PROMPT)
                .unwrap_or_else(|e| panic!("round {round}, mutex {i}: not acquirable: {e:?}"));
            assert_eq!(guard.owner_died(), state.abandoned, "round {round}, mutex {i}: {state:?}");
            if guard.owner_died() {
                // `None` when the holder died in the few instructions between taking the lock and
                // recording itself (or between clearing its record and unlocking).
                if let Some(dead) = guard.dead_owner() {
                    assert_eq!(dead.pid, helper.pid);
                }
                recovered += 1;
            }
        }
        for mutex in &mutexes {
            let state = mutex.state();
            assert!(!state.locked && !state.abandoned, "{state:?}");
        }
    }
    assert!(recovered > 0, "in four rounds the SIGKILL never caught a holder; the test proved nothing");
    drop(mutexes);
    for path in &paths {
        conformance_support::destroy_unused(path);
        assert!(!path.exists());
    }
}

/// Helper of 9: the exec must come from the thread-group leader (see the test), and a helper's
/// code runs on a thread the test harness started, so the helper forks: the child's one thread
/// is its leader. The child opens and locks, reports `locked pid=`, and on `exec` replaces
/// itself with `sleep 60` while holding. The helper reaps it and exits.
fn leader_exec_locker(path: &str) -> i32 {
    use nix::unistd::{fork, ForkResult};
    // SAFETY: the child only opens and locks the mutex, writes to stdout, reads stdin and execs;
    // the other thread of this helper (the test harness's main thread) is idle in a channel
    // receive and holds none of the locks those use, and glibc keeps malloc usable after fork.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process; it keeps `sleep`
            // from outliving a helper that the test killed.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let mutex = SharedMutex::open(path).unwrap();
            let guard = mutex.lock().unwrap();
            assert_eq!(std::process::id() as i32, gettid(), "the forked child runs on its leader thread");
            say(format!("locked pid={} tid={} died={}", std::process::id(), gettid(), guard.owner_died()));
            match conformance_support::read_command().as_deref() {
                Some("exec") => {
                    let err = std::process::Command::new("sleep").arg("60").exec();
                    panic!("exec: {err}")
                }
                _ => std::process::exit(0),
            }
        }
        ForkResult::Parent { child } => {
            let _ = nix::sys::wait::waitpid(child, None);
            0
        }
    }
}

/// Scenario 9: The holder execs (here `sleep`) while holding: the lock is reported abandoned at exec
/// time, while the process lives on as the new program.
///
/// The exec here comes from the holder process's main (thread-group leader) thread. From any
/// other thread it does not work, see `c09_exec_from_a_non_leader_thread`.
#[test]
fn c09_exec_while_holding_reports_owner_death() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new("c09");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let mut helper = Helper::spawn("leader-exec-locker", &[arg(&path)]);
    let locked = helper.expect("locked");
    let holder = num_field(&locked, "pid") as i32;
    assert!(mutex.try_lock().unwrap().is_none());
    helper.send("exec");
    let guard = mutex.lock_timeout(PROMPT).expect("the lock must be free once the holder exec'd");
    assert!(guard.owner_died());
    assert_eq!(guard.dead_owner().unwrap().pid, holder);
    // The kernel releases the lock early in exec, before the new program's name is set: wait
    // for the name, which also shows that the holder lives on.
    let deadline = Instant::now() + PROMPT;
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{holder}/comm")).expect("the exec'd holder is alive");
        if comm.trim() == "sleep" {
            break;
        }
        assert!(Instant::now() < deadline, "the holder never became `sleep` (hang guard): {comm:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(guard);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(holder), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert_eq!(helper.wait().code(), Some(0));
    assert!(helper.wait().signal().is_none());
    assert!(!mutex.lock().unwrap().owner_died());
}

/// Scenario 9, exec from a thread other than the thread-group leader.
///
/// Observed on Linux 6.18 / glibc 2.36: when a non-leader thread execs, the kernel first makes
/// it the leader (it takes the leader's thread id, `de_thread`) and only then walks its robust
/// list (`exec_mm_release`), comparing each lock word with the *new* id. The word holds the old
/// id, so the lock is never marked: it stays held by a thread id that no longer exists, even
/// after the exec'd process is killed. The crate's waiters probe the recorded owner pid/tid with
/// `tgkill(pid, tid, 0)` between wait slices and mark the lock owner-died themselves, so owner
/// death is reported within about one slice (100 ms) instead of never.
#[test]
fn c09_exec_from_a_non_leader_thread_reports_owner_death() {
    let dir = TempDir::new("c09n");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let (mut holder, tid) = spawn_locker(&path, Mode::Lock);
    holder.expect("locked");
    assert_ne!(tid, holder.pid, "the helper's locking thread is not its leader");
    holder.send("exec");
    let result = mutex.lock_timeout(PROMPT).map(|guard| guard.owner_died());
    let state = mutex.state();
    holder.kill_and_reap();
    assert!(matches!(result, Ok(true)), "after the holder exec'd from thread {tid}: {result:?}, {state:?}");
}

/// Scenario 11: Chained deaths: A dies holding; B gets the lock with `owner_died` and dies before
/// deciding; C is told again, and names B.
#[test]
fn c11_chained_deaths_pass_owner_died_on() {
    let dir = TempDir::new("c11");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let (mut a, _) = spawn_locker(&path, Mode::Lock);
    assert_eq!(field(&a.expect("locked"), "died"), "false");
    a.kill_and_reap();

    let (mut b, _) = spawn_locker(&path, Mode::Lock);
    let locked = b.expect_within("locked", PROMPT);
    assert_eq!(field(&locked, "died"), "true");
    assert_eq!(num_field(&locked, "dead_pid"), a.pid as i64);
    b.kill_and_reap();
    assert!(mutex.state().abandoned);

    let (mut c, _) = spawn_locker(&path, Mode::Try);
    let locked = c.expect_within("locked", PROMPT);
    assert_eq!(field(&locked, "died"), "true");
    assert_eq!(num_field(&locked, "dead_pid"), b.pid as i64);
    c.kill_and_reap();

    // And a fourth time in this process, then healthy.
    let guard = mutex.lock_timeout(PROMPT).unwrap();
    assert!(guard.owner_died());
    assert_eq!(guard.dead_owner().unwrap().pid, c.pid);
    drop(guard);
    assert_eq!(mutex.state().owner_deaths, 3);
    assert!(!mutex.lock().unwrap().owner_died());
}

/// Scenario 13: Repair failed: the heir of a dead holder poisons the mutex while three processes are
/// blocked acquiring it (lock, lock_timeout, lock_until). All three fail with NotRecoverable
/// within the hang guard (no lost wake-up leaves one asleep), and so does every later acquire.
#[test]
fn c13_poison_fails_waiters_blocked_in_three_processes() {
    let dir = TempDir::new("c13");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let (mut dead, _) = spawn_locker(&path, Mode::Lock);
    dead.expect("locked");
    dead.kill_and_reap();
    let (mut heir, _) = spawn_locker(&path, Mode::Lock);
    assert_eq!(field(&heir.expect_within("locked", PROMPT), "died"), "true");

    let mut waiters: Vec<Helper> = Vec::new();
    for mode in BLOCKING_MODES {
        let (waiter, tid) = spawn_locker(&path, mode);
        wait_until_blocked_in_futex(waiter.pid, tid);
        waiters.push(waiter);
    }
    heir.send("poison");
    heir.expect("poisoned");
    let deadline = Instant::now() + PROMPT;
    for waiter in &mut waiters {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = waiter.expect_within("failed", left.max(Duration::from_millis(1)));
        assert_eq!(field(&line, "code"), "ENOTRECOVERABLE");
    }

    let state = mutex.state();
    assert!(state.poisoned && !state.locked, "{state:?}");
    for (what, result) in [
        ("lock", mutex.lock().map(drop)),
        ("try_lock", mutex.try_lock().map(|g| assert!(g.is_none()))),
        ("lock_timeout", mutex.lock_timeout(Duration::from_secs(1)).map(drop)),
        ("lock_until", mutex.lock_until(Instant::now() + Duration::from_secs(1), &CancelToken::new()).map(drop)),
    ] {
        let err = result.expect_err(what);
        assert!(matches!(err, Error::NotRecoverable), "{what}: {err:?}");
        assert_eq!(err.code(), "ENOTRECOVERABLE");
    }
    let (mut late, _) = spawn_locker(&path, Mode::Lock);
    assert_eq!(field(&late.expect_within("failed", PROMPT), "code"), "ENOTRECOVERABLE");
    assert!(!mutex.state().locked, "refused acquisitions must not leave the lock held");
}

/// Scenario 14: `reset` makes a poisoned mutex usable again and bumps its generation; a poisoned
/// anonymous mutex is reset through its handle.
#[test]
fn c14_reset_makes_a_poisoned_mutex_usable_and_bumps_the_generation() {
    let dir = TempDir::new("c14");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).unwrap();
    let (mut poisoner, _) = spawn_locker(&path, Mode::Lock);
    poisoner.expect("locked");
    poisoner.send("poison");
    poisoner.expect("poisoned");
    let before = mutex.state();
    assert!(before.poisoned);
    assert!(matches!(mutex.lock(), Err(Error::NotRecoverable)));

    SharedMutex::reset(&path).unwrap();
    let after = mutex.state();
    assert!(!after.poisoned && !after.locked, "{after:?}");
    assert_eq!(after.generation, before.generation + 1);
    let guard = mutex.lock().unwrap();
    assert!(!guard.owner_died());
    drop(guard);
    let (mut user, _) = spawn_locker(&path, Mode::Lock);
    assert_eq!(field(&user.expect_within("locked", PROMPT), "died"), "false");
    user.send("release");
    user.expect("released");

    let anonymous = SharedMutex::anonymous().unwrap();
    let mut guard = anonymous.lock().unwrap();
    guard.poison();
    drop(guard);
    assert!(matches!(anonymous.try_lock(), Err(Error::NotRecoverable)));
    let generation = anonymous.state().generation;
    anonymous.reset_poison().unwrap();
    assert_eq!(anonymous.state().generation, generation + 1);
    assert!(!anonymous.try_lock().unwrap().unwrap().owner_died());
}

const STRESS_PROCESSES: usize = 3;
const STRESS_THREADS: usize = 4;
const STRESS_ROUNDS: u64 = 1000;

/// Helper of 18: waits at the start barrier, then `threads` threads each acquire `rounds` times
/// (alternating lock, lock_timeout and try_lock-then-lock) and, under the lock, check that
/// nobody else is inside and add one to the counter with a separate load and store (lost
/// updates would show if exclusion failed).
fn stress(path: &str, data: &str, threads: usize, rounds: u64) -> i32 {
    let mutex = SharedMutex::open(path).unwrap();
    let page = DataPage::open(Path::new(data));
    let problems = AtomicU64::new(0);
    say("ready");
    wait_for_start();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (mutex, page, problems) = (&mutex, &page, &problems);
            s.spawn(move || {
                for round in 0..rounds {
                    let guard = match (round + t as u64) % 3 {
                        0 => mutex.lock(),
                        1 => mutex.lock_timeout(Duration::from_secs(60)),
                        _ => match mutex.try_lock() {
                            Ok(Some(guard)) => Ok(guard),
                            Ok(None) => mutex.lock(),
                            Err(e) => Err(e),
                        },
                    };
                    let Ok(guard) = guard else {
                        problems.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    if guard.owner_died() || page.word(1).swap(1, Ordering::Relaxed) != 0 {
                        problems.fetch_add(1, Ordering::Relaxed);
                    }
                    let count = page.word(0).load(Ordering::Relaxed);
                    if round % 64 == 0 {
                        std::thread::yield_now();
                    }
                    page.word(0).store(count + 1, Ordering::Relaxed);
                    page.word(1).store(0, Ordering::Relaxed);
                    drop(guard);
                }
            });
        }
    });
    say(format!("done problems={}", problems.load(Ordering::Relaxed)));
    0
}

/// Scenario 18: Lost-wake-up stress: 3 processes x 4 threads x 1000 short critical sections on one
/// mutex must all finish (hang guard 60 s), with exact mutual exclusion (the counter is exact,
/// nobody was ever inside together) and an exact acquisition count.
#[test]
fn c18_lost_wakeup_stress_across_processes_and_threads() {
    let dir = TempDir::new("c18");
    let path = dir.join("lock");
    let data = dir.join("data");
    let mutex = SharedMutex::open(&path).unwrap();
    let page = DataPage::create(&data);
    let barrier = Barrier::new();
    let args = [arg(&path), arg(&data), STRESS_THREADS.to_string(), STRESS_ROUNDS.to_string()];
    let mut helpers: Vec<Helper> =
        (0..STRESS_PROCESSES).map(|_| Helper::spawn_with_stdin("stress", &args, barrier.stdin())).collect();
    for helper in &mut helpers {
        helper.expect("ready");
    }
    let before = mutex.state().acquisitions;
    barrier.release(STRESS_PROCESSES);
    let deadline = Instant::now() + Duration::from_secs(60);
    for helper in &mut helpers {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let line = helper.expect_within("done", left);
        assert_eq!(num_field(&line, "problems"), 0, "{line}");
        helper.expect_success();
    }
    let total = (STRESS_PROCESSES * STRESS_THREADS) as u64 * STRESS_ROUNDS;
    assert_eq!(page.word(0).load(Ordering::Relaxed), total);
    let state = mutex.state();
    assert_eq!(state.acquisitions - before, total, "{state:?}");
    assert!(!state.locked && state.owner_deaths == 0, "{state:?}");
}

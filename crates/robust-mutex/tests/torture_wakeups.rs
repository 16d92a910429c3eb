//! Torture 5, lost wake-ups: many threads in several processes take turns on one mutex with
//! tiny critical sections, and the poison path wakes waiters blocked in three processes.
//!
//! A lost wake-up does not break mutual exclusion; it leaves a waiter asleep while the lock is
//! free, until its 100 ms wait slice ends. So besides the exact count, the hammer measures every
//! hand-over: the time from a release to the next acquisition by a thread that was already
//! waiting at that release. The poison rounds measure the time from the poisoning release to each
//! blocked waiter's failure. Both must stay within a slice, asserted with generous slack (2 s)
//! because a loaded 2-core CI machine can deschedule anyone.

mod torture_support;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use robust_mutex::{__private::SLICE, Error, SharedMutex};
use torture_support::{
    arg, child_command, child_main, monotonic_ns, read_command, report, reports, wait_or_kill, Conversation, DataPage,
    Gate, TempDir,
};

const PROCESSES: usize = 3;
const THREADS: usize = 4;
const ROUNDS: usize = 1000;
/// Generous bound for "within one slice" on a loaded machine.
const SLACK: Duration = Duration::from_secs(2);

// Data page words.
const COUNTER: usize = 0;
const HOLDER: usize = 1;
const LAST_RELEASE: usize = 2;
/// 32-bit word index of the start gate (bytes 128..136, clear of the words above).
const GATE: usize = 32;

#[test]
#[ignore = "entry point of the child processes the torture tests spawn"]
fn torture_child() {
    child_main(|role, args| match role {
        "hammer" => hammer(Path::new(&args[0]), Path::new(&args[1])),
        "poison-waiter" => poison_waiter(Path::new(&args[0])),
        "die-holding" => {
            let mutex = SharedMutex::open(&args[0]).expect("open");
            let _guard = mutex.lock().expect("lock");
            report("holding");
            while read_command().is_some() {}
            std::process::exit(0) // exits holding the lock
        }
        other => panic!("unknown role {other}"),
    });
}

/// THREADS threads x ROUNDS lock/unlock; reports `done <max hand-over ns> <hand-overs over 50 ms>
/// <hand-overs>`; exits 3 if two holders ever overlapped.
fn hammer(path: &Path, data_path: &Path) -> i32 {
    let mutex = SharedMutex::open(path).expect("open");
    let data = DataPage::open(data_path);
    let results: Vec<(u64, u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (mutex, data) = (mutex.clone(), &data);
                s.spawn(move || {
                    let me = u64::from(std::process::id()) << 8 | t as u64;
                    let (mut max_gap, mut slow, mut handovers) = (0u64, 0u64, 0u64);
                    // Every thread of every process starts at once.
                    Gate { data, index: GATE }.wait(1);
                    for round in 0..ROUNDS {
                        // Off the lock, now and then, long enough for the others to queue up:
                        // a released lock then has sleeping waiters to wake.
                        if round % 8 == t {
                            std::thread::sleep(Duration::from_micros(50));
                        } else {
                            std::thread::yield_now();
                        }
                        let wait_start = monotonic_ns();
                        let guard = match mutex.lock_timeout(Duration::from_secs(30)) {
                            Ok(g) => g,
                            Err(e) => {
                                eprintln!("hammer: lock: {e}");
                                std::process::exit(4);
                            }
                        };
                        let acquired = monotonic_ns();
                        if data.word(HOLDER).load(SeqCst) != 0 {
                            std::process::exit(3);
                        }
                        data.word(HOLDER).store(me, SeqCst);
                        let released = data.word(LAST_RELEASE).load(SeqCst);
                        if released > wait_start {
                            // We were waiting when the lock was last released: a hand-over.
                            let gap = acquired.saturating_sub(released);
                            handovers += 1;
                            max_gap = max_gap.max(gap);
                            slow += u64::from(gap > 50_000_000);
                        }
                        // A read-modify-write that loses updates if two holders overlap.
                        let n = data.word(COUNTER).load(SeqCst);
                        if round % 16 == 8 + t {
                            // Now and then hold on long enough for everyone else to fall asleep
                            // in the lock: the release must then wake one of them.
                            std::thread::sleep(Duration::from_micros(200));
                        } else {
                            let until = monotonic_ns() + 2_000;
                            while monotonic_ns() < until {
                                std::hint::spin_loop();
                            }
                        }
                        data.word(COUNTER).store(n + 1, SeqCst);
                        if data.word(HOLDER).load(SeqCst) != me {
                            std::process::exit(3);
                        }
                        data.word(HOLDER).store(0, SeqCst);
                        data.word(LAST_RELEASE).store(monotonic_ns(), SeqCst);
                        drop(guard);
                    }
                    (max_gap, slow, handovers)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("hammer thread")).collect()
    });
    let max_gap = results.iter().map(|r| r.0).max().unwrap_or(0);
    let slow: u64 = results.iter().map(|r| r.1).sum();
    let handovers: u64 = results.iter().map(|r| r.2).sum();
    report(format!("done {max_gap} {slow} {handovers}"));
    0
}

#[test]
fn torture_wakeups_threads_x_processes_x_1000_rounds() {
    let dir = TempDir::new("wakeups");
    let path = dir.join("lock");
    let data_path = dir.join("data");
    let mutex = SharedMutex::open(&path).expect("open");
    let data = DataPage::open(&data_path);
    let start = Instant::now();
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            child_command("hammer", &[arg(&path), arg(&data_path)])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn hammer")
        })
        .collect();
    Gate { data: &data, index: GATE }.open(1, (PROCESSES * THREADS) as u32);
    let (mut max_gap, mut slow, mut handovers) = (0u64, 0u64, 0u64);
    for child in &mut children {
        let status = wait_or_kill(child, Duration::from_secs(60), "hammer process");
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut child.stdout.take().expect("stdout"), &mut out).expect("read");
        assert!(status.success(), "hammer failed: {status:?} (3 = two holders overlapped)");
        let line = reports(&out).into_iter().next().expect("hammer report");
        let f: Vec<u64> = line.split(' ').skip(1).map(|x| x.parse().expect("number")).collect();
        max_gap = max_gap.max(f[0]);
        slow += f[1];
        handovers += f[2];
    }
    let expected = (PROCESSES * THREADS * ROUNDS) as u64;
    let state = mutex.state();
    println!(
        "torture_wakeups: {PROCESSES} processes x {THREADS} threads x {ROUNDS} rounds = {expected} critical sections \
         in {:.1} s, counter exact; {} contended acquisitions, {handovers} hand-overs to a waiting thread, longest \
         {:.1} ms, {slow} over 50 ms (slice {} ms)",
        start.elapsed().as_secs_f64(),
        state.contended,
        max_gap as f64 / 1e6,
        SLICE.as_millis()
    );
    assert_eq!(data.word(COUNTER).load(SeqCst), expected, "no update lost");
    assert_eq!(state.acquisitions, expected);
    assert!(handovers >= 100, "only {handovers} hand-overs: the threads hardly contended");
    assert!(!state.locked);
    assert!(max_gap < SLACK.as_nanos() as u64, "a waiter slept {:.0} ms past a release", max_gap as f64 / 1e6);
}

/// Reports its thread id, blocks in `lock()`, and reports how it ended: `err <code> <t>` or, if
/// it got the lock from a dead owner, poisons it and reports `poisoned <t>`; `t` is
/// CLOCK_MONOTONIC in ns.
fn poison_waiter(path: &Path) -> i32 {
    let mutex = SharedMutex::open(path).expect("open");
    // SAFETY: gettid has no preconditions.
    report(format!("waiting {}", unsafe { libc::gettid() }));
    let result = mutex.lock();
    let at = monotonic_ns();
    match result {
        Ok(mut guard) if guard.owner_died() => {
            guard.poison();
            drop(guard);
            report(format!("poisoned {at}"));
        }
        Ok(guard) => {
            drop(guard);
            report(format!("acquired {at}"));
        }
        Err(e) => report(format!("err {} {at}", e.code())),
    }
    0
}

/// Whether thread `tid` of `pid` sits in the futex system call (blocked waiting for the lock).
/// `None` when the kernel does not tell (no /proc/<pid>/task/<tid>/syscall).
fn in_futex_wait(pid: u32, tid: &str) -> Option<bool> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    // "running", or the number of the system call the thread sleeps in, then its arguments.
    let nr = text.split(' ').next().and_then(|nr| nr.parse::<i64>().ok());
    // The file-lock backend also pauses between attempts at a file lock another process holds.
    let waits: &[i64] = if cfg!(feature = "file-lock-backend") {
        &[libc::SYS_futex, libc::SYS_nanosleep, libc::SYS_clock_nanosleep]
    } else {
        &[libc::SYS_futex]
    };
    Some(nr.is_some_and(|nr| waits.contains(&nr)))
}

#[test]
fn torture_wakeups_poison_wakes_3_blocked_processes() {
    const ROUNDS: usize = 20;
    let dir = TempDir::new("poison");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("open");
    let mut latest = 0u64;
    let mut confirmed_blocked = 0;
    for round in 0..ROUNDS {
        // Even rounds: the test holds and poisons. Odd rounds: a holder is SIGKILLed and the
        // waiter that inherits the lock poisons it.
        let by_death = round % 2 == 1;
        let mut dying = by_death.then(|| {
            let mut c = Conversation::spawn(child_command("die-holding", &[arg(&path)]));
            assert_eq!(c.expect_report("die-holding"), "holding");
            c
        });
        let held = (!by_death).then(|| mutex.lock().expect("the test holds"));
        let mut waiters: Vec<Conversation> =
            (0..3).map(|_| Conversation::spawn(child_command("poison-waiter", &[arg(&path)]))).collect();
        for w in &mut waiters {
            let tid = w.expect_report("poison waiter").strip_prefix("waiting ").expect("waiting").to_string();
            let pid = w.child.id();
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match in_futex_wait(pid, &tid) {
                    Some(true) => {
                        confirmed_blocked += 1;
                        break;
                    }
                    None => {
                        std::thread::sleep(Duration::from_millis(300));
                        break;
                    }
                    Some(false) if Instant::now() > deadline => panic!("waiter {pid} never blocked"),
                    Some(false) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        }
        let released = monotonic_ns();
        if let Some(mut guard) = held {
            guard.poison();
            drop(guard);
        }
        if let Some(c) = dying.as_mut() {
            c.child.kill().expect("SIGKILL the holder");
        }
        let mut outcomes = Vec::new();
        for w in &mut waiters {
            let line = w.expect_report("poison waiter result");
            assert!(wait_or_kill(&mut w.child, SLACK * 5, "poison waiter").success());
            let (what, at) = line.rsplit_once(' ').expect("outcome");
            let late = at.parse::<u64>().expect("time").saturating_sub(released);
            latest = latest.max(late);
            assert!(
                late < SLACK.as_nanos() as u64,
                "round {round}: a waiter ended {:.0} ms after the release",
                late as f64 / 1e6
            );
            outcomes.push(what.to_string());
        }
        outcomes.sort();
        let expected: Vec<String> = if by_death {
            vec!["err ENOTRECOVERABLE".into(), "err ENOTRECOVERABLE".into(), "poisoned".into()]
        } else {
            vec!["err ENOTRECOVERABLE".into(); 3]
        };
        assert_eq!(outcomes, expected, "round {round} ({})", if by_death { "owner died" } else { "poisoned" });
        assert!(matches!(mutex.lock(), Err(Error::NotRecoverable)));
        SharedMutex::reset(&path).expect("reset");
        drop(mutex.lock().expect("usable again after reset"));
    }
    println!(
        "torture_wakeups: {ROUNDS} poison rounds x 3 waiters blocked in 3 processes ({confirmed_blocked} confirmed asleep \
         in futex): all failed with ENOTRECOVERABLE (or inherited and poisoned), the last {:.1} ms after the release",
        latest as f64 / 1e6
    );
}

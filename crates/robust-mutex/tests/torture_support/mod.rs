//! Shared plumbing of the torture tests (`tests/torture_*.rs`): child processes that re-execute
//! the test binary in a role, a shared data page, temporary directories, a small PRNG.
//!
//! Every torture binary declares an ignored test named [`CHILD_TEST`] that calls
//! [`child_main`]; a child is the same binary run with `--exact torture_child --ignored` and the
//! role in an environment variable. Children report to their parent with lines starting with
//! [`REPORT`] on stdout (the test harness prints its own lines there too) and exit with a code
//! that says which invariant broke.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Environment variable naming the role of a child process.
pub const ROLE_ENV: &str = "ROBUST_MUTEX_TORTURE_ROLE";
/// Environment variable holding the child's arguments, separated by newlines.
pub const ARGS_ENV: &str = "ROBUST_MUTEX_TORTURE_ARGS";
/// Name of the (ignored) test every torture binary uses as its child entry point.
pub const CHILD_TEST: &str = "torture_child";
/// Prefix of the lines a child reports to its parent.
pub const REPORT: &str = "@@ ";

/// The arguments that make a test binary run only its child entry point.
pub fn harness_args() -> [&'static str; 6] {
    [CHILD_TEST, "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"]
}

/// A command that re-executes this test binary in `role`.
pub fn child_command(role: &str, args: &[String]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(harness_args());
    cmd.env(ROLE_ENV, role).env(ARGS_ENV, args.join("\n"));
    cmd
}

/// A command that runs this test binary in `role` under `wrapper` (for example
/// `["unshare", "-m"]`): the wrapper's arguments, then the binary and its harness arguments.
pub fn wrapped_child_command(wrapper: &[&str], role: &str, args: &[String]) -> Command {
    let mut cmd = Command::new(wrapper[0]);
    cmd.args(&wrapper[1..]);
    cmd.arg(std::env::current_exe().expect("current_exe"));
    cmd.args(harness_args());
    cmd.env(ROLE_ENV, role).env(ARGS_ENV, args.join("\n"));
    cmd
}

/// In a child: runs `dispatch(role, args)` and exits with its code. In the parent's own test
/// run (no role set): returns at once.
pub fn child_main(dispatch: impl FnOnce(&str, &[String]) -> i32) {
    let Some(role) = std::env::var_os(ROLE_ENV) else { return };
    let role = role.to_string_lossy().into_owned();
    let args: Vec<String> =
        std::env::var(ARGS_ENV).unwrap_or_default().split('\n').filter(|s| !s.is_empty()).map(String::from).collect();
    let code = dispatch(&role, &args);
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// Writes one report line to the parent and flushes it.
pub fn report(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{REPORT}{}", line.as_ref());
    let _ = out.flush();
}

/// The report lines in a child's captured output, prefix removed.
pub fn reports(output: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(output).lines().filter_map(|l| l.strip_prefix(REPORT).map(String::from)).collect()
}

/// Reads the next report line from a child's piped stdout (`None` at end of file).
pub fn next_report(out: &mut BufReader<ChildStdout>) -> Option<String> {
    let mut line = String::new();
    loop {
        line.clear();
        match out.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {
                if let Some(rest) = line.trim_end().strip_prefix(REPORT) {
                    return Some(rest.to_string());
                }
            }
        }
    }
}

/// Kills (SIGKILL) and reaps every process it holds when dropped, so that a failing test
/// leaves no workers behind.
#[derive(Default)]
pub struct Reaper {
    pub children: Vec<Child>,
}

impl Reaper {
    pub fn push(&mut self, child: Child) -> usize {
        self.children.push(child);
        self.children.len() - 1
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `child` at most `limit`; `None` if it is still running then.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits for a child with a hang guard, killing it and panicking if it overruns.
pub fn wait_or_kill(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    match wait_timeout(child, limit) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?} (hang guard)");
        }
    }
}

#[path = "../common/temp_dir.rs"]
mod temp_dir;
pub use temp_dir::TempDir;

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the machine, so children can
/// report instants their parent compares.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[path = "../common/rng.rs"]
mod rng;
#[allow(unused_imports)] // not every test binary uses it
pub use rng::Rng;
#[path = "../common/data_page.rs"]
mod data_page;
#[allow(unused_imports)] // not every test binary uses it
pub use data_page::{DataPage, DATA_SIZE};

/// Whether a program can be found on PATH.
pub fn have_program(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false)
}

/// True when running as root (several scenarios need it: chown, unshare, mount).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A line-oriented channel to a child: its stdin to send commands, its stdout to read reports.
pub struct Conversation {
    pub child: Child,
    pub out: BufReader<ChildStdout>,
}

impl Conversation {
    pub fn spawn(mut cmd: Command) -> Conversation {
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn child");
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        Conversation { child, out }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush to child");
    }

    /// The next report line, or a panic naming `what` if the child ended first.
    pub fn expect_report(&mut self, what: &str) -> String {
        match next_report(&mut self.out) {
            Some(line) => line,
            None => {
                let status = self.child.wait();
                panic!("{what}: the child ended without reporting ({status:?})")
            }
        }
    }
}

impl Drop for Conversation {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads commands (lines) from stdin in a child; `None` at end of file.
pub fn read_command() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_string()),
    }
}

/// A path as a child argument (the torture paths are UTF-8).
pub fn arg(path: &Path) -> String {
    path.to_str().expect("torture paths are UTF-8").to_string()
}

/// A start barrier across processes: 32-bit word `index` of a [`DataPage`] (see
/// [`DataPage::word32`]) holds the number of the round that may start, word `index + 1` counts
/// the processes that arrived. Waiters sleep in `FUTEX_WAIT` on the shared word and are all woken
/// at once, so they leave together.
pub struct Gate<'a> {
    pub data: &'a DataPage,
    pub index: usize,
}

impl Gate<'_> {
    /// In a child: announce arrival, then sleep until round `round` is opened.
    pub fn wait(&self, round: u32) {
        use std::sync::atomic::Ordering::SeqCst;
        let word = self.data.word32(self.index);
        self.data.word32(self.index + 1).fetch_add(1, SeqCst);
        loop {
            let current = word.load(SeqCst);
            if current >= round {
                return;
            }
            // SAFETY: FUTEX_WAIT (shared, not private: other processes map the page) on an
            // aligned 32-bit word of a live mapping; if the word no longer holds `current` the
            // call returns EAGAIN at once, so a wake-up cannot be missed.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    word.as_ptr(),
                    libc::FUTEX_WAIT,
                    current,
                    std::ptr::null::<libc::timespec>(),
                )
            };
        }
    }

    /// In the parent: wait (bounded) until `expected` processes arrived in total, then open
    /// round `round` for all of them.
    pub fn open(&self, round: u32, expected: u32) {
        use std::sync::atomic::Ordering::SeqCst;
        let arrived = self.data.word32(self.index + 1);
        let deadline = Instant::now() + Duration::from_secs(20);
        while arrived.load(SeqCst) < expected {
            assert!(Instant::now() < deadline, "gate: only {} of {expected} arrived", arrived.load(SeqCst));
            std::thread::sleep(Duration::from_micros(200));
        }
        let word = self.data.word32(self.index);
        word.store(round, SeqCst);
        // SAFETY: FUTEX_WAKE on an aligned 32-bit word of a live shared mapping; wakes every
        // waiter.
        unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
    }
}

#[path = "../common/backend.rs"]
mod backend;
#[allow(unused_imports)] // not every test binary uses them
pub use backend::{raw_mutex_ptr, MUTEX_OFFSET};

//! Plumbing of the conformance tests (`tests/conformance_*.rs`): helper processes that re-execute
//! the test binary in a role, a shared data page, private temporary directories.
//!
//! Each conformance binary declares an ignored test named [`ENTRY`] that calls [`helper_main`].
//! A helper process is that binary run as `<exe> helper_entry --exact --ignored --nocapture`
//! with its role and arguments in environment variables, so no extra build target is needed.
//! Helpers talk to the test over pipes: they print lines starting with [`TAG`] on stdout (libtest
//! prints its own lines there too, which are skipped) and read commands, one per line, on stdin.
//! A helper whose stdin reaches end of file exits, so a test that fails leaves nothing behind;
//! [`Helper`] also SIGKILLs and reaps its process when dropped.
//!
//! Time bounds here are "must not hang" guards only: nothing asserts that anything is fast.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use robust_mutex::{CancelToken, Error, MutexGuard, SharedMutex};

/// Environment variable naming a helper's role.
pub const ROLE_ENV: &str = "ROBUST_MUTEX_CONFORMANCE_ROLE";
/// Environment variable holding a helper's arguments, one per line.
pub const ARGS_ENV: &str = "ROBUST_MUTEX_CONFORMANCE_ARGS";
/// Name of the ignored test that is every helper's entry point.
pub const ENTRY: &str = "helper_entry";
/// Prefix of the lines a helper writes to the test.
pub const TAG: &str = "#conformance# ";

/// Guard for process start-up and other waits that depend on the machine's load (a debug test
/// binary started 16 times at once on 2 busy cores).
pub const STARTUP: Duration = Duration::from_secs(60);
/// Guard for waits that must end "promptly" (a lock that must be acquirable, a waiter that must
/// fail): generous, only there to turn a hang into a failure.
pub const PROMPT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------------------------

#[path = "../common/temp_dir.rs"]
mod temp_dir;
pub use temp_dir::TempDir;

/// A path as a helper argument.
pub fn arg(path: &Path) -> String {
    path.to_str().expect("temporary paths are UTF-8").to_string()
}

// ---------------------------------------------------------------------------------------------
// Helper processes, test side
// ---------------------------------------------------------------------------------------------

/// A helper process running this test binary in a role.
pub struct Helper {
    child: Child,
    pub pid: i32,
    role: String,
    lines: Receiver<String>,
    stdin: Option<ChildStdin>,
    status: Option<ExitStatus>,
}

impl Helper {
    /// Starts this test binary as a helper in `role`, with a pipe on stdin for commands.
    pub fn spawn(role: &str, args: &[String]) -> Helper {
        Helper::spawn_with_stdin(role, args, Stdio::piped())
    }

    /// Like [`spawn`](Self::spawn), with the given stdin (for example one end of a start barrier
    /// pipe shared by several helpers); [`send`](Self::send) is then unavailable.
    pub fn spawn_with_stdin(role: &str, args: &[String], stdin: Stdio) -> Helper {
        Helper::spawn_command(&[], role, args, stdin, &[])
    }

    /// Like [`spawn`](Self::spawn), with extra environment variables (test hooks).
    pub fn spawn_with_env(role: &str, args: &[String], env: &[(&str, &str)]) -> Helper {
        Helper::spawn_command(&[], role, args, Stdio::piped(), env)
    }

    /// Like [`spawn`](Self::spawn), under `wrapper` (for example `["unshare", "--pid",
    /// "--fork"]`): the wrapper's arguments come first, then this binary and its arguments.
    pub fn spawn_wrapped(wrapper: &[&str], role: &str, args: &[String]) -> Helper {
        Helper::spawn_command(wrapper, role, args, Stdio::piped(), &[])
    }

    fn spawn_command(wrapper: &[&str], role: &str, args: &[String], stdin: Stdio, env: &[(&str, &str)]) -> Helper {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(exe);
                cmd
            }
            None => Command::new(exe),
        };
        cmd.args([ENTRY, "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
            .env(ROLE_ENV, role)
            .env(ARGS_ENV, args.join("\n"))
            .env("RUST_BACKTRACE", "0")
            .envs(env.iter().copied())
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn a helper process");
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix(TAG) {
                    if tx.send(rest.to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        let pid = child.id() as i32;
        Helper { child, pid, role: role.to_string(), lines, stdin, status: None }
    }

    /// The next line the helper reports, which must start with `prefix`; fails the test after
    /// `within`, at end of output, or on any other line.
    pub fn expect_within(&mut self, prefix: &str, within: Duration) -> String {
        match self.lines.recv_timeout(within) {
            Ok(line) if line.starts_with(prefix) => line,
            Ok(line) => panic!(
                "helper {} (pid {}): expected a line starting with {prefix:?}, got {line:?}",
                self.role, self.pid
            ),
            Err(RecvTimeoutError::Timeout) => {
                panic!("helper {} (pid {}): no {prefix:?} line within {within:?} (hang guard)", self.role, self.pid)
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten();
                panic!("helper {} (pid {}): ended (status {status:?}) before reporting {prefix:?}", self.role, self.pid)
            }
        }
    }

    /// [`expect_within`](Self::expect_within) with the start-up guard.
    pub fn expect(&mut self, prefix: &str) -> String {
        self.expect_within(prefix, STARTUP)
    }

    /// Sends one command line.
    pub fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("this helper has a command pipe");
        stdin
            .write_all(command.as_bytes())
            .and_then(|_| stdin.write_all(b"\n"))
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("helper {} (pid {}): cannot send {command:?}: {e}", self.role, self.pid));
    }

    /// Sends SIGKILL (a real signal, from this process).
    pub fn sigkill(&mut self) {
        kill(Pid::from_raw(self.pid), Signal::SIGKILL).expect("kill(SIGKILL)");
    }

    /// Reaps the helper, failing the test if it does not end within the start-up guard.
    pub fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.try_wait().expect("waitpid") {
                self.status = Some(status);
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("helper {} (pid {}) did not end within {STARTUP:?} (hang guard)", self.role, self.pid);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILLs the helper and reaps it: when this returns, the kernel has processed the robust
    /// lists of all its threads.
    pub fn kill_and_reap(&mut self) {
        use std::os::unix::process::ExitStatusExt;
        self.sigkill();
        let status = self.wait();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "helper {} was not killed by SIGKILL", self.role);
    }

    /// Closes the command pipe (the helper sees end of file).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for a clean exit (status 0).
    pub fn expect_success(&mut self) {
        let status = self.wait();
        assert!(status.success(), "helper {} (pid {}) failed: {status:?}", self.role, self.pid);
    }

    /// Whether the process is still running (not yet exited, or exited but not reaped — a
    /// zombie counts as ended).
    pub fn is_running(&mut self) -> bool {
        self.status.is_none() && self.child.try_wait().expect("waitpid").is_none()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of `key=value` in a helper's line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// [`field`] parsed as a number.
pub fn num_field(line: &str, key: &str) -> i64 {
    field(line, key).parse().unwrap_or_else(|_| panic!("{key}= is not a number in {line:?}"))
}

/// The syscall number a thread is blocked in, from `/proc/<pid>/task/<tid>/syscall` (`None`
/// while it runs, or when the file cannot be read).
fn blocked_syscall(pid: i32, tid: i32) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The system calls a waiter sleeps in: `futex()` for the pthread lock (and the file-lock
/// backend's thread gate); the file-lock backend also pauses between attempts at a file lock
/// held by another process (`nanosleep`, which glibc makes a `clock_nanosleep`).
#[cfg(not(feature = "file-lock-backend"))]
const WAIT_SYSCALLS: &[i64] = &[libc::SYS_futex];
#[cfg(feature = "file-lock-backend")]
const WAIT_SYSCALLS: &[i64] = &[libc::SYS_futex, libc::SYS_nanosleep, libc::SYS_clock_nanosleep];

/// Waits until thread `tid` of process `pid` is seen sleeping in the backend's wait (see
/// [`WAIT_SYSCALLS`]), so a test can act on a waiter that is really blocked. Where `/proc` does
/// not tell, it falls back to a pause.
pub fn wait_until_blocked_in_futex(pid: i32, tid: i32) {
    if std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).is_err() {
        std::thread::sleep(Duration::from_millis(300));
        return;
    }
    let deadline = Instant::now() + STARTUP;
    while !blocked_syscall(pid, tid).is_some_and(|call| WAIT_SYSCALLS.contains(&call)) {
        assert!(Instant::now() < deadline, "thread {tid} of {pid} never blocked in futex() (hang guard)");
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------------------------------------
// Helper processes, helper side
// ---------------------------------------------------------------------------------------------

/// The helpers' entry point. In a normal test run (no role set) it returns at once. In a helper
/// it runs `roles` (the binary's own roles, `None` when the role is not one of them) or a common
/// role, and exits with its code.
pub fn helper_main(roles: impl FnOnce(&str, &[String]) -> Option<i32>) {
    let Some(role) = std::env::var_os(ROLE_ENV) else { return };
    let role = role.to_string_lossy().into_owned();
    let args: Vec<String> =
        std::env::var(ARGS_ENV).unwrap_or_default().lines().filter(|l| !l.is_empty()).map(String::from).collect();
    let code = match roles(&role, &args) {
        Some(code) => code,
        None => common_role(&role, &args),
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// Writes one line to the test.
pub fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{TAG}{}", line.as_ref());
    let _ = out.flush();
}

/// The next command line from the test; `None` at end of file (the test is gone or done).
pub fn read_command() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_string()),
    }
}

/// Blocks until one byte arrives on stdin: the start barrier of [`Barrier`]. Reads exactly one
/// byte from fd 0 (not through `std::io::stdin()`, whose buffer would take the bytes meant for
/// the other helpers).
pub fn wait_for_start() {
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: fd 0 is open for the whole life of the process; nothing else borrows it.
        let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
        match nix::unistd::read(stdin, &mut byte) {
            Ok(1) => return,
            Ok(_) => panic!("start barrier: end of file"),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => panic!("start barrier: {e}"),
        }
    }
}

/// The kernel thread id of the calling thread.
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// How an acquisition is made: every flavour of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `lock()`.
    Lock,
    /// `try_lock()` retried until it returns a guard.
    Try,
    /// `lock_timeout(60 s)`.
    Timeout,
    /// `lock_until(now + 60 s, &cancel)`.
    Until,
}

pub const ALL_MODES: [Mode; 4] = [Mode::Lock, Mode::Try, Mode::Timeout, Mode::Until];
pub const BLOCKING_MODES: [Mode; 3] = [Mode::Lock, Mode::Timeout, Mode::Until];

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Lock => "lock",
            Mode::Try => "try",
            Mode::Timeout => "timeout",
            Mode::Until => "until",
        }
    }

    pub fn parse(name: &str) -> Mode {
        match name {
            "lock" => Mode::Lock,
            "try" => Mode::Try,
            "timeout" => Mode::Timeout,
            "until" => Mode::Until,
            other => panic!("unknown mode {other}"),
        }
    }

    /// Acquires `mutex` this way. The time limits are hang guards.
    pub fn acquire(self, mutex: &SharedMutex) -> Result<MutexGuard<'_>, Error> {
        match self {
            Mode::Lock => mutex.lock(),
            Mode::Try => {
                let deadline = Instant::now() + STARTUP;
                loop {
                    if let Some(guard) = mutex.try_lock()? {
                        return Ok(guard);
                    }
                    assert!(Instant::now() < deadline, "try_lock never succeeded (hang guard)");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Mode::Timeout => mutex.lock_timeout(STARTUP),
            Mode::Until => mutex.lock_until(Instant::now() + STARTUP, &CancelToken::new()),
        }
    }
}

/// The report of an acquisition: `died=<bool> dead_pid=<pid or 0> dead_tid=<tid or 0>
/// token=<fencing token>`.
pub fn describe(guard: &MutexGuard<'_>) -> String {
    let dead = guard.dead_owner();
    format!(
        "died={} dead_pid={} dead_tid={} token={}",
        guard.owner_died(),
        dead.map_or(0, |d| d.pid),
        dead.map_or(0, |d| d.tid),
        guard.fencing_token()
    )
}

/// `key=value` of a helper's line parsed as an unsigned 64-bit number (a fencing token).
pub fn u64_field(line: &str, key: &str) -> u64 {
    field(line, key).parse().unwrap_or_else(|_| panic!("{key}= is not a u64 in {line:?}"))
}

fn common_role(role: &str, args: &[String]) -> i32 {
    match role {
        "locker" => locker(Path::new(&args[0]), Mode::parse(&args[1])),
        "thread-exit" => thread_exit(Path::new(&args[0])),
        other => panic!("unknown helper role {other}"),
    }
}

/// Opens `path`, reports `opened pid= tid=`, acquires with `mode`, reports `locked <describe>`
/// (or `failed code=<code>` and waits for end of file), then obeys commands while holding:
///
/// - `release`: unlock, report `released`, then wait for end of file;
/// - `poison`: poison and unlock, report `poisoned`, then wait for end of file;
/// - `exit`: `std::process::exit(0)` while holding;
/// - `exec`: replace the process with `sleep 60` while holding;
/// - end of file: exit while holding.
fn locker(path: &Path, mode: Mode) -> i32 {
    let mutex = SharedMutex::open(path).expect("open");
    say(format!("opened pid={} tid={}", std::process::id(), gettid()));
    let mut guard = match mode.acquire(&mutex) {
        Ok(guard) => guard,
        Err(e) => {
            say(format!("failed code={}", e.code()));
            while read_command().is_some() {}
            return 0;
        }
    };
    say(format!("locked {}", describe(&guard)));
    match read_command().as_deref() {
        Some("release") => match guard.release() {
            Ok(()) => say("released"),
            Err(e) => say(format!("release-failed code={}", e.code())),
        },
        Some("poison") => {
            guard.poison();
            match guard.release() {
                Ok(()) => say("poisoned"),
                Err(e) => say(format!("release-failed code={}", e.code())),
            }
        }
        Some("exit") | None => std::process::exit(0),
        Some("exec") => {
            let err = Command::new("sleep").arg("60").exec();
            panic!("exec sleep: {err}");
        }
        Some(other) => panic!("unknown command {other}"),
    }
    while read_command().is_some() {}
    0
}

/// Opens `path`; a thread locks it and ends while holding (the process lives on); reports
/// `thread-ended tid=<the dead thread>`, then waits for end of file.
fn thread_exit(path: &Path) -> i32 {
    let mutex = SharedMutex::open(path).expect("open");
    let tid = std::thread::scope(|s| {
        s.spawn(|| {
            let guard = mutex.lock().expect("lock");
            std::mem::forget(guard);
            gettid()
        })
        .join()
        .expect("locking thread")
    });
    say(format!("thread-ended tid={tid}"));
    while read_command().is_some() {}
    0
}

// ---------------------------------------------------------------------------------------------
// Shared data and start barriers
// ---------------------------------------------------------------------------------------------

#[path = "../common/data_page.rs"]
mod data_page;
#[allow(unused_imports)] // not every test binary uses it
pub use data_page::DataPage;

/// A start barrier for many helpers: each gets the read end of one pipe as stdin and blocks in
/// [`wait_for_start`]; [`release`](Self::release) writes one byte per helper at once, so they all
/// wake together.
pub struct Barrier {
    read: std::os::fd::OwnedFd,
    write: std::fs::File,
}

impl Barrier {
    pub fn new() -> Barrier {
        // Close-on-exec, so that helpers spawned meanwhile by other tests do not inherit it.
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2");
        Barrier { read, write: std::fs::File::from(write) }
    }

    /// A stdin for one helper.
    pub fn stdin(&self) -> Stdio {
        Stdio::from(self.read.try_clone().expect("dup the barrier pipe"))
    }

    /// Lets `helpers` waiting helpers go.
    pub fn release(mut self, helpers: usize) {
        self.write.write_all(&vec![b'g'; helpers]).expect("release the barrier");
    }
}

#[path = "../common/rng.rs"]
mod rng;
#[allow(unused_imports)] // not every test binary uses it
pub use rng::Rng;

/// Runs `body` on its own thread and fails the test if it does not finish within `limit`: for
/// in-process checks whose failure mode is a hang (a self-deadlock, a wait nobody ends). A body
/// that hangs is left behind on its thread; the test fails anyway.
pub fn with_hang_guard<T: Send + 'static>(what: &str, limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => {
            let _ = worker.join();
            value
        }
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the body returned without sending"),
        },
        Err(RecvTimeoutError::Timeout) => panic!("{what}: still running after {limit:?} (hang guard)"),
    }
}

/// `(st_dev, st_ino)` of an open mutex.
pub fn dev_ino(mutex: &SharedMutex) -> (u64, u64) {
    let st = nix::sys::stat::fstat(mutex.as_fd()).expect("fstat");
    (st.st_dev as u64, st.st_ino as u64)
}

/// Starts a `locker` helper on `path` and waits for its `opened` line; returns the helper and
/// the id of the thread that is about to acquire (its next line is `locked ...` or `failed ...`).
pub fn spawn_locker(path: &Path, mode: Mode) -> (Helper, i32) {
    let mut helper = Helper::spawn("locker", &[arg(path), mode.name().into()]);
    let opened = helper.expect("opened");
    let tid = num_field(&opened, "tid") as i32;
    (helper, tid)
}

/// `SharedMutex::destroy` of a file nobody uses any more, retried while it answers `Busy`: a
/// helper being spawned by another test of this binary holds copies of this process's
/// descriptors (and so their `flock`) between its fork and its exec. Fails after the hang guard.
pub fn destroy_unused(path: &Path) {
    let deadline = Instant::now() + PROMPT;
    loop {
        match SharedMutex::destroy(path) {
            Ok(()) => return,
            Err(Error::Busy { .. }) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("destroy {}: {e:?}", path.display()),
        }
    }
}

#[path = "../common/backend.rs"]
mod backend;
#[allow(unused_imports)] // not every test binary uses them
pub use backend::{raw_mutex_ptr, MUTEX_OFFSET};

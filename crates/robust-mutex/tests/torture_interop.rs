//! Torture 6, interoperability: the lock is the real POSIX object. A C program
//! (`tests/fixtures/interop.c`, compiled here with `cc`) maps the file and calls
//! `pthread_mutex_lock` on the mutex at `MUTEX_OFFSET`; it contends with Rust processes using
//! this crate and, when the Node package is built (`index.js`), with a Node process, on one
//! counter updated by a lossy read-modify-write. The total must be exact. Then each kind of
//! process dies holding the lock and another kind is told its owner died.

mod torture_support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use robust_mutex::SharedMutex;
use torture_support::MUTEX_OFFSET;
use torture_support::{
    arg, child_command, child_main, have_program, read_command, report, reports, wait_or_kill, Conversation, DataPage,
    TempDir,
};

const C_PROCESSES: usize = 2;
const RUST_PROCESSES: usize = 2;
const C_ITERATIONS: u64 = 5000;
const RUST_ITERATIONS: u64 = 5000;
const NODE_ITERATIONS: u64 = 2000;
const HANG_GUARD: Duration = Duration::from_secs(60);

// Data page words, shared with interop.c and the Node script.
const COUNTER: usize = 0;
const HOLDER: usize = 1;

/// The Node participant: `node -e NODE_SCRIPT <index.js> <mutex> <data> <mode> [iterations]`,
/// with the same protocol as interop.c (the counter and holder slot through pread/pwrite, which
/// share the page cache with the others' mappings).
const NODE_SCRIPT: &str = r#"
const [index, lockPath, dataPath, mode, n] = process.argv.slice(1);
const { SharedMutex } = require(index);
const fs = require('fs');
const m = SharedMutex.open(lockPath);
if (mode === 'count') {
  const fd = fs.openSync(dataPath, 'r+');
  const buf = Buffer.alloc(8);
  const me = BigInt(process.pid);
  const read = (off) => { fs.readSync(fd, buf, 0, 8, off); return buf.readBigUInt64LE(0); };
  const write = (off, v) => { buf.writeBigUInt64LE(v, 0); fs.writeSync(fd, buf, 0, 8, off); };
  let deaths = 0;
  console.log('@@ ready');
  for (let i = 0; i < Number(n); i++) {
    const g = m.lockSync();
    if (g.ownerDied) deaths++;
    if (read(8) !== 0n) process.exit(3);
    write(8, me);
    write(0, read(0) + 1n);
    if (read(8) !== me) process.exit(3);
    write(8, 0n);
    g.release();
  }
  console.log(`@@ done ${deaths}`);
} else if (mode === 'die') {
  m.lockSync();
  console.log('@@ holding');
  process.stdin.once('data', () => process.exit(0));
} else if (mode === 'probe') {
  const g = m.lockSync();
  const died = g.ownerDied;
  g.release();
  console.log(`@@ probe ${died ? 1 : 0}`);
}
"#;

#[test]
#[ignore = "entry point of the child processes the torture tests spawn"]
fn torture_child() {
    child_main(|role, args| match role {
        "count" => count(Path::new(&args[0]), Path::new(&args[1]), args[2].parse().expect("iterations")),
        "die" => {
            let mutex = SharedMutex::open(&args[0]).expect("open");
            let _guard = mutex.lock().expect("lock");
            report("holding");
            let _ = read_command();
            std::process::exit(0) // exits holding the lock
        }
        "probe" => {
            let mutex = SharedMutex::open(&args[0]).expect("open");
            let died = mutex.lock().expect("lock").owner_died();
            report(format!("probe {}", u8::from(died)));
            0
        }
        other => panic!("unknown role {other}"),
    });
}

fn count(path: &Path, data_path: &Path, iterations: u64) -> i32 {
    let mutex = SharedMutex::open(path).expect("open");
    let data = DataPage::open(data_path);
    let me = u64::from(std::process::id());
    let mut deaths = 0;
    for _ in 0..iterations {
        let guard = mutex.lock_timeout(Duration::from_secs(30)).expect("lock");
        deaths += u32::from(guard.owner_died());
        if data.word(HOLDER).load(SeqCst) != 0 {
            std::process::exit(3);
        }
        data.word(HOLDER).store(me, SeqCst);
        let n = data.word(COUNTER).load(SeqCst);
        for _ in 0..100 {
            std::hint::spin_loop();
        }
        data.word(COUNTER).store(n + 1, SeqCst);
        if data.word(HOLDER).load(SeqCst) != me {
            std::process::exit(3);
        }
        data.word(HOLDER).store(0, SeqCst);
        drop(guard);
    }
    report(format!("done {deaths}"));
    0
}

/// Compiles the C fixture, or says why it cannot.
fn build_c(dir: &TempDir) -> Result<PathBuf, String> {
    // The C side must use the same C library as this binary: glibc and musl lay the mutex out
    // differently (the lock word is the first int in glibc, the second in musl).
    let default_cc = if cfg!(target_env = "musl") { "musl-gcc" } else { "cc" };
    let cc = std::env::var("CC").unwrap_or_else(|_| default_cc.into());
    if !have_program(&cc) {
        return Err(format!("no C compiler ({cc}) on PATH"));
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interop.c");
    let binary = dir.join("interop");
    let out = Command::new(&cc)
        .args(["-O2", "-pthread", "-Wall", &format!("-DMUTEX_OFFSET={MUTEX_OFFSET}"), "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("run the C compiler");
    assert!(out.status.success(), "compiling interop.c failed:\n{}", String::from_utf8_lossy(&out.stderr));
    Ok(binary)
}

/// The built Node package, if it is there and speaks this crate's file format.
fn node_package(lock: &Path) -> Result<PathBuf, String> {
    let index = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../index.js");
    if !have_program("node") {
        return Err("node is not on PATH".into());
    }
    if !index.exists() {
        return Err(format!("{} does not exist (run npm run build)", index.display()));
    }
    let out = Command::new("node")
        .args(["-e", NODE_SCRIPT])
        .arg(&index)
        .arg(lock)
        .args(["/dev/null", "probe"])
        .output()
        .expect("run node");
    if !out.status.success() {
        return Err(format!(
            "the built Node package cannot use this crate's file (stale build? run npm run build): {}",
            String::from_utf8_lossy(&out.stderr).lines().find(|l| l.contains("Error")).unwrap_or("")
        ));
    }
    Ok(index)
}

fn node(index: &Path, lock: &Path, data: &Path, mode: &str, n: u64) -> Command {
    let mut cmd = Command::new("node");
    cmd.args(["-e", NODE_SCRIPT]).arg(index).arg(lock).arg(data).args([mode, &n.to_string()]);
    cmd
}

fn finish(mut child: std::process::Child, what: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let status = wait_or_kill(&mut child, HANG_GUARD, what);
    stdout.read_to_end(&mut out).expect("read");
    assert!(status.success(), "{what} failed: {status:?} (3 = two holders at once)");
    reports(&out)
}

#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: C programs share the pthread mutex inside the file; the file-lock backend's file has none"
)]
fn torture_interop_c_rust_node_share_one_pthread_mutex() {
    let dir = TempDir::new("interop");
    let c = match build_c(&dir) {
        Ok(c) => c,
        Err(reason) => {
            println!("torture_interop: SKIPPED: {reason}");
            return;
        }
    };
    let lock = dir.join("lock");
    let data_path = dir.join("data");
    let mutex = SharedMutex::open(&lock).expect("create the mutex file");
    let data = DataPage::open(&data_path);
    let node_index = node_package(&lock);
    if let Err(reason) = &node_index {
        println!("torture_interop: Node SKIPPED: {reason}");
    }

    // Phase 1: everyone hammers the counter at once (Node, the slowest to start, first).
    let piped = |mut cmd: Command| cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn");
    let mut running = Vec::new();
    let mut node_counter = None;
    if let Ok(index) = &node_index {
        let mut conv = Conversation::spawn(node(index, &lock, &data_path, "count", NODE_ITERATIONS));
        assert_eq!(conv.expect_report("Node counter"), "ready");
        node_counter = Some(conv);
    }
    for _ in 0..C_PROCESSES {
        let mut cmd = Command::new(&c);
        cmd.arg("count").arg(&lock).arg(&data_path).arg(C_ITERATIONS.to_string());
        running.push(("C", piped(cmd)));
    }
    for _ in 0..RUST_PROCESSES {
        running
            .push(("Rust", piped(child_command("count", &[arg(&lock), arg(&data_path), RUST_ITERATIONS.to_string()]))));
    }
    let mut expected = C_PROCESSES as u64 * C_ITERATIONS + RUST_PROCESSES as u64 * RUST_ITERATIONS;
    if node_index.is_ok() {
        expected += NODE_ITERATIONS;
    }
    for (what, child) in running {
        let lines = finish(child, what);
        assert!(lines.first().is_some_and(|l| l.starts_with("done ")), "{what}: {lines:?}");
    }
    if let Some(mut conv) = node_counter {
        assert!(conv.expect_report("Node counter").starts_with("done "));
        assert!(wait_or_kill(&mut conv.child, HANG_GUARD, "Node counter").success(), "Node: 3 = two holders at once");
    }
    let contended = mutex.state().contended;
    assert_eq!(data.word(COUNTER).load(SeqCst), expected, "no update lost across languages");
    assert_eq!(data.word(HOLDER).load(SeqCst), 0);

    // Phase 2: each kind dies holding the lock; another kind is told.
    let die_c = || {
        let mut cmd = Command::new(&c);
        cmd.arg("die").arg(&lock);
        cmd
    };
    let probe_c = || {
        let mut cmd = Command::new(&c);
        cmd.arg("probe").arg(&lock);
        cmd
    };
    let mut deaths = Vec::new();
    let mut die_then = |who: &str, dier: Command, prober: &str, probe: Option<Command>| {
        let mut dying = Conversation::spawn(dier);
        assert_eq!(dying.expect_report(who), "holding", "{who}");
        dying.send("die");
        assert!(wait_or_kill(&mut dying.child, HANG_GUARD, who).success());
        let died = match probe {
            Some(cmd) => {
                let lines = finish(piped(cmd), prober);
                lines.first().cloned().unwrap_or_default() == "probe 1"
            }
            None => {
                let guard = mutex.lock_timeout(Duration::from_secs(10)).expect("lock");
                let died = guard.owner_died();
                assert!(guard.dead_owner().is_none() || who != "C", "C does not record itself");
                died
            }
        };
        assert!(died, "{prober} was told that the {who} holder died");
        deaths.push(format!("{who} -> {prober}"));
    };
    die_then("C", die_c(), "Rust", None);
    die_then("Rust", child_command("die", &[arg(&lock)]), "C", Some(probe_c()));
    if let Ok(index) = &node_index {
        die_then("Node", node(index, &lock, Path::new("/dev/null"), "die", 0), "C", Some(probe_c()));
        die_then("C", die_c(), "Node", Some(node(index, &lock, Path::new("/dev/null"), "probe", 0)));
    }
    let guard = mutex.lock().expect("lock");
    assert!(!guard.owner_died(), "healthy again after the C-side repair");
    drop(guard);
    assert!(!mutex.state().poisoned);
    println!(
        "torture_interop: {} C + {} Rust{} processes shared the pthread mutex at offset {MUTEX_OFFSET}: counter \
         {expected} exact, 0 lost ({contended} acquisitions by Rust and Node had to wait); owner death seen \
         across languages: {}",
        C_PROCESSES,
        RUST_PROCESSES,
        if node_index.is_ok() { " + 1 Node" } else { "" },
        deaths.join(", ")
    );
}

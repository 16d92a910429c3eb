//! Torture 3, hostile files: a corpus of things that are not (or not safely) mutex files, each
//! opened and destroyed by a separate process (so a hang is caught by a guard, not waited for).
//! Each must fail with its typed error, and neither the file's bytes, mode and owner, nor a
//! victim's bytes, nor the directory's entries may change. Then property tests: arbitrary pages
//! written to files are accepted exactly when the fields that identify a mutex file are those of
//! a genuine one, and nothing panics.

#[path = "torture_support/fuse.rs"]
mod fuse;
mod torture_support;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use robust_mutex::{OpenOptions, SharedMutex};
use torture_support::{
    arg, child_command, child_main, have_program, is_root, read_command, report, reports, wait_or_kill,
    wrapped_child_command, Conversation, Rng, TempDir,
};

const PAGE: usize = 4096;
/// No open or destroy may take longer than this (it would be a hang).
const HANG_GUARD: Duration = Duration::from_secs(10);

#[test]
#[ignore = "entry point of the child processes the torture tests spawn"]
fn torture_child() {
    child_main(|role, args| match role {
        "try" => try_op(&args[0], Path::new(&args[1])),
        "fuse" => fuse_child(Path::new(&args[0]), Path::new(&args[1])),
        "foreign-boot-holder" => foreign_boot_holder(Path::new(&args[0]), &args[1]),
        other => panic!("unknown role {other}"),
    });
}

/// Opens or destroys `path` and reports `ok <generation>` or `err <code> <message>`.
fn try_op(op: &str, path: &Path) -> i32 {
    let result = match op {
        "open" => SharedMutex::open(path).map(|m| m.state().generation),
        "destroy" => SharedMutex::destroy(path).map(|()| 0),
        other => panic!("unknown op {other}"),
    };
    match result {
        Ok(generation) => report(format!("ok {generation}")),
        Err(e) => report(format!("err {} {e}", e.code())),
    }
    0
}

/// Runs `op` on `path` in a child process and returns its report (`ok ...` or `err CODE ...`).
fn attempt(op: &str, path: &Path) -> String {
    let mut child = child_command("try", &[op.to_string(), arg(path)])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let status = wait_or_kill(&mut child, HANG_GUARD, &format!("{op} {}", path.display()));
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut child.stdout.take().expect("stdout"), &mut out).expect("read");
    assert!(status.success(), "{op} {}: child failed: {status:?}", path.display());
    reports(&out).into_iter().next().unwrap_or_else(|| panic!("{op} {}: no report", path.display()))
}

fn code_of(outcome: &str) -> &str {
    let mut words = outcome.split(' ');
    match words.next() {
        Some("err") => words.next().unwrap_or("?"),
        _ => "OK",
    }
}

/// Everything about a path an open must not change: type, mode, owner, size, bytes, link target.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    kind: &'static str,
    mode: u32,
    uid: u32,
    size: u64,
    bytes: Option<Vec<u8>>,
    link: Option<PathBuf>,
}

fn snapshot(path: &Path) -> Option<Snapshot> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "char"
    } else {
        "file"
    };
    Some(Snapshot {
        kind,
        mode: meta.mode(),
        uid: meta.uid(),
        size: meta.size(),
        bytes: (kind == "file").then(|| std::fs::read(path).expect("read")),
        link: (kind == "symlink").then(|| std::fs::read_link(path).expect("readlink")),
    })
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The bytes of a freshly created mutex file of this process.
fn genuine_page() -> Vec<u8> {
    let dir = TempDir::new("genuine");
    let path = dir.join("genuine.lock");
    drop(SharedMutex::open(&path).expect("create a genuine file"));
    let bytes = std::fs::read(&path).expect("read genuine");
    assert_eq!(bytes.len(), PAGE);
    bytes
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    std::fs::write(path, bytes).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn with(page: &[u8], offset: usize, patch: &[u8]) -> Vec<u8> {
    let mut p = page.to_vec();
    p[offset..offset + patch.len()].copy_from_slice(patch);
    p
}

fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: a NUL-terminated path; mknod has no other precondition.
    if unsafe { libc::mknod(c.as_ptr(), mode, dev) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One hostile input: what to open, what else must stay untouched, what each operation must
/// answer.
struct Case {
    name: &'static str,
    path: PathBuf,
    watch: Vec<PathBuf>,
    open: &'static str,
    destroy: &'static str,
}

#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: crafted bytes at the offsets of the pthread backend's header (ABI tag, PID namespace, lock word); the file-lock backend's layout is tested in file_lock_semantics (hostile files)"
)]
fn torture_hostile_corpus() {
    let root = TempDir::new("hostile");
    let genuine = genuine_page();
    let mut rng = Rng::new(Rng::seed());
    let mut cases = Vec::new();
    let mut skipped = Vec::new();
    let mut case =
        |name: &'static str, open: &'static str, destroy: &'static str, build: &dyn Fn(&Path) -> Vec<PathBuf>| {
            let dir = root.join(name);
            std::fs::create_dir(&dir).expect("case dir");
            let path = dir.join("lock");
            let watch = build(&path);
            cases.push(Case { name, path, watch, open, destroy });
        };

    let mut random = vec![0u8; PAGE];
    rng.fill(&mut random);
    let mut short = vec![0u8; 100];
    rng.fill(&mut short);
    let g = &genuine;

    case("empty", "EBADMUTEX", "EBADMUTEX", &|p| {
        write_file(p, &[], 0o600);
        vec![]
    });
    case("shorter-than-a-page", "EBADMUTEX", "EBADMUTEX", &|p| {
        write_file(p, &short, 0o600);
        vec![]
    });
    case("genuine-header-one-byte-short", "EBADMUTEX", "EBADMUTEX", &|p| {
        write_file(p, &g[..PAGE - 1], 0o600);
        vec![]
    });
    case("random-bytes", "EBADMUTEX", "EBADMUTEX", &|p| {
        write_file(p, &random, 0o600);
        vec![]
    });
    case("wrong-magic", "EBADMUTEX", "EBADMUTEX", &|p| {
        write_file(p, &with(g, 0, b"RBMUTEY\0"), 0o600);
        vec![]
    });
    case("right-magic-wrong-version", "EBADMUTEX", "EBADMUTEX", &|p| {
        write_file(p, &with(g, 8, &2u32.to_ne_bytes()), 0o600);
        vec![]
    });
    case("wrong-header-size", "EBADMUTEX", "EBADMUTEX", &|p| {
        write_file(p, &with(g, 12, &128u32.to_ne_bytes()), 0o600);
        vec![]
    });
    case("unknown-state", "EBADMUTEX", "EBADMUTEX", &|p| {
        write_file(p, &with(g, 16, &99u32.to_ne_bytes()), 0o600);
        vec![]
    });
    case("unknown-flags", "EBADMUTEX", "EBADMUTEX", &|p| {
        write_file(p, &with(g, 20, &1u32.to_ne_bytes()), 0o600);
        vec![]
    });
    case("abi-other-libc", "EABIMISMATCH", "EABIMISMATCH", &|p| {
        write_file(p, &with(g, 28, &[g[28] ^ 3]), 0o600);
        vec![]
    });
    case("abi-32-bit", "EABIMISMATCH", "EABIMISMATCH", &|p| {
        write_file(p, &with(g, 26, &[32]), 0o600);
        vec![]
    });
    case("abi-other-mutex-size", "EABIMISMATCH", "EABIMISMATCH", &|p| {
        write_file(p, &with(g, 30, &24u16.to_ne_bytes()), 0o600);
        vec![]
    });
    case("abi-other-machine", "EABIMISMATCH", "EABIMISMATCH", &|p| {
        let other = u16::from_ne_bytes([g[24], g[25]]) ^ 0x00f0;
        write_file(p, &with(g, 24, &other.to_ne_bytes()), 0o600);
        vec![]
    });
    case("abi-reserved-bytes-set", "EABIMISMATCH", "EABIMISMATCH", &|p| {
        write_file(p, &with(g, 36, &[1]), 0o600);
        vec![]
    });
    case("other-pid-namespace-crafted", "EPIDNS", "", &|p| {
        let ns = u64::from_ne_bytes(g[64..72].try_into().unwrap()) ^ 0x5a5a;
        write_file(p, &with(g, 64, &ns.to_ne_bytes()), 0o600);
        vec![]
    });
    case("directory", "EISDIR", "EISDIR", &|p| {
        std::fs::create_dir(p).expect("mkdir");
        vec![]
    });
    case("fifo", "EBADMUTEX", "EBADMUTEX", &|p| {
        mknod(p, libc::S_IFIFO | 0o600, 0).expect("mkfifo");
        vec![]
    });
    case("unix-socket", "ENXIO", "ENXIO", &|p| {
        let listener = std::os::unix::net::UnixListener::bind(p).expect("bind");
        std::mem::forget(listener); // keep it listening for the whole test
        vec![]
    });
    case("symlink-to-a-genuine-mutex", "EINSECURE", "EINSECURE", &|p| {
        let victim = p.with_file_name("victim.lock");
        write_file(&victim, g, 0o600);
        std::os::unix::fs::symlink(&victim, p).expect("symlink");
        vec![victim]
    });
    case("symlink-planted-at-victim", "EINSECURE", "EINSECURE", &|p| {
        let victim = p.with_file_name("victim.txt");
        write_file(&victim, b"precious data that is not a mutex\n", 0o600);
        std::os::unix::fs::symlink(&victim, p).expect("symlink");
        vec![victim]
    });
    case("dangling-symlink-planted", "EINSECURE", "EINSECURE", &|p| {
        let target = p.with_file_name("would-be-created");
        std::os::unix::fs::symlink(&target, p).expect("symlink");
        vec![target]
    });
    case("world-writable", "EINSECURE", "EINSECURE", &|p| {
        write_file(p, g, 0o666);
        vec![]
    });
    if is_root() {
        case("owned-by-another-user", "EINSECURE", "EINSECURE", &|p| {
            write_file(p, g, 0o600);
            std::os::unix::fs::chown(p, Some(65534), Some(65534)).expect("chown");
            vec![]
        });
        case("character-device", "EBADMUTEX", "EBADMUTEX", &|p| {
            // The same device as /dev/null (1, 3).
            mknod(p, libc::S_IFCHR | 0o600, libc::makedev(1, 3)).expect("mknod");
            vec![]
        });
    } else {
        skipped.push("owned-by-another-user and character-device need root (chown, mknod)".to_string());
    }

    let mut tried = 0;
    let mut answers = Vec::new();
    for case in &cases {
        let dir = case.path.parent().expect("dir").to_path_buf();
        let before = (snapshot(&case.path), case.watch.iter().map(|w| snapshot(w)).collect::<Vec<_>>(), listing(&dir));
        let opened = attempt("open", &case.path);
        assert_eq!(code_of(&opened), case.open, "{}: open answered {opened}", case.name);
        if !case.destroy.is_empty() {
            let destroyed = attempt("destroy", &case.path);
            assert_eq!(code_of(&destroyed), case.destroy, "{}: destroy answered {destroyed}", case.name);
        }
        let after = (snapshot(&case.path), case.watch.iter().map(|w| snapshot(w)).collect::<Vec<_>>(), listing(&dir));
        assert_eq!(before, after, "{}: the file, the victims or the directory changed", case.name);
        answers.push(format!("{} {}", case.name, case.open));
        tried += 1;
    }

    // A tombstone left at its path by a destroy that died before unlinking is our own retired
    // file: open finishes the retirement and creates a fresh mutex (a new inode) at the path.
    let tombstone = root.join("tombstone-left-by-a-crashed-destroy");
    write_file(&tombstone, &with(g, 16, &3u32.to_ne_bytes()), 0o600);
    assert_eq!(attempt("open", &tombstone), "ok 1", "a fresh mutex at the path");
    let fresh = std::fs::read(&tombstone).expect("read");
    assert_eq!(fresh[16..20], 1u32.to_ne_bytes(), "the path now holds a READY mutex, not the tombstone");
    tried += 1;

    // A mutex file with another boot id while a process of that boot uses it (and holds the
    // lock): the opener must neither re-initialise it under the live user nor block forever.
    match foreign_boot_with_live_user(&root) {
        Ok(()) => tried += 1,
        Err(reason) => skipped.push(format!("foreign boot id with a live user: {reason}")),
    }
    match refused_filesystem(&root, &genuine) {
        Ok(n) => tried += n,
        Err(reason) => skipped.push(format!("refused filesystem (FUSE): {reason}")),
    }
    println!("torture_hostile: {tried} hostile inputs tried, each refused with its typed error, 0 bytes changed");
    println!("torture_hostile: {}", answers.join(", "));
    for reason in &skipped {
        println!("torture_hostile: SKIPPED {reason}");
    }
}

/// In a private mount namespace with a fake boot id: create the mutex file, lock it, report,
/// then wait for a command: `release` (unlock, exit) or `die` (exit holding the lock).
fn foreign_boot_holder(path: &Path, fake_boot_id_file: &str) -> i32 {
    let src = CString::new(fake_boot_id_file).expect("no NUL");
    let target = CString::new("/proc/sys/kernel/random/boot_id").expect("no NUL");
    // SAFETY: NUL-terminated strings that outlive the call; a bind mount takes no data.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
    if rc != 0 {
        report(format!("skip bind-mounting a fake boot id failed: {}", std::io::Error::last_os_error()));
        return 0;
    }
    let mutex = SharedMutex::open(path).expect("create under the fake boot id");
    let guard = mutex.lock().expect("lock");
    report(format!("ready {}", std::process::id()));
    match read_command().as_deref() {
        Some("release") => {
            drop(guard);
            0
        }
        _ => std::process::exit(0), // dies holding the lock
    }
}

fn foreign_boot_with_live_user(root: &TempDir) -> Result<(), String> {
    if !is_root() || !have_program("unshare") {
        return Err("needs root and unshare(1) to give a process another boot id".into());
    }
    let dir = root.join("foreign-boot-live-user");
    std::fs::create_dir(&dir).expect("dir");
    let path = dir.join("lock");
    let fake = dir.join("fake-boot-id");
    std::fs::write(&fake, "01234567-89ab-cdef-0123-456789abcdef\n").expect("fake boot id");
    let mut holder = Conversation::spawn(wrapped_child_command(
        &["unshare", "-m", "--propagation", "private"],
        "foreign-boot-holder",
        &[arg(&path), arg(&fake)],
    ));
    let ready = holder.expect_report("foreign-boot holder");
    if let Some(reason) = ready.strip_prefix("skip ") {
        return Err(reason.to_string());
    }
    let before = (snapshot(&path), listing(&dir));
    let started = Instant::now();
    let opened = attempt("open", &path);
    let open_time = started.elapsed();
    let destroyed = attempt("destroy", &path);
    let after = (snapshot(&path), listing(&dir));
    assert_eq!(code_of(&opened), "EBUSY", "foreign boot id with a live user: open answered {opened}");
    assert_eq!(code_of(&destroyed), "EBUSY", "foreign boot id with a live user: destroy answered {destroyed}");
    assert_eq!(before, after, "foreign boot id with a live user: the file changed");
    println!("torture_hostile: foreign boot id with a live user refused in {:.2} s", open_time.as_secs_f64());

    // Once that user is gone (it died holding the lock), the file is re-initialised once, and the
    // first acquirer is told the previous owner died: its data may be half-written.
    holder.send("die");
    wait_or_kill(&mut holder.child, HANG_GUARD, "foreign-boot holder");
    let mutex = SharedMutex::open(&path).expect("reopen after the live user left");
    assert_eq!(mutex.state().generation, 2, "re-initialised exactly once");
    let guard = mutex.lock().expect("lock");
    assert!(guard.owner_died(), "the holder of the other boot died holding the lock: owner_died must say so");
    drop(guard);
    assert!(!mutex.lock().expect("lock").owner_died(), "reported once");
    Ok(())
}

/// In a private mount namespace: mount a FUSE filesystem holding a genuine mutex file, try to
/// open, create and destroy on it, and report what happened.
fn fuse_child(mountpoint: &Path, genuine: &Path) -> i32 {
    let page = std::fs::read(genuine).expect("genuine page");
    let mounted = match fuse::mount(mountpoint, vec![("mutex".into(), 0o600, page)]) {
        Ok(m) => m,
        Err(reason) => {
            report(format!("skip {reason}"));
            return 0;
        }
    };
    let before = mounted.state.lock().expect("state").snapshot();
    let outcome = |r: Result<SharedMutex, robust_mutex::Error>| match r {
        Ok(_) => "OK".to_string(),
        Err(e) => e.code().to_string(),
    };
    report(format!("open {}", outcome(SharedMutex::open(mountpoint.join("mutex")))));
    report(format!("create {}", outcome(SharedMutex::open(mountpoint.join("fresh")))));
    report(format!(
        "destroy {}",
        SharedMutex::destroy(mountpoint.join("mutex")).map_or_else(|e| e.code().to_string(), |()| "OK".into())
    ));
    let st = mounted.state.lock().expect("state");
    let after = st.snapshot();
    report(format!(
        "writes {} creates {} unlinks {} links {} unchanged {} names {:?}",
        st.writes,
        st.creates,
        st.unlinks,
        st.links,
        u8::from(before == after),
        after.keys().collect::<Vec<_>>()
    ));
    0
}

fn refused_filesystem(root: &TempDir, genuine: &[u8]) -> Result<usize, String> {
    if !is_root() || !have_program("unshare") {
        return Err("needs root and unshare(1) to mount a FUSE filesystem privately".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse does not exist here".into());
    }
    let dir = root.join("fuse");
    std::fs::create_dir(&dir).expect("dir");
    let mountpoint = dir.join("mnt");
    std::fs::create_dir(&mountpoint).expect("mountpoint");
    let page = dir.join("genuine");
    std::fs::write(&page, genuine).expect("genuine");
    let mut child =
        wrapped_child_command(&["unshare", "-m", "--propagation", "private"], "fuse", &[arg(&mountpoint), arg(&page)])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
    let status = wait_or_kill(&mut child, HANG_GUARD, "FUSE child");
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut child.stdout.take().expect("stdout"), &mut out).expect("read");
    assert!(status.success(), "FUSE child failed: {status:?}");
    let lines: BTreeMap<String, String> = reports(&out)
        .into_iter()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((&l, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    if let Some(reason) = lines.get("skip") {
        return Err(reason.clone());
    }
    println!("torture_hostile: FUSE: {lines:?}");
    assert_eq!(lines["open"], "EUNSUPPORTED", "an existing mutex file on FUSE");
    assert_eq!(lines["create"], "EUNSUPPORTED", "creating a mutex file on FUSE");
    assert_eq!(lines["destroy"], "EUNSUPPORTED", "destroying a mutex file on FUSE");
    let summary = &lines["writes"];
    assert!(summary.starts_with("0 "), "no WRITE request reached the FUSE server: {summary}");
    assert!(summary.contains("links 0"), "nothing was linked into the FUSE directory: {summary}");
    assert!(summary.contains("names [\"mutex\"]"), "no file left behind on FUSE: {summary}");
    Ok(3)
}

/// The verdict the crate must reach on `page` (written as a whole file of `len` bytes), from the
/// genuine page `g`: `Ok(())` to accept, or the set of acceptable error codes.
fn oracle(page: &[u8], len: usize, g: &[u8]) -> Result<(), Vec<&'static str>> {
    if len < PAGE {
        return Err(vec!["EBADMUTEX"]);
    }
    let mut codes = Vec::new();
    let state = u32::from_ne_bytes(page[16..20].try_into().unwrap());
    if page[0..8] != g[0..8]
        || page[8..12] != g[8..12]
        || page[12..16] != g[12..16]
        || !(1..=4).contains(&state)
        || page[20..24] != [0; 4]
    {
        codes.push("EBADMUTEX");
    }
    if page[24..40] != g[24..40] {
        codes.push("EABIMISMATCH");
    }
    if !codes.is_empty() {
        return Err(codes);
    }
    if state == 3 {
        // A tombstone at its path: open finishes the crashed destroy (removes it); with
        // create(false) there is then nothing to open.
        return Err(vec!["ENOENT"]);
    }
    if page[56..72] != g[56..72] {
        return Err(vec!["EPIDNS"]);
    }
    Ok(())
}

fn page_strategy() -> impl Strategy<Value = (Vec<(usize, u8)>, Option<u32>, usize, bool, u64)> {
    let offset = prop_oneof![8 => 0usize..72, 1 => 0usize..PAGE];
    let patch = prop::collection::vec((offset, any::<u8>()), 0..5);
    let state = prop::option::weighted(0.3, 0u32..6);
    let len = prop_oneof![12 => Just(PAGE), 1 => 0usize..PAGE, 1 => PAGE + 1..2 * PAGE];
    let random = prop::bool::weighted(0.05);
    (patch, state, len, random, any::<u64>())
}

#[test]
#[cfg_attr(
    feature = "file-lock-backend",
    ignore = "pthread backend only: crafted bytes at the offsets of the pthread backend's header (ABI tag, PID namespace, lock word); the file-lock backend's layout is tested in file_lock_semantics (hostile files)"
)]
fn torture_hostile_header_properties() {
    let genuine = genuine_page();
    let dir = TempDir::new("hostile-prop");
    // The property closure is `Fn`: count through cells.
    let counter = std::cell::Cell::new(0u64);
    let accepted = std::cell::Cell::new(0u64);
    let refused = std::cell::RefCell::new(BTreeMap::<&'static str, u64>::new());
    let config = ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |((patch, state, len, random, seed) in page_strategy())| {
        let mut page = genuine.clone();
        if random {
            Rng::new(seed).fill(&mut page);
        }
        for (offset, byte) in patch {
            page[offset] = byte;
        }
        if let Some(state) = state {
            page[16..20].copy_from_slice(&state.to_ne_bytes());
        }
        let mut bytes = page.clone();
        bytes.resize(len, 0);
        counter.set(counter.get() + 1);
        let path = dir.join(&format!("case-{}", counter.get()));
        write_file(&path, &bytes, 0o600);
        let expected = oracle(&page, len, &genuine);
        let result = OpenOptions::new().create(false).open(&path);
        match (&expected, &result) {
            (Ok(()), Ok(_)) => {
                accepted.set(accepted.get() + 1);
                if page[40..56] == genuine[40..56] {
                    prop_assert_eq!(std::fs::read(&path).unwrap(), bytes.clone(), "accepted without re-initialisation: unchanged");
                }
            }
            (Err(codes), Err(e)) => {
                prop_assert!(codes.contains(&e.code()), "refused with {} ({e}); expected one of {codes:?}", e.code());
                *refused.borrow_mut().entry(e.code()).or_default() += 1;
                if e.code() == "ENOENT" {
                    prop_assert!(!path.exists(), "a retired file was removed, not rewritten");
                } else {
                    prop_assert_eq!(std::fs::read(&path).unwrap(), bytes.clone(), "a refused file is unchanged");
                }
            }
            _ => prop_assert!(false, "expected {expected:?}, got {:?}", result.as_ref().map(|_| ())),
        }
        drop(result);
        let _ = std::fs::remove_file(&path);
    });
    println!(
        "torture_hostile: header properties: {} arbitrary pages, {} accepted, refused {:?}",
        counter.get(),
        accepted.get(),
        refused.borrow()
    );
}

//! Torture 2, open race: 32 processes x 200 rounds (the issue asks for 50) open-or-create the
//! same new path at once.
//!
//! The 32 children are spawned once and each loops over the rounds. A round starts when the test
//! has sent the round number to every child and all 32 sleep on a futex gate in a shared page;
//! one FUTEX_WAKE releases them together, so the opens collide on a path that does not exist
//! yet. Each child opens, locks once, and reports the
//! (dev, ino) it mapped, the generation, and the acquisition count it saw under the lock.
//!
//! Exactly one initialiser per round shows as: every child maps the inode now at the path, the
//! generation is 1, the 32 acquisition counts are exactly 1..=32 (one mutex, counted from one
//! initialisation, never reset by a second one), the directory holds the one file and no
//! temporary leftovers, and nobody got an error (no half-built file was ever visible).

mod torture_support;

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use robust_mutex::SharedMutex;
use torture_support::MUTEX_OFFSET;
use torture_support::{arg, child_command, child_main, read_command, report, Conversation, DataPage, Gate, TempDir};

const PROCESSES: usize = 32;
const ROUNDS: usize = 200;

#[test]
#[ignore = "entry point of the child processes the torture tests spawn"]
fn torture_child() {
    child_main(|role, args| match role {
        "open-race" => open_race_child(&args[0], &args[1]),
        other => panic!("unknown role {other}"),
    });
}

fn open_race_child(dir: &str, gate_path: &str) -> i32 {
    let gate_page = DataPage::open(gate_path.as_ref());
    let gate = Gate { data: &gate_page, index: 0 };
    // Each command is a round number; the path is new every round.
    while let Some(round) = read_command() {
        gate.wait(round.parse::<u32>().expect("round") + 1);
        let path = std::path::Path::new(dir).join(format!("race-{round}.lock"));
        // Whether this child found the path missing, so went (or raced) into the create path.
        let absent = !path.exists();
        let result = SharedMutex::open(&path).and_then(|mutex| {
            let st = nix::sys::stat::fstat(mutex.as_fd()).expect("fstat");
            let opened_generation = mutex.state().generation;
            let guard = mutex.lock()?;
            let seen = mutex.state();
            drop(guard);
            Ok(format!(
                "{round} ok {} {} {opened_generation} {} {} {}",
                st.st_dev,
                st.st_ino,
                seen.generation,
                seen.acquisitions,
                u8::from(absent)
            ))
        });
        match result {
            Ok(line) => report(line),
            Err(e) => report(format!("{round} err {} {e}", e.code())),
        }
    }
    0
}

#[test]
fn torture_open_race_32_processes_50_rounds() {
    let dir = TempDir::new("open-race");
    let gate_dir = TempDir::new("open-race-gate");
    let gate_path = gate_dir.join("gate");
    let gate_page = DataPage::open(&gate_path);
    let gate = Gate { data: &gate_page, index: 0 };
    let start = Instant::now();
    let mut children: Vec<Conversation> = (0..PROCESSES)
        .map(|_| Conversation::spawn(child_command("open-race", &[arg(dir.path()), arg(&gate_path)])))
        .collect();

    let mut opens = 0usize;
    let mut creators = 0usize;
    let mut max_creators = 0usize;
    for round in 0..ROUNDS {
        let path = dir.join(&format!("race-{round}.lock"));
        assert!(!path.exists());
        for child in &mut children {
            child.send(&round.to_string());
        }
        // Everyone asleep on the gate, then everyone released at once.
        gate.open(round as u32 + 1, (PROCESSES * (round + 1)) as u32);
        let mut inodes = BTreeSet::new();
        let mut acquisitions = BTreeSet::new();
        let mut found_missing = 0;
        for (i, child) in children.iter_mut().enumerate() {
            let line = child.expect_report("open-race child");
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields[0], round.to_string(), "child {i} is in step");
            assert_eq!(fields[1], "ok", "round {round}, child {i}: {line}");
            inodes.insert((fields[2].to_string(), fields[3].to_string()));
            assert_eq!(fields[4], "1", "round {round}, child {i}: generation at open");
            assert_eq!(fields[5], "1", "round {round}, child {i}: generation under the lock");
            acquisitions.insert(fields[6].parse::<u64>().expect("acquisitions"));
            found_missing += usize::from(fields[7] == "1");
            opens += 1;
        }
        creators += found_missing;
        max_creators = max_creators.max(found_missing);
        let meta = std::fs::metadata(&path).expect("the round's file exists");
        let expected_inode = (meta.dev().to_string(), meta.ino().to_string());
        assert_eq!(inodes.len(), 1, "round {round}: every child mapped one inode: {inodes:?}");
        assert!(inodes.contains(&expected_inode), "round {round}: the inode at the path");
        assert_eq!(
            acquisitions,
            (1..=PROCESSES as u64).collect::<BTreeSet<_>>(),
            "round {round}: the 32 locks were counted 1..=32 by one mutex"
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![format!("race-{round}.lock")], "round {round}: one file, no leftovers");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes.len(), 4096);
        if cfg!(feature = "file-lock-backend") {
            assert_eq!(&bytes[..8], b"RMFLOCK\0");
        } else {
            assert_eq!(&bytes[..8], b"RBMUTEX\0");
            assert_eq!(u32::from_ne_bytes(bytes[12..16].try_into().unwrap()) as usize, MUTEX_OFFSET);
        }
        let mutex = SharedMutex::open(&path).expect("reopen");
        let state = mutex.state();
        assert_eq!((state.generation, state.acquisitions, state.owner_deaths), (1, PROCESSES as u64, 0));
        assert!(!state.locked && !state.poisoned);
        drop(mutex);
        SharedMutex::destroy(&path).expect("destroy the round's file");
    }
    for child in &mut children {
        child.child.stdin.take();
    }
    for (i, child) in children.iter_mut().enumerate() {
        let status =
            torture_support::wait_or_kill(&mut child.child, std::time::Duration::from_secs(20), "open-race child");
        assert!(status.success(), "child {i}: {status:?}");
    }
    println!(
        "torture_open_race: {ROUNDS} rounds x {PROCESSES} processes = {opens} racing opens of a new path \
         ({creators} found it missing and raced to create it, up to {max_creators} in one round), \
         0 errors, one inode and one initialisation per round, {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

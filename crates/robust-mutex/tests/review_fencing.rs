//! Review of the fencing tokens (issue 9, local half): cases the implementation gets wrong.
//! These tests failed on branch `fence` (review D1); `fencing::next` now treats 0 as never seeded.
//!
//! A build without fencing tokens (every release before them: the format version did not change,
//! so old and new builds share files) creates mutex files whose token field is zero: it never
//! writes those bytes. A new build then hands out tokens 1, 2, 3... from such a file, which is
//! below every token it issued at the same path before (those start at the wall clock in ns).
//! That happens in a rolling upgrade as soon as an old build re-creates a file (destroy, then
//! open), and it reissues tokens already handed out when the earlier file was itself old.

mod conformance_support;

use std::os::unix::fs::FileExt;
use std::path::Path;

use conformance_support::*;
use robust_mutex::SharedMutex;

#[test]
#[ignore = "entry point of the helper processes the review tests spawn"]
fn helper_entry() {
    helper_main(|_, _| None);
}

/// Where the token counter lives in the file of the backend under test.
const TOKEN_OFFSET: u64 = if cfg!(feature = "file-lock-backend") { 80 } else { 144 };

/// Turns a file the new build just created (and nobody used yet) into the file a build without
/// fencing tokens creates: identical, except that such a build never writes the token field.
fn as_created_by_a_build_without_tokens(path: &Path) {
    let file = std::fs::OpenOptions::new().write(true).open(path).expect("open the file");
    file.write_all_at(&0u64.to_ne_bytes(), TOKEN_OFFSET).expect("write");
}

/// One acquisition by another process: its token.
fn token_of_a_locker(path: &Path) -> u64 {
    let (mut locker, _) = spawn_locker(path, Mode::Lock);
    let line = locker.expect_within("locked", PROMPT);
    locker.send("release");
    locker.expect("released");
    u64_field(&line, "token")
}

/// A file re-created at the same path by an older build (rolling upgrade: some processes still
/// run the build without tokens): the new build's next token must still be above every token it
/// issued for that path, or a downstream store that refuses stale tokens refuses every write
/// from now on (and a store that is new meanwhile accepts tokens already used).
#[test]
fn a_file_recreated_by_a_build_without_tokens_continues_above_the_old_tokens() {
    let dir = TempDir::new("review-fence-old-build");
    let path = dir.join("lock");
    let mutex = SharedMutex::open(&path).expect("create");
    let before = mutex.lock().expect("lock").fencing_token();
    drop(mutex);
    destroy_unused(&path);
    // The older build creates the file again (here: created, then its token bytes zeroed
    // before anyone used it, which is byte for byte what that build leaves).
    drop(SharedMutex::open(&path).expect("re-create"));
    as_created_by_a_build_without_tokens(&path);

    let after = token_of_a_locker(&path);
    assert!(after > before, "token {after} issued after {before} at the same path: tokens went backwards");
}

/// A token is never issued twice for a path: not even when both files were made by an older
/// build (an old file in use when the new build is deployed, re-created by an old process).
#[test]
fn tokens_are_not_reissued_when_an_older_build_recreates_an_old_file() {
    let dir = TempDir::new("review-fence-reissue");
    let path = dir.join("lock");
    drop(SharedMutex::open(&path).expect("create"));
    as_created_by_a_build_without_tokens(&path);
    let first = token_of_a_locker(&path);
    destroy_unused(&path);
    drop(SharedMutex::open(&path).expect("re-create"));
    as_created_by_a_build_without_tokens(&path);
    let again = token_of_a_locker(&path);
    assert!(again > first, "token {again} after {first}: a token issued for this path was issued again");
}

//! The on-disk format: one 4096-byte page holding a header and, on its own cache line, the
//! `pthread_mutex_t`.
//!
//! ```text
//! off  size  field
//!   0     8  magic "RBMUTEX\0"
//!   8     4  format version
//!  12     4  header size (= offset of the mutex)
//!  16     4  state: READY / POISONED / TOMBSTONE / ABANDONED (atomic)
//!  20     4  flags (none defined yet)
//!  24    16  ABI tag: ELF machine u16, pointer bits u8, endianness u8, libc u8, attrs u8,
//!            sizeof(pthread_mutex_t) u16, mutex offset u16, 6 reserved
//!  40    16  boot id of the boot that initialised the mutex
//!  56    16  PID namespace (st_dev, st_ino of /proc/self/ns/pid)
//!  72     8  generation, bumped by every re-initialisation and reset (atomic)
//!  80    48  owner diagnostics, written by the holder: pid, tid, acquired-at (ns since the
//!            epoch), acquisitions, contended acquisitions, owner deaths, last owner death
//! 128     8  PID namespace of the current holder (inode of /proc/self/ns/pid; 0 = unknown),
//!            written by the holder with its pid and tid (atomic)
//! 136     4  pending owner death: an owner death seen by an acquire that was refused (the
//!            mutex was poisoned), to be reported once the poison is reset (atomic)
//! 140     4  reserved
//! 144     8  fencing token: the last one issued, written by the holder (atomic; see
//!            `fencing.rs`). Seeded from the wall clock at creation, raised to it by resets and
//!            re-initialisations. Files made by builds without tokens hold 0 here,
//!            which means "never seeded": the next token starts from the wall clock.
//! 152    40  reserved
//! 192     -  pthread_mutex_t (robust, process-shared, error-checking)
//! ```
//!
//! Identity fields (0..72) are written only while nobody else can see the file (before it is
//! linked into place, or under an exclusive `flock`); when a file is re-initialised in place,
//! the boot id is written last: it is the commit point (a re-initialisation killed before it
//! leaves a file that the next opener re-initialises again). Every field is read through
//! atomics, because another process may write any byte of a mapped page. Integers are native-endian: the ABI tag records the
//! endianness, so a foreign file is refused before any integer is trusted.
//!
//! The format version stays 1 across additions made in reserved bytes that read as zero in
//! older files and that older builds leave alone (the fencing token): old and new builds can
//! then keep sharing one file, which a version bump would forbid. A change that an older build
//! would misread, or break by writing, needs a new version.

use std::fmt;
use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Size of a mutex file: one page.
pub const FILE_SIZE: usize = 4096;
/// The first eight bytes of every mutex file.
pub const MAGIC: [u8; 8] = *b"RBMUTEX\0";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Where the `pthread_mutex_t` lives: on its own 64-byte cache line after the header.
pub const MUTEX_OFFSET: usize = 192;

const IDENTITY_LEN: usize = 72;

/// The lifecycle state stored in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Ready = 1,
    Poisoned = 2,
    Tombstone = 3,
    /// Re-initialised after a reboot while it was held: the next acquirer is told that its
    /// owner died (the protected state may be half-written), then the state returns to READY.
    Abandoned = 4,
}

impl State {
    pub(crate) fn from_raw(raw: u32) -> Option<State> {
        match raw {
            1 => Some(State::Ready),
            2 => Some(State::Poisoned),
            3 => Some(State::Tombstone),
            4 => Some(State::Abandoned),
            _ => None,
        }
    }
}

/// The binary layout a file was built for. Two processes may share a file only when their tags
/// are equal: glibc and musl (or 32- and 64-bit) lay out `pthread_mutex_t` differently, and
/// sharing across them breaks mutual exclusion.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbiTag {
    machine: u16,
    pointer_bits: u8,
    endian: u8,
    libc: u8,
    attrs: u8,
    mutex_size: u16,
    mutex_offset: u16,
}

/// Attribute bits recorded in the ABI tag.
const ATTR_ROBUST: u8 = 1;
const ATTR_PSHARED: u8 = 2;
const ATTR_ERRORCHECK: u8 = 4;

impl AbiTag {
    pub(crate) fn current() -> AbiTag {
        let machine = if cfg!(target_arch = "x86_64") {
            62
        } else if cfg!(target_arch = "aarch64") {
            183
        } else if cfg!(target_arch = "x86") {
            3
        } else if cfg!(target_arch = "arm") {
            40
        } else if cfg!(target_arch = "riscv64") {
            243
        } else if cfg!(target_arch = "powerpc64") {
            21
        } else if cfg!(target_arch = "s390x") {
            22
        } else {
            0xffff
        };
        let libc = if cfg!(target_env = "gnu") {
            1
        } else if cfg!(target_env = "musl") {
            2
        } else {
            3
        };
        AbiTag {
            machine,
            pointer_bits: usize::BITS as u8,
            endian: if cfg!(target_endian = "little") { 1 } else { 2 },
            libc,
            attrs: ATTR_ROBUST | ATTR_PSHARED | ATTR_ERRORCHECK,
            mutex_size: size_of::<libc::pthread_mutex_t>() as u16,
            mutex_offset: MUTEX_OFFSET as u16,
        }
    }

    fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[0..2].copy_from_slice(&self.machine.to_ne_bytes());
        out[2] = self.pointer_bits;
        out[3] = self.endian;
        out[4] = self.libc;
        out[5] = self.attrs;
        out[6..8].copy_from_slice(&self.mutex_size.to_ne_bytes());
        out[8..10].copy_from_slice(&self.mutex_offset.to_ne_bytes());
        out
    }

    fn decode(bytes: &[u8; 16]) -> AbiTag {
        AbiTag {
            machine: u16::from_ne_bytes([bytes[0], bytes[1]]),
            pointer_bits: bytes[2],
            endian: bytes[3],
            libc: bytes[4],
            attrs: bytes[5],
            mutex_size: u16::from_ne_bytes([bytes[6], bytes[7]]),
            mutex_offset: u16::from_ne_bytes([bytes[8], bytes[9]]),
        }
    }
}

impl fmt::Display for AbiTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let machine = match self.machine {
            62 => "x86_64",
            183 => "aarch64",
            3 => "x86",
            40 => "arm",
            243 => "riscv64",
            21 => "powerpc64",
            22 => "s390x",
            _ => "unknown-arch",
        };
        let libc = match self.libc {
            1 => "glibc",
            2 => "musl",
            _ => "other-libc",
        };
        let endian = if self.endian == 1 { "little-endian" } else { "big-endian" };
        write!(
            f,
            "{machine} {}-bit {endian} {libc}, pthread_mutex_t of {} bytes at offset {}, attrs {:#x}",
            self.pointer_bits, self.mutex_size, self.mutex_offset, self.attrs
        )
    }
}

/// Who initialised a file: the identity fields, compared on every open.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Identity {
    pub abi: AbiTag,
    /// All zero when the boot id could not be read (then it is not compared).
    pub boot_id: [u8; 16],
    /// `None` when the namespace could not be read: then it matches no file, not even one this
    /// process created (recorded as (0, 0)), since thread ids cannot be shown comparable.
    pub pid_namespace: Option<(u64, u64)>,
}

impl fmt::Debug for AbiTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Identity {
    pub(crate) fn encode(&self) -> [u8; IDENTITY_LEN] {
        let mut out = [0u8; IDENTITY_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_ne_bytes());
        out[12..16].copy_from_slice(&(MUTEX_OFFSET as u32).to_ne_bytes());
        // state (16..20) and flags (20..24) stay zero here; state is published separately.
        out[24..40].copy_from_slice(&self.abi.encode());
        out[40..56].copy_from_slice(&self.boot_id);
        let (dev, ino) = self.pid_namespace.unwrap_or((0, 0));
        out[56..64].copy_from_slice(&dev.to_ne_bytes());
        out[64..72].copy_from_slice(&ino.to_ne_bytes());
        out
    }
}

/// Why a header was refused. The caller turns it into an [`Error`](crate::Error) with the path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Not ours or damaged: the reason names what.
    Bad(String),
    /// Ours, but built for another binary layout.
    Abi { found: String, expected: String },
}

/// What validation learned about an acceptable header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub state: State,
    pub boot_matches: bool,
    pub pid_namespace_matches: bool,
}

/// Checks the first bytes of a file (`bytes`, at most [`FILE_SIZE`]) of total length `file_len`
/// against this process's identity. Pure: never panics, whatever the bytes.
pub(crate) fn validate(bytes: &[u8], file_len: u64, ours: &Identity) -> Result<Verdict, Invalid> {
    if file_len < FILE_SIZE as u64 {
        return Err(Invalid::Bad(if file_len == 0 {
            "the file is empty".into()
        } else {
            format!("the file is {file_len} bytes; a mutex file is {FILE_SIZE}")
        }));
    }
    if bytes.len() < MUTEX_OFFSET {
        return Err(Invalid::Bad(format!("only {} header bytes could be read", bytes.len())));
    }
    if bytes[0..8] != MAGIC {
        return Err(Invalid::Bad("wrong magic: it was not created by robust-mutex".into()));
    }
    let u32_at = |off: usize| u32::from_ne_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]]);
    let u64_at = |off: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[off..off + 8]);
        u64::from_ne_bytes(b)
    };
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(Invalid::Bad(format!("format version {version}; this build reads version {FORMAT_VERSION}")));
    }
    let header_size = u32_at(12);
    if header_size != MUTEX_OFFSET as u32 {
        return Err(Invalid::Bad(format!("header size {header_size}, expected {MUTEX_OFFSET}")));
    }
    let mut abi_bytes = [0u8; 16];
    abi_bytes.copy_from_slice(&bytes[24..40]);
    let found = AbiTag::decode(&abi_bytes);
    if found != ours.abi || abi_bytes[10..] != [0u8; 6] {
        return Err(Invalid::Abi { found: found.to_string(), expected: ours.abi.to_string() });
    }
    let raw_state = u32_at(16);
    let state = State::from_raw(raw_state).ok_or_else(|| Invalid::Bad(format!("unknown state {raw_state}")))?;
    let flags = u32_at(20);
    if flags != 0 {
        return Err(Invalid::Bad(format!("unknown flags {flags:#x}")));
    }
    let mut boot_id = [0u8; 16];
    boot_id.copy_from_slice(&bytes[40..56]);
    let pid_namespace = (u64_at(56), u64_at(64));
    Ok(Verdict {
        state,
        boot_matches: ours.boot_id == [0; 16] || boot_id == ours.boot_id,
        // Unknown (ours or the file's) is a mismatch: only a proven match lets thread ids of
        // the file's users be compared with ours.
        pid_namespace_matches: ours.pid_namespace.is_some_and(|ns| ns != (0, 0) && ns == pid_namespace),
    })
}

/// The atomics of a mapped header. Only ever built over a live mapping of at least
/// [`FILE_SIZE`] bytes, so every accessor stays in bounds. Every byte is an atomic: another
/// process may write any of them at any time (a hostile or broken one included), and a plain
/// field read through `&Shared` would then be a data race.
#[repr(C)]
pub(crate) struct Shared {
    _identity_head: [AtomicU8; 16],
    pub state: AtomicU32,
    _flags: AtomicU32,
    _identity_tail: [AtomicU8; 48],
    pub generation: AtomicU64,
    pub owner_pid: AtomicI32,
    pub owner_tid: AtomicI32,
    pub owner_since_ns: AtomicU64,
    pub acquisitions: AtomicU64,
    pub contended: AtomicU64,
    pub owner_deaths: AtomicU64,
    pub last_owner_death_ns: AtomicU64,
    pub owner_pid_namespace: AtomicU64,
    pub pending_owner_death: AtomicU32,
    _reserved: AtomicU32,
    pub fencing_token: AtomicU64,
}

const _: () = {
    assert!(offset_of!(Shared, state) == 16);
    assert!(offset_of!(Shared, generation) == 72);
    assert!(offset_of!(Shared, owner_pid) == 80);
    assert!(offset_of!(Shared, owner_tid) == 84);
    assert!(offset_of!(Shared, owner_since_ns) == 88);
    assert!(offset_of!(Shared, last_owner_death_ns) == 120);
    assert!(offset_of!(Shared, owner_pid_namespace) == 128);
    assert!(offset_of!(Shared, pending_owner_death) == 136);
    assert!(offset_of!(Shared, fencing_token) == 144);
    assert!(size_of::<Shared>() <= MUTEX_OFFSET);
    assert!(MUTEX_OFFSET % 64 == 0);
    assert!(MUTEX_OFFSET + size_of::<libc::pthread_mutex_t>() <= FILE_SIZE);
};

impl Shared {
    pub(crate) fn state(&self) -> Option<State> {
        State::from_raw(self.state.load(Ordering::Acquire))
    }

    /// Adds one to a counter that only the lock holder writes: a plain load and store is enough
    /// (no read-modify-write on the fast path), readers just see a slightly old value.
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

/// Writes the identity fields into a mapped page that nobody else can be using, all but the
/// boot id (see [`write_boot_id`]).
///
/// # Safety
/// `page` must point to a writable mapping of at least [`FILE_SIZE`] bytes that no other thread
/// or process reads or writes concurrently (a private, not yet linked file, or one held under an
/// exclusive `flock` by every cooperating user).
pub(crate) unsafe fn write_identity(page: *mut u8, identity: &Identity) {
    let mut bytes = identity.encode();
    // The boot id goes in last, as the commit point of a re-initialisation: until then the
    // old (or a zero) boot id makes the next opener redo the whole re-initialisation.
    // The state is published separately (and may already hold the new one).
    let current = page_bytes(page);
    bytes[BOOT_ID].copy_from_slice(&current[BOOT_ID]);
    bytes[16..20].copy_from_slice(&current[16..20]);
    // SAFETY: the caller guarantees `page` is valid for FILE_SIZE bytes and unshared.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), page, bytes.len()) };
}

/// Where the boot id lives.
const BOOT_ID: std::ops::Range<usize> = 40..56;

fn page_bytes(page: *mut u8) -> [u8; IDENTITY_LEN] {
    let mut out = [0u8; IDENTITY_LEN];
    // SAFETY: (callers' contract) `page` is a live, unshared mapping of FILE_SIZE bytes.
    unsafe { std::ptr::copy_nonoverlapping(page, out.as_mut_ptr(), IDENTITY_LEN) };
    out
}

/// Writes the boot id: the last write of an initialisation, after the mutex and the state.
///
/// # Safety
/// As for [`write_identity`].
pub(crate) unsafe fn write_boot_id(page: *mut u8, identity: &Identity) {
    std::sync::atomic::fence(Ordering::Release);
    // SAFETY: the caller guarantees `page` is valid for FILE_SIZE bytes and unshared.
    unsafe { std::ptr::copy_nonoverlapping(identity.boot_id.as_ptr(), page.add(BOOT_ID.start), 16) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> Identity {
        Identity { abi: AbiTag::current(), boot_id: [7; 16], pid_namespace: Some((3, 4)) }
    }

    fn good_page() -> Vec<u8> {
        let mut page = vec![0u8; FILE_SIZE];
        page[..IDENTITY_LEN].copy_from_slice(&ours().encode());
        page[16..20].copy_from_slice(&1u32.to_ne_bytes());
        page
    }

    #[test]
    fn a_freshly_encoded_header_validates() {
        let verdict = validate(&good_page(), FILE_SIZE as u64, &ours()).unwrap();
        assert_eq!(verdict.state, State::Ready);
        assert!(verdict.boot_matches && verdict.pid_namespace_matches);
    }

    #[test]
    fn each_field_is_checked() {
        let cases: [(usize, &str); 5] =
            [(0, "magic"), (8, "version"), (12, "header size"), (16, "state"), (20, "flags")];
        for (offset, what) in cases {
            let mut page = good_page();
            page[offset] ^= 0x55;
            assert!(matches!(validate(&page, FILE_SIZE as u64, &ours()), Err(Invalid::Bad(_))), "{what} not checked");
        }
        let mut page = good_page();
        page[26] = 32;
        assert!(matches!(validate(&page, FILE_SIZE as u64, &ours()), Err(Invalid::Abi { .. })));
    }

    #[test]
    fn boot_and_namespace_mismatches_are_reported_not_refused() {
        let mut page = good_page();
        page[40] ^= 1;
        page[56] ^= 1;
        let verdict = validate(&page, FILE_SIZE as u64, &ours()).unwrap();
        assert!(!verdict.boot_matches && !verdict.pid_namespace_matches);
    }

    #[test]
    fn an_unknown_pid_namespace_matches_nothing() {
        let unknown = Identity { pid_namespace: None, ..ours() };
        let verdict = validate(&good_page(), FILE_SIZE as u64, &unknown).unwrap();
        assert!(!verdict.pid_namespace_matches, "unknown here");
        let mut page = good_page();
        page[56..72].fill(0);
        let verdict = validate(&page, FILE_SIZE as u64, &ours()).unwrap();
        assert!(!verdict.pid_namespace_matches, "unknown to the file's creator");
        let verdict = validate(&page, FILE_SIZE as u64, &unknown).unwrap();
        assert!(!verdict.pid_namespace_matches, "unknown on both sides");
    }

    /// The tag is a file format: files written by one build must validate in the next. Pinned
    /// for the targets CI runs.
    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn the_abi_tag_encoding_is_pinned() {
        let libc = if cfg!(target_env = "musl") { 2 } else { 1 };
        let size = std::mem::size_of::<libc::pthread_mutex_t>() as u16;
        let mut expected = [0u8; 16];
        expected[0..2].copy_from_slice(&62u16.to_ne_bytes());
        expected[2] = 64;
        expected[3] = 1;
        expected[4] = libc;
        expected[5] = 0b111; // robust | process-shared | error-checking
        expected[6..8].copy_from_slice(&size.to_ne_bytes());
        expected[8..10].copy_from_slice(&192u16.to_ne_bytes());
        assert_eq!(AbiTag::current().encode(), expected);
        assert_eq!(size, 40);
    }

    /// An ABI mismatch is reported in words: the architecture, width, byte order and C library
    /// of the file, so that the user can tell which build wrote it.
    #[test]
    fn abi_tags_are_described_in_words() {
        let machines = [
            (62, "x86_64"),
            (183, "aarch64"),
            (3, "x86"),
            (40, "arm"),
            (243, "riscv64"),
            (21, "powerpc64"),
            (22, "s390x"),
            (7, "unknown-arch"),
        ];
        for (machine, name) in machines {
            let tag = AbiTag { machine, ..AbiTag::current() };
            assert!(tag.to_string().starts_with(&format!("{name} ")), "{machine}: {tag}");
        }
        for (libc, name) in [(1, "glibc"), (2, "musl"), (9, "other-libc")] {
            assert!(AbiTag { libc, ..AbiTag::current() }.to_string().contains(&format!(" {name},")));
        }
        let big = AbiTag { endian: 2, pointer_bits: 32, ..AbiTag::current() };
        assert!(big.to_string().contains(" 32-bit big-endian "), "{big}");
        let little = AbiTag { endian: 1, ..AbiTag::current() };
        assert!(little.to_string().contains("-bit little-endian "), "{little}");
        assert!(little.to_string().ends_with("at offset 192, attrs 0x7"), "{little}");
        assert_eq!(format!("{little:?}"), little.to_string());
    }

    #[test]
    fn short_files_are_refused() {
        assert!(matches!(validate(&[], 0, &ours()), Err(Invalid::Bad(r)) if r.contains("empty")));
        assert!(validate(&good_page(), 4095, &ours()).is_err());
    }
}

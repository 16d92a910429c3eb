//! The file-lock backend's file: one page, a header of atomics (the page is mapped shared by
//! every user), no pthread mutex. Its magic differs from the pthread backend's, so neither
//! backend ever uses the other's file (they would not exclude each other).
//!
//! | offset | field |
//! |---|---|
//! | 0  | magic `RMFLOCK\0` |
//! | 8  | format version (u32) |
//! | 12 | byte-order mark 0x0102_0304 (u32) |
//! | 16 | state: 1 READY, 2 POISONED, 3 TOMBSTONE (u32) |
//! | 20 | held: 1 while a holder is inside its critical section (u32) |
//! | 24 | generation (u64) |
//! | 32 | owner pid, owner tid (i32 each) |
//! | 40 | owner since, ns since the epoch (u64) |
//! | 48 | acquisitions, contended, owner deaths, last owner death ns (u64 each) |
//! | 80 | fencing token: the last one issued (u64; see `crate::fencing`; 0 in files made by builds without tokens: never seeded, the next token starts from the clock) |
//!
//! The format version stays 1 across additions in bytes that older files hold as zero and older
//! builds leave alone (the fencing token), so that old and new builds keep sharing a file.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// The size of the file (and of the mapping).
pub(crate) const FILE_SIZE: usize = 4096;
pub(crate) const MAGIC: [u8; 8] = *b"RMFLOCK\0";
pub(crate) const FORMAT_VERSION: u32 = 1;
const BYTE_ORDER_MARK: u32 = 0x0102_0304;

/// The life states of a mutex file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum State {
    Ready = 1,
    Poisoned = 2,
    Tombstone = 3,
}

impl State {
    pub(crate) fn from_raw(raw: u32) -> Option<State> {
        match raw {
            1 => Some(State::Ready),
            2 => Some(State::Poisoned),
            3 => Some(State::Tombstone),
            _ => None,
        }
    }
}

/// The mapped header. Every field is atomic: other processes (a hostile one included) write the
/// page at any time.
#[repr(C)]
pub(crate) struct Shared {
    _magic: [AtomicU8; 8],
    _version: AtomicU32,
    _byte_order: AtomicU32,
    pub state: AtomicU32,
    pub held: AtomicU32,
    pub generation: AtomicU64,
    pub owner_pid: AtomicI32,
    pub owner_tid: AtomicI32,
    pub owner_since_ns: AtomicU64,
    pub acquisitions: AtomicU64,
    pub contended: AtomicU64,
    pub owner_deaths: AtomicU64,
    pub last_owner_death_ns: AtomicU64,
    pub fencing_token: AtomicU64,
}

const _: () = {
    assert!(offset_of!(Shared, state) == 16);
    assert!(offset_of!(Shared, held) == 20);
    assert!(offset_of!(Shared, generation) == 24);
    assert!(offset_of!(Shared, owner_pid) == 32);
    assert!(offset_of!(Shared, owner_since_ns) == 40);
    assert!(offset_of!(Shared, last_owner_death_ns) == 72);
    assert!(offset_of!(Shared, fencing_token) == 80);
    assert!(size_of::<Shared>() <= FILE_SIZE);
};

impl Shared {
    pub(crate) fn state(&self) -> Option<State> {
        State::from_raw(self.state.load(Ordering::Acquire))
    }

    /// Adds one to a counter only the holder writes.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

/// The bytes of a new file: the header of a READY mutex of generation 1 whose fencing tokens
/// start at the wall clock, then zeros.
pub(crate) fn initial_page() -> Vec<u8> {
    let mut page = vec![0u8; FILE_SIZE];
    page[0..8].copy_from_slice(&MAGIC);
    page[8..12].copy_from_slice(&FORMAT_VERSION.to_ne_bytes());
    page[12..16].copy_from_slice(&BYTE_ORDER_MARK.to_ne_bytes());
    page[16..20].copy_from_slice(&(State::Ready as u32).to_ne_bytes());
    page[24..32].copy_from_slice(&1u64.to_ne_bytes());
    page[80..88].copy_from_slice(&crate::fencing::seed().to_ne_bytes());
    page
}

/// Checks the first bytes of a file (`bytes`) of total length `len`; returns its state or why
/// it is not a mutex file of this backend. Pure: never panics, whatever the bytes.
pub(crate) fn validate(bytes: &[u8], len: u64) -> Result<State, String> {
    if len < FILE_SIZE as u64 {
        return Err(if len == 0 {
            "the file is empty".into()
        } else {
            format!("the file is {len} bytes; a mutex file is {FILE_SIZE}")
        });
    }
    if bytes.len() < size_of::<Shared>() {
        return Err(format!("only {} header bytes could be read", bytes.len()));
    }
    if bytes[0..8] != MAGIC {
        return Err(if bytes[0..8] == *b"RBMUTEX\0" {
            "a pthread-backend mutex file: this build uses the file-lock backend".into()
        } else {
            "wrong magic: it was not created by robust-mutex's file-lock backend".into()
        });
    }
    let u32_at = |off: usize| u32::from_ne_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]]);
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(format!("format version {version}; this build reads version {FORMAT_VERSION}"));
    }
    if u32_at(12) != BYTE_ORDER_MARK {
        return Err("written by a machine of the other byte order".into());
    }
    let raw_state = u32_at(16);
    State::from_raw(raw_state).ok_or_else(|| format!("unknown state {raw_state}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_page_validates_as_ready() {
        assert_eq!(validate(&initial_page(), FILE_SIZE as u64), Ok(State::Ready));
    }

    #[test]
    fn each_identity_field_is_checked() {
        for (offset, what) in [(0, "magic"), (8, "version"), (12, "byte order"), (16, "state")] {
            let mut page = initial_page();
            page[offset] ^= 0x55;
            assert!(validate(&page, FILE_SIZE as u64).is_err(), "{what} not checked");
        }
        assert!(validate(&initial_page(), 4095).is_err());
        assert!(validate(&[], 0).unwrap_err().contains("empty"));
        assert!(validate(&initial_page()[..8], FILE_SIZE as u64).is_err());
    }
}

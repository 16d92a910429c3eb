//! The Windows backend's file: one page whose header holds what the kernel mutex does not
//! (poison, retirement, the holder's diagnostics, counters). Read and written with positioned
//! I/O; every write happens under the named mutex, so no two processes write it at once.
//!
//! | offset | field |
//! |---|---|
//! | 0  | magic `RMWINMX\0` |
//! | 8  | format version (u32) |
//! | 12 | byte-order mark 0x0102_0304 (u32) |
//! | 16 | state: 1 READY, 2 POISONED, 3 TOMBSTONE (u32) |
//! | 20 | pending owner death: 1 when a death seen by a refused or probing acquire awaits the next acquirer (u32) |
//! | 24 | generation (u64) |
//! | 32 | owner pid, owner tid (u32 each) |
//! | 40 | owner since, ns since the epoch (u64) |
//! | 48 | acquisitions, contended, owner deaths (u64 each) |
//! | 72 | fencing token: the last one issued (u64; see `crate::fencing`; 0 in files made by builds without tokens: never seeded, the next token starts from the clock) |
//!
//! The format version stays 1 across additions in bytes that older files hold as zero and older
//! builds leave alone (the fencing token), so that old and new builds keep sharing a file.

use std::fs::File;
use std::os::windows::fs::FileExt;

use crate::error::Error;

pub(crate) const FILE_SIZE: usize = 4096;
pub(crate) const MAGIC: [u8; 8] = *b"RMWINMX\0";
const FORMAT_VERSION: u32 = 1;
const BYTE_ORDER_MARK: u32 = 0x0102_0304;
const LEN: usize = 80;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum State {
    Ready = 1,
    Poisoned = 2,
    Tombstone = 3,
}

/// The mutable part of the header, as read from the file.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Header {
    pub state: u32,
    pub pending_death: u32,
    pub generation: u64,
    pub owner_pid: u32,
    pub owner_tid: u32,
    pub owner_since_ns: u64,
    pub acquisitions: u64,
    pub contended: u64,
    pub owner_deaths: u64,
    pub fencing_token: u64,
}

impl Header {
    pub(crate) fn state(&self) -> Option<State> {
        match self.state {
            1 => Some(State::Ready),
            2 => Some(State::Poisoned),
            3 => Some(State::Tombstone),
            _ => None,
        }
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn io(op: &'static str, e: std::io::Error) -> Error {
    Error::Os { op, path: None, errno: e.raw_os_error().unwrap_or(0) }
}

/// The bytes of a new file: a READY mutex of generation 1 whose fencing tokens start at the
/// wall clock.
pub(crate) fn initial_page() -> Vec<u8> {
    let mut page = vec![0u8; FILE_SIZE];
    page[0..8].copy_from_slice(&MAGIC);
    page[8..12].copy_from_slice(&FORMAT_VERSION.to_ne_bytes());
    page[12..16].copy_from_slice(&BYTE_ORDER_MARK.to_ne_bytes());
    page[16..20].copy_from_slice(&(State::Ready as u32).to_ne_bytes());
    page[24..32].copy_from_slice(&1u64.to_ne_bytes());
    page[72..80].copy_from_slice(&crate::fencing::seed().to_ne_bytes());
    page
}

/// Checks that `file` is a mutex file of this backend; never writes.
pub(crate) fn validate(file: &File) -> Result<Header, Error> {
    let len = file.metadata().map_err(|e| io("metadata", e))?.len();
    let bad = |reason: String| Error::BadMutex { path: None, reason };
    if len < FILE_SIZE as u64 {
        return Err(bad(format!("the file is {len} bytes; a mutex file is {FILE_SIZE}")));
    }
    let mut bytes = [0u8; LEN];
    file.seek_read(&mut bytes, 0).map_err(|e| io("read", e))?;
    if bytes[0..8] != MAGIC {
        return Err(bad("wrong magic: it was not created by robust-mutex's Windows backend".into()));
    }
    if u32_at(&bytes, 8) != FORMAT_VERSION || u32_at(&bytes, 12) != BYTE_ORDER_MARK {
        return Err(bad("another format version or byte order".into()));
    }
    let header = decode(&bytes);
    if header.state().is_none() {
        return Err(bad(format!("unknown state {}", header.state)));
    }
    Ok(header)
}

fn decode(b: &[u8; LEN]) -> Header {
    Header {
        state: u32_at(b, 16),
        pending_death: u32_at(b, 20),
        generation: u64_at(b, 24),
        owner_pid: u32_at(b, 32),
        owner_tid: u32_at(b, 36),
        owner_since_ns: u64_at(b, 40),
        acquisitions: u64_at(b, 48),
        contended: u64_at(b, 56),
        owner_deaths: u64_at(b, 64),
        fencing_token: u64_at(b, 72),
    }
}

/// Reads the header (for `state()` this races with the holder's writes: diagnostics only).
pub(crate) fn read(file: &File) -> Result<Header, Error> {
    let mut bytes = [0u8; LEN];
    file.seek_read(&mut bytes, 0).map_err(|e| io("read", e))?;
    Ok(decode(&bytes))
}

/// Writes the mutable fields; only under the named mutex.
pub(crate) fn write(file: &File, h: &Header) -> Result<(), Error> {
    let mut b = [0u8; LEN - 16];
    b[0..4].copy_from_slice(&h.state.to_ne_bytes());
    b[4..8].copy_from_slice(&h.pending_death.to_ne_bytes());
    b[8..16].copy_from_slice(&h.generation.to_ne_bytes());
    b[16..20].copy_from_slice(&h.owner_pid.to_ne_bytes());
    b[20..24].copy_from_slice(&h.owner_tid.to_ne_bytes());
    b[24..32].copy_from_slice(&h.owner_since_ns.to_ne_bytes());
    b[32..40].copy_from_slice(&h.acquisitions.to_ne_bytes());
    b[40..48].copy_from_slice(&h.contended.to_ne_bytes());
    b[48..56].copy_from_slice(&h.owner_deaths.to_ne_bytes());
    b[56..64].copy_from_slice(&h.fencing_token.to_ne_bytes());
    file.seek_write(&b, 16).map_err(|e| io("write", e)).map(drop)
}

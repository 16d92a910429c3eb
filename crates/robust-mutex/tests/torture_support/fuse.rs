//! A minimal in-memory FUSE filesystem spoken directly over `/dev/fuse`, so that the hostile-file
//! torture can put a genuine mutex file on a filesystem the crate must refuse. One flat root
//! directory; the server answers the handful of requests an open, a create and a statfs cause,
//! and counts every request that would modify something.
//!
//! Mount it from a process in a private mount namespace (`unshare -m`): the mount then dies with
//! that process, whatever happens to the test.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

const FUSE_LOOKUP: u32 = 1;
const FUSE_FORGET: u32 = 2;
const FUSE_GETATTR: u32 = 3;
const FUSE_SETATTR: u32 = 4;
const FUSE_UNLINK: u32 = 10;
const FUSE_LINK: u32 = 13;
const FUSE_OPEN: u32 = 14;
const FUSE_READ: u32 = 15;
const FUSE_WRITE: u32 = 16;
const FUSE_STATFS: u32 = 17;
const FUSE_RELEASE: u32 = 18;
const FUSE_FSYNC: u32 = 20;
const FUSE_FLUSH: u32 = 25;
const FUSE_INIT: u32 = 26;
const FUSE_OPENDIR: u32 = 27;
const FUSE_READDIR: u32 = 28;
const FUSE_RELEASEDIR: u32 = 29;
const FUSE_ACCESS: u32 = 34;
const FUSE_CREATE: u32 = 35;
const FUSE_INTERRUPT: u32 = 36;
const FUSE_BATCH_FORGET: u32 = 42;

const FATTR_MODE: u32 = 1;
const FATTR_SIZE: u32 = 1 << 3;

const ROOT: u64 = 1;

/// One regular file of the filesystem.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// The filesystem's contents and a count of the requests that modify it.
#[derive(Debug, Default)]
pub struct State {
    pub files: BTreeMap<u64, Node>,
    next_id: u64,
    /// WRITE, SETATTR, CREATE, UNLINK, LINK requests received.
    pub writes: u64,
    pub setattrs: u64,
    pub creates: u64,
    pub unlinks: u64,
    pub links: u64,
    pub unknown_opcodes: Vec<u32>,
}

impl State {
    fn by_name(&self, name: &str) -> Option<u64> {
        self.files.iter().find(|(_, n)| n.name == name).map(|(id, _)| *id)
    }

    /// The files by name (a snapshot for before/after comparisons).
    pub fn snapshot(&self) -> BTreeMap<String, (u32, Vec<u8>)> {
        self.files.values().map(|n| (n.name.clone(), (n.mode, n.data.clone()))).collect()
    }
}

/// A mounted filesystem served by a background thread.
pub struct Mounted {
    pub state: Arc<Mutex<State>>,
}

/// Mounts a filesystem holding `files` (name, mode, bytes) at `mountpoint`. `Err` says why
/// mounting is impossible here (no /dev/fuse, no privilege).
pub fn mount(mountpoint: &Path, files: Vec<(String, u32, Vec<u8>)>) -> Result<Mounted, String> {
    let dev = CString::new("/dev/fuse").expect("no NUL");
    // SAFETY: a plain open of a NUL-terminated path.
    let raw = unsafe { libc::open(dev.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(format!("cannot open /dev/fuse: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `raw` was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let options = CString::new(format!("fd={raw},rootmode=40000,user_id={uid},group_id={gid}")).expect("no NUL");
    let target = CString::new(mountpoint.as_os_str().as_bytes()).expect("no NUL");
    let source = CString::new("robust-mutex-torture").expect("no NUL");
    let fstype = CString::new("fuse").expect("no NUL");
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(format!("mount -t fuse failed: {}", std::io::Error::last_os_error()));
    }
    let mut state = State { next_id: 2, ..State::default() };
    for (name, mode, data) in files {
        let id = state.next_id;
        state.next_id += 1;
        state.files.insert(id, Node { name, mode: libc::S_IFREG | (mode & 0o7777), data });
    }
    let state = Arc::new(Mutex::new(state));
    let served = Arc::clone(&state);
    std::thread::spawn(move || serve(fd, &served));
    Ok(Mounted { state })
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn name_of(body: &[u8]) -> String {
    let end = body.iter().position(|&c| c == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// `struct fuse_attr` (88 bytes).
fn attr(id: u64, mode: u32, size: u64) -> Vec<u8> {
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut a = Vec::with_capacity(88);
    a.extend_from_slice(&id.to_ne_bytes()); // ino
    a.extend_from_slice(&size.to_ne_bytes());
    a.extend_from_slice(&size.div_ceil(512).to_ne_bytes()); // blocks
    a.extend_from_slice(&[0u8; 24]); // atime, mtime, ctime
    a.extend_from_slice(&[0u8; 12]); // their nanoseconds
    a.extend_from_slice(&mode.to_ne_bytes());
    let nlink: u32 = if mode & libc::S_IFMT == libc::S_IFDIR { 2 } else { 1 };
    a.extend_from_slice(&nlink.to_ne_bytes());
    a.extend_from_slice(&uid.to_ne_bytes());
    a.extend_from_slice(&gid.to_ne_bytes());
    a.extend_from_slice(&0u32.to_ne_bytes()); // rdev
    a.extend_from_slice(&4096u32.to_ne_bytes()); // blksize
    a.extend_from_slice(&0u32.to_ne_bytes()); // flags
    debug_assert_eq!(a.len(), 88);
    a
}

fn node_attr(state: &State, id: u64) -> Option<Vec<u8>> {
    if id == ROOT {
        return Some(attr(ROOT, libc::S_IFDIR | 0o755, 0));
    }
    state.files.get(&id).map(|n| attr(id, n.mode, n.data.len() as u64))
}

/// `struct fuse_entry_out`: nodeid, generation, timeouts (all zero: never cache), attr.
fn entry(id: u64, attr: Vec<u8>) -> Vec<u8> {
    let mut e = Vec::with_capacity(128);
    e.extend_from_slice(&id.to_ne_bytes());
    e.extend_from_slice(&1u64.to_ne_bytes());
    e.extend_from_slice(&[0u8; 24]);
    e.extend(attr);
    e
}

/// `struct fuse_attr_out`.
fn attr_out(attr: Vec<u8>) -> Vec<u8> {
    let mut out = vec![0u8; 16];
    out.extend(attr);
    out
}

/// `struct fuse_open_out`.
fn open_out(fh: u64) -> Vec<u8> {
    let mut out = fh.to_ne_bytes().to_vec();
    out.extend_from_slice(&[0u8; 8]);
    out
}

/// What to answer: `None` for requests that get no reply.
type Reply = Option<Result<Vec<u8>, i32>>;

fn handle(state: &Mutex<State>, opcode: u32, nodeid: u64, body: &[u8]) -> Reply {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    Some(match opcode {
        FUSE_INIT => {
            let mut out = Vec::with_capacity(64);
            out.extend_from_slice(&7u32.to_ne_bytes()); // major
            out.extend_from_slice(&31u32.to_ne_bytes()); // minor
            out.extend_from_slice(&u32_at(body, 8).to_ne_bytes()); // max_readahead
            out.extend_from_slice(&0u32.to_ne_bytes()); // flags: nothing optional
            out.extend_from_slice(&16u16.to_ne_bytes()); // max_background
            out.extend_from_slice(&12u16.to_ne_bytes()); // congestion_threshold
            out.extend_from_slice(&65536u32.to_ne_bytes()); // max_write
            out.extend_from_slice(&1u32.to_ne_bytes()); // time_gran
            out.extend_from_slice(&[0u8; 36]); // max_pages .. unused
            Ok(out)
        }
        FUSE_LOOKUP => match (nodeid == ROOT).then(|| st.by_name(&name_of(body))).flatten() {
            Some(id) => Ok(entry(id, node_attr(&st, id).expect("exists"))),
            None => Err(libc::ENOENT),
        },
        FUSE_GETATTR => node_attr(&st, nodeid).map(attr_out).ok_or(libc::ENOENT),
        FUSE_SETATTR => {
            st.setattrs += 1;
            let valid = u32_at(body, 0);
            match st.files.get_mut(&nodeid) {
                Some(node) => {
                    if valid & FATTR_MODE != 0 {
                        node.mode = libc::S_IFREG | (u32_at(body, 68) & 0o7777);
                    }
                    if valid & FATTR_SIZE != 0 {
                        node.data.resize(u64_at(body, 16) as usize, 0);
                    }
                    Ok(attr_out(node_attr(&st, nodeid).expect("exists")))
                }
                None => Err(libc::EPERM),
            }
        }
        FUSE_OPEN | FUSE_OPENDIR => Ok(open_out(nodeid)),
        FUSE_READ => {
            let (offset, size) = (u64_at(body, 8) as usize, u32_at(body, 16) as usize);
            match st.files.get(&nodeid) {
                Some(node) => {
                    let start = offset.min(node.data.len());
                    let end = (offset + size).min(node.data.len());
                    Ok(node.data[start..end].to_vec())
                }
                None => Err(libc::EIO),
            }
        }
        FUSE_WRITE => {
            st.writes += 1;
            let (offset, size) = (u64_at(body, 8) as usize, u32_at(body, 16) as usize);
            let data = body[40..40 + size].to_vec();
            match st.files.get_mut(&nodeid) {
                Some(node) => {
                    if node.data.len() < offset + size {
                        node.data.resize(offset + size, 0);
                    }
                    node.data[offset..offset + size].copy_from_slice(&data);
                    let mut out = (size as u32).to_ne_bytes().to_vec();
                    out.extend_from_slice(&[0u8; 4]);
                    Ok(out)
                }
                None => Err(libc::EIO),
            }
        }
        FUSE_STATFS => {
            let mut out = Vec::with_capacity(80);
            for v in [1000u64, 1000, 1000, 100, 100] {
                out.extend_from_slice(&v.to_ne_bytes());
            }
            for v in [4096u32, 255, 4096, 0] {
                out.extend_from_slice(&v.to_ne_bytes());
            }
            out.extend_from_slice(&[0u8; 24]);
            Ok(out)
        }
        FUSE_RELEASE | FUSE_RELEASEDIR | FUSE_FLUSH | FUSE_FSYNC | FUSE_ACCESS => Ok(Vec::new()),
        FUSE_READDIR => Ok(Vec::new()),
        FUSE_CREATE => {
            st.creates += 1;
            let mode = u32_at(body, 4);
            let name = name_of(&body[16..]);
            if nodeid != ROOT || st.by_name(&name).is_some() {
                Err(libc::EEXIST)
            } else {
                let id = st.next_id;
                st.next_id += 1;
                st.files.insert(id, Node { name, mode: libc::S_IFREG | (mode & 0o7777), data: Vec::new() });
                let mut out = entry(id, node_attr(&st, id).expect("exists"));
                out.extend(open_out(id));
                Ok(out)
            }
        }
        FUSE_UNLINK => {
            st.unlinks += 1;
            match st.by_name(&name_of(body)) {
                Some(id) => {
                    st.files.remove(&id);
                    Ok(Vec::new())
                }
                None => Err(libc::ENOENT),
            }
        }
        FUSE_LINK => {
            st.links += 1;
            Err(libc::EPERM)
        }
        FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT => return None,
        other => {
            st.unknown_opcodes.push(other);
            Err(libc::ENOSYS)
        }
    })
}

fn serve(fd: OwnedFd, state: &Mutex<State>) {
    let mut buf = vec![0u8; 65536 + 4096 * 4];
    loop {
        // SAFETY: reads into a buffer we own, of the given length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR | libc::EAGAIN | libc::ENOENT) => continue,
                _ => return, // ENODEV: unmounted
            }
        }
        let req = &buf[..n as usize];
        if req.len() < 40 {
            return;
        }
        let (opcode, unique, nodeid) = (u32_at(req, 4), u64_at(req, 8), u64_at(req, 16));
        let Some(result) = handle(state, opcode, nodeid, &req[40..]) else { continue };
        let (error, payload) = match result {
            Ok(payload) => (0i32, payload),
            Err(errno) => (-errno, Vec::new()),
        };
        let mut reply = Vec::with_capacity(16 + payload.len());
        reply.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        reply.extend_from_slice(&error.to_ne_bytes());
        reply.extend_from_slice(&unique.to_ne_bytes());
        reply.extend(payload);
        // SAFETY: writes a buffer we own, of the given length.
        let _ = unsafe { libc::write(fd.as_raw_fd(), reply.as_ptr().cast(), reply.len()) };
    }
}

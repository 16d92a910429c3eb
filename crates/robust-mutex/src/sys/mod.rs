//! Operating-system facts the protocol needs, one module per OS.
//!
//! Only Linux is implemented: it is where the C library declares robust, process-shared mutexes
//! and the kernel keeps a robust list per thread. FreeBSD has both and is the next candidate.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

//! Operating-system facts the protocol needs, one module per OS.
//!
//! Only Linux is implemented: it is where the C library declares robust, process-shared mutexes
//! and the kernel keeps a robust list per thread. Everywhere else (and on Linux with
//! `--cfg robust_mutex_unsupported`) the `unsupported` backend keeps the public types and fails
//! every constructor. FreeBSD has both robust mutexes and robust lists, and is the next
//! candidate; until it has a backend it is unsupported.

#[cfg(supported)]
mod linux;
#[cfg(supported)]
pub(crate) use linux::*;

#[cfg(not(any(supported, file_lock, named_mutex)))]
mod unsupported;
#[cfg(not(any(supported, file_lock, named_mutex)))]
pub(crate) use unsupported::Inner;

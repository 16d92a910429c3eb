//! Errors cross into JavaScript as `"CODE: message"`; `index.ts` splits the prefix into
//! `err.code` and picks the matching `Error` subclass. (napi-rs fixes `err.code` to a napi
//! status name, so the stable code travels in the message.)

use robust_mutex::Error;

/// The result of a hot-path call (`tryLock`, `release` and their raw twins). A `napi::Error` is
/// 48 bytes, so a `Result<f64, napi::Error>` came back through memory, copied at each level
/// (the handle table's closure, the thread-local access, the call) with 8-byte stores read back
/// as 16-byte loads: store-forwarding stalls, over half of the acquire's samples in a
/// tryLock()+release() profile. Boxed, the error is one pointer, and the result (16 bytes)
/// comes back in two registers: 0.88-0.92x per pair by A/B. Errors are rare; their allocation
/// does not matter.
pub(crate) type Fallible<T> = std::result::Result<T, Box<napi::Error>>;

/// A napi error carrying a core error's stable code.
pub(crate) fn to_napi(err: Error) -> napi::Error {
    coded(err.code(), err)
}

/// A napi error with an explicit code (for errors only the binding can raise).
pub(crate) fn coded(code: &str, message: impl std::fmt::Display) -> napi::Error {
    napi::Error::new(napi::Status::GenericFailure, format!("{code}: {message}"))
}

pub(crate) fn closed() -> napi::Error {
    coded("ECLOSED", "the mutex handle was closed")
}

//! Errors cross into JavaScript as `"CODE: message"`; `index.ts` splits the prefix into
//! `err.code` and picks the matching `Error` subclass. (napi-rs fixes `err.code` to a napi
//! status name, so the stable code travels in the message.)

use robust_mutex::Error;

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

//! Node.js binding for `robust-mutex` (napi-rs). Thin: argument conversion, the hand-off of
//! contended waits to a native waiter thread, and error codes. `index.ts` builds the public
//! TypeScript API on top.

mod errors;
mod fast;
mod mutex;
mod token;
mod waiter;

use napi_derive::napi;

/// The version of this native binding (the workspace version), e.g. `"0.1.0"`.
#[napi]
pub fn binding_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

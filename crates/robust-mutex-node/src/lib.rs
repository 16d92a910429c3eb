//! Node.js binding for `robust-mutex` (napi-rs). Thin: argument conversion, the native watch of
//! a contended `lock()`, and error codes. `index.ts` builds the public TypeScript API on top.
//!
//! One owner per hold: every lock is acquired and released by the JS thread whose guard it is;
//! other threads only watch (`watcher.rs`).

// Unit tests build the crate without napi's registration, so the exported functions look unused.
#![cfg_attr(test, allow(dead_code))]

mod call_slot;
mod env_state;
mod errors;
mod fast;
mod fence;
mod handles;
mod mutex;
mod os;
mod state_slots;
mod token;
mod trace;
mod watcher;

use napi_derive::napi;

/// The version of this native binding (the workspace version), e.g. `"0.1.0"`.
#[napi]
pub fn binding_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

//! Node.js binding for `robust-mutex`, built with napi-rs.
//!
//! Placeholder: it only exposes [`binding_version`] so the build, packaging and
//! test pipeline can run end to end before the real binding lands.

use napi_derive::napi;

/// The version of this native binding (the workspace version), e.g. `"0.1.0"`.
///
/// Exposed to JavaScript as `bindingVersion()`.
#[napi]
pub fn binding_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

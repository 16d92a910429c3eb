//! Declares `cfg(supported)`: Linux, where the C library declares robust, process-shared
//! mutexes and the kernel keeps robust lists. Elsewhere the crate still builds, and every
//! constructor returns `Error::Unsupported`.
//!
//! The `force-unsupported` Cargo feature (testing only) selects that unsupported build on Linux
//! too, so that it is compiled and tested here; `--cfg robust_mutex_unsupported` in RUSTFLAGS
//! does the same (Cargo reports it to this script as `CARGO_CFG_ROBUST_MUTEX_UNSUPPORTED`).

fn main() {
    // Everything this script reads comes from Cargo's own environment (target, features,
    // cfgs), which already triggers a rerun when it changes; only the script itself remains.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(supported)");
    println!("cargo::rustc-check-cfg=cfg(robust_mutex_unsupported)");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let forced_off = std::env::var_os("CARGO_FEATURE_FORCE_UNSUPPORTED").is_some()
        || std::env::var_os("CARGO_CFG_ROBUST_MUTEX_UNSUPPORTED").is_some();
    if linux && !forced_off {
        println!("cargo::rustc-cfg=supported");
    }
}

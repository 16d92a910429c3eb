//! Declares `cfg(supported)`: Linux, where the C library declares robust, process-shared
//! mutexes and the kernel keeps robust lists. Elsewhere the crate still builds, and every
//! constructor returns `Error::Unsupported`.
//!
//! Declares `cfg(file_lock)`: the file-lock backend (`src/file_lock/`), the default on macOS
//! and FreeBSD, and selected on Linux (where it is built and tested) by the `file-lock-backend`
//! Cargo feature. Declares `cfg(named_mutex)`: the Windows backend (`src/named_mutex/`). At most
//! one of `supported`, `file_lock` and `named_mutex` is set.
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
    println!("cargo::rustc-check-cfg=cfg(file_lock)");
    println!("cargo::rustc-check-cfg=cfg(named_mutex)");
    // Testing only: the file-lock backend uses flock on Linux too (see src/file_lock/os.rs).
    println!("cargo::rustc-check-cfg=cfg(robust_mutex_flock)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let forced_off = std::env::var_os("CARGO_FEATURE_FORCE_UNSUPPORTED").is_some()
        || std::env::var_os("CARGO_CFG_ROBUST_MUTEX_UNSUPPORTED").is_some();
    let file_lock_feature = std::env::var_os("CARGO_FEATURE_FILE_LOCK_BACKEND").is_some();
    if forced_off {
        return;
    }
    match os.as_str() {
        "linux" if file_lock_feature => println!("cargo::rustc-cfg=file_lock"),
        "linux" => println!("cargo::rustc-cfg=supported"),
        "macos" | "freebsd" => println!("cargo::rustc-cfg=file_lock"),
        "windows" => println!("cargo::rustc-cfg=named_mutex"),
        _ => {}
    }
}

//! Declares `cfg(supported)`: Linux, where the C library declares robust, process-shared
//! mutexes and the kernel keeps robust lists. Elsewhere the crate still builds, and every
//! constructor returns `Error::Unsupported`. `--cfg robust_mutex_unsupported` forces the
//! unsupported build on Linux, so that it is compiled and tested here too.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(supported)");
    println!("cargo::rustc-check-cfg=cfg(robust_mutex_unsupported)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let forced_off = std::env::var("CARGO_ENCODED_RUSTFLAGS")
        .map(|flags| flags.contains("robust_mutex_unsupported"))
        .unwrap_or(false);
    if os == "linux" && !forced_off {
        println!("cargo::rustc-cfg=supported");
    }
}

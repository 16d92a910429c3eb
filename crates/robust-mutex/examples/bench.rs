//! Uncontended lock+unlock cost of the guard API next to a raw pthread pair on the same mapping.
//!
//! Run: `cargo run --release -p robust-mutex --example bench [iterations]`
//! Each figure is the median of 7 alternating trials; the ratio is guard / raw.
//!
//! With `--features file-lock-backend` it measures the file-lock backend (no raw pthread pair
//! there). `scripts/bench-backends.sh` runs both builds and prints their ratio.

use std::hint::black_box;
use std::time::Instant;

use robust_mutex::SharedMutex;

fn time_per_op(iterations: u64, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        op();
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn main() -> Result<(), robust_mutex::Error> {
    let iterations: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5_000_000);
    let dir = std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("robust-mutex-bench-{}", std::process::id()));
    let mutex = SharedMutex::open(&path)?;
    let guard_lock = || drop(black_box(mutex.lock().expect("uncontended")));
    let guard_try = || drop(black_box(mutex.try_lock().expect("no error").expect("free")));
    let backend = robust_mutex::__private::BACKEND;

    #[cfg(not(feature = "file-lock-backend"))]
    {
        let raw = robust_mutex::__private::raw_mutex_ptr(&mutex);
        let raw_pair = || {
            // SAFETY: `raw` points into the live mapping of `mutex`; this thread locks then unlocks.
            unsafe {
                black_box(libc::pthread_mutex_lock(raw));
                black_box(libc::pthread_mutex_unlock(raw));
            }
        };
        let (mut raw_ns, mut lock_ns, mut try_ns) = (vec![], vec![], vec![]);
        for _ in 0..7 {
            raw_ns.push(time_per_op(iterations, raw_pair));
            lock_ns.push(time_per_op(iterations, guard_lock));
            try_ns.push(time_per_op(iterations, guard_try));
        }
        let (raw_ns, lock_ns, try_ns) = (median(raw_ns), median(lock_ns), median(try_ns));
        println!(
            "uncontended lock+unlock, {backend} backend, {iterations} iterations x 7 trials (median), file {}",
            path.display()
        );
        println!("  raw pthread_mutex_lock/unlock   {raw_ns:7.2} ns/op   1.00x");
        println!("  SharedMutex::lock() + drop       {lock_ns:7.2} ns/op   {:.2}x raw", lock_ns / raw_ns);
        println!("  SharedMutex::try_lock() + drop   {try_ns:7.2} ns/op   {:.2}x raw", try_ns / raw_ns);
        println!("result backend={backend} lock_ns={lock_ns:.2} try_ns={try_ns:.2}");
    }
    #[cfg(feature = "file-lock-backend")]
    {
        let (mut lock_ns, mut try_ns) = (vec![], vec![]);
        for _ in 0..7 {
            lock_ns.push(time_per_op(iterations, guard_lock));
            try_ns.push(time_per_op(iterations, guard_try));
        }
        let (lock_ns, try_ns) = (median(lock_ns), median(try_ns));
        println!(
            "uncontended lock+unlock, {backend} backend, {iterations} iterations x 7 trials (median), file {}",
            path.display()
        );
        println!("  SharedMutex::lock() + drop       {lock_ns:7.2} ns/op");
        println!("  SharedMutex::try_lock() + drop   {try_ns:7.2} ns/op");
        println!("result backend={backend} lock_ns={lock_ns:.2} try_ns={try_ns:.2}");
    }
    drop(mutex);
    SharedMutex::destroy(&path)
}

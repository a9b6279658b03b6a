//! Process set-up for binaries that train or run models with candle on CPU: call
//! [`configure`] first thing in `main`. Libraries never change process state; this is for
//! binaries, and library users choose their own settings.
//!
//! # Thread count
//!
//! candle asks for its thread count on every matmul. Without `RAYON_NUM_THREADS` set, candle
//! 0.11 falls back to `num_cpus::get_physical()`, which parses `/proc/cpuinfo` on each call:
//! ~170 µs per LeNet-300-100 forward at batch 1, against 27 µs with the variable set
//! (`cargo bench -p dgating-bench --bench inference`, docs/PERFORMANCE.md). [`configure`] sets
//! it to `std::thread::available_parallelism()` when the user has not set it.
//!
//! # candle's elementwise worker pool
//!
//! candle 0.11 runs large elementwise ops (every gradient accumulation in backward, among
//! others) on its own "barrier pool" of `CANDLE_NUM_THREADS − 1` workers, next to the rayon pool
//! of `RAYON_NUM_THREADS` threads that runs the GEMMs. Both default to every core, so the
//! process oversubscribes the machine, and the pool workers spin up to 25 000 times after each
//! op, taking a core from the GEMM that runs next. On the 2-core machine (criterion
//! `train_step`, docs/PERFORMANCE.md), one thread for candle's elementwise ops made the step
//! faster and removed most of the D-Gating overhead: LeNet-300-100 b128 dense / D = 3 3.00 /
//! 3.18 ms → 2.59 / 2.13 ms; MLP 784-512-512-10 b256 12.99 / 13.08 ms → 10.68 / 10.45 ms.
//! [`configure`] sets `CANDLE_NUM_THREADS=1` when the user has not set it; GEMMs keep all
//! `RAYON_NUM_THREADS` threads.
//!
//! # Allocator
//!
//! candle allocates a fresh buffer for every op (≈ 10 MB and hundreds of allocations per
//! LeNet step). glibc serves buffers above its mmap threshold (128 KiB, adapting up to 32 MiB)
//! with `mmap` and returns them with `munmap`, so every weight-sized temporary page-faults
//! again on each step, and heap tops are trimmed back to the kernel. [`configure`] raises both
//! thresholds so freed buffers are reused. mimalloc was measured 2× slower on gated training
//! here (it zeroes a fresh 2 MiB huge page for each ~1 MB temporary).

/// Sets `RAYON_NUM_THREADS` (all cores) and `CANDLE_NUM_THREADS` (1), each only if unset, and
/// tunes glibc's allocator (mmap threshold 32 MiB, trim threshold 1 GiB, top pad 64 MiB; a
/// no-op on other platforms).
///
/// # Safety
///
/// Changes the process environment: call it before any other thread exists (first thing in
/// `main`), as required by [`std::env::set_var`].
pub unsafe fn configure() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        // SAFETY: the caller guarantees no other thread runs (see above).
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: as above.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called with valid constants
    // and the allocator stays consistent whatever it returns.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 * 1024 * 1024);
    }
}

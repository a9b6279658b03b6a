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
//! candle 0.11 runs large elementwise ops (e.g. every gradient accumulation in backward) on its
//! own "barrier pool" of `threads − 1` workers, which spin 25 000 times before parking after
//! each op. On a machine with few cores that spinning takes a core from the GEMM threads that
//! run next: on the 2-core machine, the MLP 784-512-512-10 training step (batch 256) took
//! 12.0 ms dense / 13.5 ms D = 3 with the default against 10.2 / 11.2 ms with a limit of 2000
//! (medians of 3 interleaved runs, `dgating-bench/examples/step_time`; docs/PERFORMANCE.md).
//! [`configure`] sets `CANDLE_BARRIER_POOL_SPIN_LIMIT=2000` when the user has not set it.
//!
//! # Allocator
//!
//! candle allocates a fresh buffer for every op (≈ 10 MB and hundreds of allocations per
//! LeNet step). glibc serves buffers above its mmap threshold (128 KiB, adapting up to 32 MiB)
//! with `mmap` and returns them with `munmap`, so every weight-sized temporary page-faults
//! again on each step, and heap tops are trimmed back to the kernel. [`configure`] raises both
//! thresholds so freed buffers are reused. mimalloc was measured 2× slower on gated training
//! here (it zeroes a fresh 2 MiB huge page for each ~1 MB temporary).

/// Sets `RAYON_NUM_THREADS` and `CANDLE_BARRIER_POOL_SPIN_LIMIT` (each only if unset) and
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
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        // SAFETY: as above.
        unsafe { std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "2000") };
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

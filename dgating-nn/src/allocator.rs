//! Allocator tuning for binaries that train with candle on CPU.
//!
//! candle allocates a fresh buffer for every op (≈ 10 MB and hundreds of allocations per
//! LeNet step). glibc serves buffers above its mmap threshold (128 KiB, adapting up to 32 MiB)
//! with `mmap` and returns them with `munmap`, so every weight-sized temporary page-faults
//! again on each step, and heap tops above 128 KiB are trimmed back to the kernel.
//! [`tune`] raises both thresholds so freed buffers are reused.
//!
//! Measured (LeNet-300-100, batch 128, forward + backward + SGD step, 2 cores,
//! `cargo run --release -p dgating-bench --example probe`): glibc defaults 7.7 ms dense /
//! 10.2 ms D=3; tuned glibc 6.8 / 10.7 ms; mimalloc 7.4 / 20 ms (mimalloc zeroes fresh
//! 2 MiB huge pages for these singleton allocations). Libraries never change the allocator:
//! this is for `main`, and library users choose their own.

/// Raises glibc's mmap threshold to its maximum (32 MiB), the trim threshold to 1 GiB and the
/// top pad to 64 MiB. A no-op on other platforms. Safe to call more than once.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called with valid constants
    // and the allocator stays consistent whatever it returns.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 * 1024 * 1024);
    }
}

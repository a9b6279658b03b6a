//! Tests written once and run on every device: [`test_on_devices!`](crate::test_on_devices).
//!
//! Every fused op of this crate runs its own CPU kernel for `f32`/`f64` on the CPU and falls
//! back to its composite reference (plain candle ops, which candle implements on every device)
//! elsewhere. The per-device tests compare the result on each device with the composite
//! reference computed on the CPU, so the CPU run checks the fused kernels and a CUDA run checks
//! the fallback path and the GPU's numbers, from the same test code.

use candle_core::Device;

/// The CUDA device that per-device tests use: device 0 when this build has CUDA support and a
/// GPU is present; `None` otherwise (the test is then reported as skipped, never failed).
pub fn cuda_for_tests() -> Option<Device> {
    if !candle_core::utils::cuda_is_available() {
        return None;
    }
    Device::new_cuda(0).ok()
}

/// Declares, for each function `f(&Device)` named, a module `f` with one `#[test]` per device:
/// `f::cpu` always, `f::cuda` in builds of the calling crate with its `cuda` feature (skipped
/// with a message when no GPU is present). Like candle's own `test_device!`.
///
/// ```ignore
/// fn forward_matches_reference(device: &Device) { /* ... */ }
/// dgating_nn::test_on_devices!(forward_matches_reference);
/// ```
#[macro_export]
macro_rules! test_on_devices {
    ($($f:ident),+ $(,)?) => {
        $(
            mod $f {
                #[test]
                fn cpu() {
                    super::$f(&candle_core::Device::Cpu);
                }

                #[cfg(feature = "cuda")]
                #[test]
                fn cuda() {
                    match $crate::devices::cuda_for_tests() {
                        Some(device) => super::$f(&device),
                        None => eprintln!("skipped {}: no CUDA device", stringify!($f)),
                    }
                }
            }
        )+
    };
}

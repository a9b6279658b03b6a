//! Small conversions between candle tensors and plain buffers.

use candle_core::{CpuStorage, DType, Device, Layout, Storage, Tensor};

use crate::error::Result;

/// All elements of `t`, row-major, widened to `f64`.
pub fn to_f64_vec(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// A tensor of `shape` and `dtype` from `f64` values.
pub fn from_f64(values: Vec<f64>, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?)
}

/// The `f32` elements behind a contiguous CPU tensor's storage, borrowed (no copy); `None` for
/// any other device, dtype or layout. Use with `Tensor::storage_and_layout`:
///
/// ```
/// # use candle_core::{Device, Tensor};
/// let t = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu)?;
/// let (storage, layout) = t.storage_and_layout();
/// assert_eq!(dgating_nn::tensor_util::cpu_f32(&storage, layout), Some(&[1f32, 2.0, 3.0, 4.0][..]));
/// let tt = t.t()?;
/// let (storage, layout) = tt.storage_and_layout();
/// assert_eq!(dgating_nn::tensor_util::cpu_f32(&storage, layout), None, "transposed: not contiguous");
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn cpu_f32<'a>(storage: &'a Storage, layout: &Layout) -> Option<&'a [f32]> {
    match storage {
        Storage::Cpu(CpuStorage::F32(v)) => layout.contiguous_offsets().map(|(s, e)| &v[s..e]),
        _ => None,
    }
}

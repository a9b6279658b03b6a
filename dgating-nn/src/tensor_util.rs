//! Small conversions between candle tensors and plain buffers.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// All elements of `t`, row-major, widened to `f64`.
pub fn to_f64_vec(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// A tensor of `shape` and `dtype` from `f64` values.
pub fn from_f64(values: Vec<f64>, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?)
}

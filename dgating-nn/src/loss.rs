//! Losses built from composite candle ops whose backward is known to be correct.
//!
//! candle's fused `softmax_last_dim` has no backward (docs/PERFORMANCE.md, "candle 0.11 facts"), so the log-softmax
//! here is written with `max`/`exp`/`sum`/`log`, which all differentiate.

use candle_core::{D, DType, Tensor};

use crate::error::{Error, Result};

/// `log softmax(x)` along the last axis, stabilized by the (detached) row maximum.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// One-hot `[batch, classes]` in `dtype`; rejects labels out of range.
pub fn one_hot(labels: &[u32], classes: usize, dtype: DType, device: &candle_core::Device) -> Result<Tensor> {
    let mut v = vec![0f32; labels.len() * classes];
    for (i, &y) in labels.iter().enumerate() {
        let y = y as usize;
        if y >= classes {
            return Err(Error::data("labels", format!("label {y} out of range for {classes} classes")));
        }
        v[i * classes + y] = 1.0;
    }
    Ok(Tensor::from_vec(v, (labels.len(), classes), device)?.to_dtype(dtype)?)
}

/// Mean cross-entropy of `logits [batch, classes]` against a one-hot target.
pub fn cross_entropy(logits: &Tensor, one_hot: &Tensor) -> Result<Tensor> {
    let batch = logits.dim(0)? as f64;
    Ok((log_softmax(logits)?.mul(one_hot)?.sum_all()? * (-1.0 / batch))?)
}

/// `(1/2n) Σ (pred − y)²` for `pred [batch, 1]` and `targets [batch]` — the same scaling as
/// `dgating_core::Loss::Squared`, so `λ` means the same in both crates.
pub fn half_mse(pred: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let r = pred.squeeze(1)?.sub(targets)?;
    let n = r.dim(0)? as f64;
    Ok((r.sqr()?.sum_all()? * (0.5 / n))?)
}

/// Number of rows whose arg-max equals the label.
pub fn correct(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    Ok(pred.iter().zip(labels).filter(|(p, y)| p == y).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn log_softmax_matches_formula_and_has_gradient() {
        let dev = Device::Cpu;
        let x = Var::new(&[[1.0f64, 2.0, 3.0], [0.5, -1.0, 4.0]], &dev).unwrap();
        let y = one_hot(&[2, 0], 3, DType::F64, &dev).unwrap();
        let loss = cross_entropy(x.as_tensor(), &y).unwrap();
        // Reference: -(log_softmax(x0)[2] + log_softmax(x1)[0]) / 2.
        let lse0 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        let lse1 = (0.5f64.exp() + (-1f64).exp() + 4f64.exp()).ln();
        let expect = -((3.0 - lse0) + (0.5 - lse1)) / 2.0;
        assert!((loss.to_scalar::<f64>().unwrap() - expect).abs() < 1e-12);
        // d loss / d x = (softmax(x) − y) / batch, checked against the formula.
        let g = loss.backward().unwrap().get(x.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
        let sm00 = 1f64.exp() / lse0.exp();
        assert!((g[0][0] - sm00 / 2.0).abs() < 1e-12);
        let sm10 = 0.5f64.exp() / lse1.exp();
        assert!((g[1][0] - (sm10 - 1.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn one_hot_rejects_out_of_range_labels() {
        assert!(one_hot(&[3], 3, DType::F32, &Device::Cpu).is_err());
    }
}

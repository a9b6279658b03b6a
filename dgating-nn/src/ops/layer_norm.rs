//! `layer_norm(x, w, b)` over the last axis, written with candle ops that all back-propagate.
//!
//! candle 0.11's `candle_nn::LayerNorm` (and `candle_nn::ops::layer_norm`) is a fused op built
//! without a backward: no gradient reaches the input or the parameters, silently. This one is
//! composite (mean, centring, variance, scale, shift), so gradients reach `x`, `w` and `b`;
//! `tests/lm_ops.rs` checks them against central finite differences in `f64` and the forward
//! against values from `tests/reference/lm_ops.py`.

use candle_core::{D, Tensor};

use crate::error::{Error, Result};

/// The `ε` of GPT-2 and nanoGPT.
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// `y = (x − mean(x)) / sqrt(var(x) + ε) · w + b` over the last axis of `x` (`var` is the biased,
/// population variance, as in PyTorch); `w`, `b`: `[C]` for `x [..., C]`.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let c = x.dim(D::Minus1)?;
    for (name, t) in [("weight", w), ("bias", b)] {
        if t.dims() != [c] {
            return Err(Error::Shape {
                op: format!("layer_norm {name}"),
                expected: vec![c],
                actual: t.dims().to_vec(),
            });
        }
    }
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(w)?.broadcast_add(b)?)
}

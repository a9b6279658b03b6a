//! Causal softmax and causal multi-head attention, written with candle ops that all
//! back-propagate.
//!
//! candle 0.11's `candle_nn::ops::softmax_last_dim` is fused without a backward; the composite
//! softmax here (max-shift, exp, sum, divide) back-propagates. The causal mask is added as
//! `−∞` above the diagonal before the softmax, so masked weights are exactly 0 and their
//! gradients too. `tests/lm_ops.rs` checks gradients against central finite differences in
//! `f64` and the forward against values from `tests/reference/lm_ops.py`.

use candle_core::{D, DType, Device, Tensor};

use crate::error::{Error, Result};

/// `[q_len, k_len]` additive mask: `0` where query `i` (absolute position `offset + i`) may see
/// key `j` (`j <= offset + i`), `−∞` elsewhere. `k_len = offset + q_len` for a KV cache.
pub fn causal_mask(q_len: usize, k_len: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    if k_len < q_len {
        return Err(Error::Config(format!("causal mask: {k_len} keys for {q_len} queries")));
    }
    let offset = k_len - q_len;
    let v: Vec<f32> = (0..q_len)
        .flat_map(|i| (0..k_len).map(move |j| if j <= offset + i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(v, (q_len, k_len), device)?.to_dtype(dtype)?)
}

/// Softmax over the last axis (`exp(x − max) / Σ exp(x − max)`), back-propagating.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// Causal softmax of scores `[..., q_len, k_len]`: [`softmax_last`] after [`causal_mask`].
pub fn causal_softmax(scores: &Tensor) -> Result<Tensor> {
    let (q, k) = (scores.dim(D::Minus2)?, scores.dim(D::Minus1)?);
    let mask = causal_mask(q, k, scores.dtype(), scores.device())?;
    softmax_last(&scores.broadcast_add(&mask)?)
}

/// Causal scaled dot-product attention: `softmax(q kᵀ / sqrt(hs) + mask) v` for
/// `q [B, H, Tq, hs]`, `k`, `v` `[B, H, Tk, hs]` with `Tk >= Tq` (the last `Tq` keys are the
/// queries' own positions; earlier ones come from a KV cache). Returns `[B, H, Tq, hs]`.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (b, h, tq, hs) = q.dims4()?;
    let (kb, kh, tk, khs) = k.dims4()?;
    if (kb, kh, khs) != (b, h, hs) || v.dims() != k.dims() || tk < tq {
        return Err(Error::Shape {
            op: "causal_attention k/v".into(),
            expected: vec![b, h, tk.max(tq), hs],
            actual: [k.dims(), v.dims()].concat(),
        });
    }
    let scores = (q.matmul(&k.t()?)? * (1.0 / (hs as f64).sqrt()))?;
    Ok(causal_softmax(&scores)?.matmul(v)?)
}

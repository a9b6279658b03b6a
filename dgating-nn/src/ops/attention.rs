//! Causal softmax and causal multi-head attention with backwards.
//!
//! candle 0.11's `candle_nn::ops::softmax_last_dim` is fused without a backward. Here the
//! scaled, causally masked softmax is one op on CPU (`f32`/`f64`): each row is scaled, masked
//! (keys after the query's position get weight exactly 0), shifted by its maximum,
//! exponentiated and normalized in one pass, and the backward,
//! `dx = scale · y ⊙ (dy − Σ dy ⊙ y)`, is one pass over the output and its gradient. On a GPT
//! training step this replaces the mask add, the scale, and the five composite softmax ops
//! (and their backwards) over the largest activation, the `[B, H, T, T]` scores.
//! [`causal_softmax_reference`] (mask added as `−∞`, max-shift, exp, sum, divide as candle ops)
//! is the reference and the path on other devices. `tests/lm_ops.rs` checks gradients against
//! central finite differences in `f64`, the forward against values from
//! `tests/reference/lm_ops.py`, and the fused op against the reference.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, D, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ops::storage::{Float, contiguous, unsupported};

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

/// Causal softmax of scores `[..., q_len, k_len]` (`k_len >= q_len`; query `i` sees keys
/// `j <= k_len − q_len + i`).
pub fn causal_softmax(scores: &Tensor) -> Result<Tensor> {
    causal_softmax_scaled(scores, 1.0)
}

/// `causal_softmax(scale · scores)`: one fused op on CPU for `f32`/`f64`, the composite
/// [`causal_softmax_reference`] elsewhere.
pub fn causal_softmax_scaled(scores: &Tensor, scale: f64) -> Result<Tensor> {
    let (q, k) = (scores.dim(D::Minus2)?, scores.dim(D::Minus1)?);
    if k < q {
        return Err(Error::Config(format!("causal softmax: {k} keys for {q} queries")));
    }
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(Error::Config(format!("causal softmax: the scale must be finite and > 0, got {scale}")));
    }
    if scores.device().is_cpu() && matches!(scores.dtype(), DType::F32 | DType::F64) {
        Ok(scores.contiguous()?.apply_op1(CausalSoftmax { q, k, scale })?)
    } else {
        causal_softmax_reference(scores, scale)
    }
}

/// `causal_softmax(scale · scores)` as candle ops: the mask of [`causal_mask`] added, then
/// [`softmax_last`].
pub fn causal_softmax_reference(scores: &Tensor, scale: f64) -> Result<Tensor> {
    let (q, k) = (scores.dim(D::Minus2)?, scores.dim(D::Minus1)?);
    let mask = causal_mask(q, k, scores.dtype(), scores.device())?;
    let s = if scale == 1.0 { scores.clone() } else { (scores * scale)? };
    softmax_last(&s.broadcast_add(&mask)?)
}

fn check_qkv(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<usize> {
    let (b, h, tq, hs) = q.dims4()?;
    let (kb, kh, tk, khs) = k.dims4()?;
    if (kb, kh, khs) != (b, h, hs) || v.dims() != k.dims() || tk < tq {
        return Err(Error::Shape {
            op: "causal_attention k/v".into(),
            expected: vec![b, h, tk.max(tq), hs],
            actual: [k.dims(), v.dims()].concat(),
        });
    }
    Ok(hs)
}

/// Causal scaled dot-product attention: `softmax(q kᵀ / sqrt(hs) + mask) v` for
/// `q [B, H, Tq, hs]`, `k`, `v` `[B, H, Tk, hs]` with `Tk >= Tq` (the last `Tq` keys are the
/// queries' own positions; earlier ones come from a KV cache). Returns `[B, H, Tq, hs]`.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let hs = check_qkv(q, k, v)?;
    let scores = q.matmul(&k.t()?)?;
    Ok(causal_softmax_scaled(&scores, 1.0 / (hs as f64).sqrt())?.matmul(v)?)
}

/// [`causal_attention`] with [`causal_softmax_reference`]: the composite reference.
pub fn causal_attention_reference(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let hs = check_qkv(q, k, v)?;
    let scores = q.matmul(&k.t()?)?;
    Ok(causal_softmax_reference(&scores, 1.0 / (hs as f64).sqrt())?.matmul(v)?)
}

/// Rows per parallel chunk.
const ROWS: usize = 64;

/// Row `r` of `[..., q, k]` belongs to query `r mod q`, which sees the first `k − q + r mod q + 1` keys.
fn visible(r: usize, q: usize, k: usize) -> usize {
    k - q + r % q + 1
}

fn softmax_forward<T: Float>(x: &[T], q: usize, k: usize, scale: f64) -> Vec<T> {
    let scale = T::from_f64(scale).unwrap_or_else(T::one);
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(ROWS * k).zip(x.par_chunks(ROWS * k)).enumerate().for_each(|(chunk, (o, x))| {
        for (i, (o, x)) in o.chunks_exact_mut(k).zip(x.chunks_exact(k)).enumerate() {
            let n = visible(chunk * ROWS + i, q, k);
            let (o, x) = (&mut o[..n], &x[..n]);
            let max = x.iter().fold(T::neg_infinity(), |m, &v| m.max(v)) * scale;
            let mut sum = T::zero();
            for (o, &v) in o.iter_mut().zip(x) {
                *o = (v * scale - max).exp();
                sum += *o;
            }
            let inv = sum.recip();
            o.iter_mut().for_each(|o| *o = *o * inv);
        }
    });
    out
}

fn softmax_backward<T: Float>(y: &[T], dy: &[T], q: usize, k: usize, scale: f64) -> Vec<T> {
    let scale = T::from_f64(scale).unwrap_or_else(T::one);
    let mut out = vec![T::zero(); y.len()];
    out.par_chunks_mut(ROWS * k).zip(y.par_chunks(ROWS * k).zip(dy.par_chunks(ROWS * k))).enumerate().for_each(
        |(chunk, (o, (y, dy)))| {
            for (i, ((o, y), dy)) in o.chunks_exact_mut(k).zip(y.chunks_exact(k)).zip(dy.chunks_exact(k)).enumerate() {
                let n = visible(chunk * ROWS + i, q, k);
                let dot = y[..n].iter().zip(&dy[..n]).fold(T::zero(), |s, (&y, &d)| s + y * d);
                for ((o, &y), &d) in o[..n].iter_mut().zip(&y[..n]).zip(&dy[..n]) {
                    *o = scale * y * (d - dot);
                }
            }
        },
    );
    out
}

/// `y = causal_softmax(scale · x)` over rows of `k` keys, `q` queries per `[q, k]` block.
#[derive(Debug, Clone, Copy)]
struct CausalSoftmax {
    q: usize,
    k: usize,
    scale: f64,
}

/// `(y, dy) → dx`.
#[derive(Debug, Clone, Copy)]
struct CausalSoftmaxBackward(CausalSoftmax);

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = "causal-softmax";
        let out = match s {
            CpuStorage::F32(x) => CpuStorage::F32(softmax_forward(contiguous(x, l, op)?, self.q, self.k, self.scale)),
            CpuStorage::F64(x) => CpuStorage::F64(softmax_forward(contiguous(x, l, op)?, self.q, self.k, self.scale)),
            _ => return Err(unsupported(op)),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(&grad.contiguous()?, &CausalSoftmaxBackward(*self))?))
    }
}

impl CustomOp2 for CausalSoftmaxBackward {
    fn name(&self) -> &'static str {
        "causal-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (op, CausalSoftmax { q, k, scale }) = ("causal-softmax-backward", self.0);
        let out = match (s1, s2) {
            (CpuStorage::F32(y), CpuStorage::F32(g)) => {
                CpuStorage::F32(softmax_backward(contiguous(y, l1, op)?, contiguous(g, l2, op)?, q, k, scale))
            }
            (CpuStorage::F64(y), CpuStorage::F64(g)) => {
                CpuStorage::F64(softmax_backward(contiguous(y, l1, op)?, contiguous(g, l2, op)?, q, k, scale))
            }
            _ => return Err(unsupported(op)),
        };
        Ok((out, l1.shape().clone()))
    }
}

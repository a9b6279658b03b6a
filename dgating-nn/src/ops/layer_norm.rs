//! `layer_norm(x, w, b)` over the last axis, as one op with a one-pass backward.
//!
//! candle 0.11's `candle_nn::LayerNorm` (and `candle_nn::ops::layer_norm`) is a fused op built
//! without a backward: no gradient reaches the input or the parameters, silently. The fused op
//! here computes each row's mean and variance and the output in one pass, and `dx`, `dw`, `db`
//! in one pass back (recomputing the row statistics rather than storing them); on a GPT training
//! step it replaces nine composite ops per layer norm, each with its own backward and gradient
//! accumulation. [`layer_norm_reference`] (mean, centring, variance, scale, shift as candle ops)
//! is used on other devices and dtypes; `tests/lm_ops.rs` checks both against central finite
//! differences in `f64`, against values from `tests/reference/lm_ops.py`, and against each other.

use candle_core::{CpuStorage, CustomOp3, D, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ops::storage::{Float, contiguous, unsupported};

/// The `ε` of GPT-2 and nanoGPT.
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// `y = (x − mean(x)) / sqrt(var(x) + ε) · w + b` over the last axis of `x` (`var` is the biased,
/// population variance, as in PyTorch); `w`, `b`: `[C]` for `x [..., C]`.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    check_params(x, w, b)?;
    let fused = x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64);
    if fused && w.dtype() == x.dtype() && b.dtype() == x.dtype() {
        Ok(x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, LayerNorm { eps })?)
    } else {
        layer_norm_reference(x, w, b, eps)
    }
}

fn check_params(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<()> {
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
    Ok(())
}

/// [`layer_norm`] as composite candle ops (mean, centring, variance, scale, shift): the
/// reference, and the path on other devices.
pub fn layer_norm_reference(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    check_params(x, w, b)?;
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(w)?.broadcast_add(b)?)
}

/// Rows per parallel chunk.
const ROWS: usize = 32;

/// `(mean, 1/sqrt(var + eps))` of one row.
fn row_stats<T: Float>(x: &[T], eps: f64) -> (T, T) {
    let n = T::from_usize(x.len()).unwrap_or_else(T::one);
    let mean = x.iter().copied().sum::<T>() / n;
    let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>() / n;
    (mean, (var + T::from_f64(eps).unwrap_or_else(T::zero)).sqrt().recip())
}

fn forward<T: Float>(x: &[T], w: &[T], b: &[T], eps: f64) -> Vec<T> {
    let c = w.len();
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(ROWS * c).zip(x.par_chunks(ROWS * c)).for_each(|(o, x)| {
        for (o, x) in o.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            let (mean, rstd) = row_stats(x, eps);
            for (((o, &x), &w), &b) in o.iter_mut().zip(x).zip(w).zip(b) {
                *o = (x - mean) * rstd * w + b;
            }
        }
    });
    out
}

/// `[dx | dw | db]` for `(x, w, dy)`: with `x̂ = (x − mean)·rstd` and `g = dy ⊙ w`,
/// `dx = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂))`, `dw = Σ_rows dy ⊙ x̂`, `db = Σ_rows dy`.
fn backward<T: Float>(x: &[T], w: &[T], dy: &[T], eps: f64) -> Vec<T> {
    let (n, c) = (x.len(), w.len());
    let mut out = vec![T::zero(); n + 2 * c];
    let (dx, dp) = out.split_at_mut(n);
    let inv_c = T::from_usize(c).unwrap_or_else(T::one).recip();
    let partial = dx
        .par_chunks_mut(ROWS * c)
        .zip(x.par_chunks(ROWS * c).zip(dy.par_chunks(ROWS * c)))
        .map(|(dx, (x, dy))| {
            let mut acc = vec![T::zero(); 2 * c];
            let mut xhat = vec![T::zero(); c];
            for ((dx, x), dy) in dx.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(dy.chunks_exact(c)) {
                let (mean, rstd) = row_stats(x, eps);
                let (mut sg, mut sgx) = (T::zero(), T::zero());
                for (((h, &x), &d), &w) in xhat.iter_mut().zip(x).zip(dy).zip(w) {
                    *h = (x - mean) * rstd;
                    sg += d * w;
                    sgx += d * w * *h;
                }
                let (mg, mgx) = (sg * inv_c, sgx * inv_c);
                let (dw, db) = acc.split_at_mut(c);
                for (j, ((dx, &d), &h)) in dx.iter_mut().zip(dy).zip(xhat.iter()).enumerate() {
                    *dx = rstd * (d * w[j] - mg - h * mgx);
                    dw[j] += d * h;
                    db[j] += d;
                }
            }
            acc
        })
        .reduce(
            || vec![T::zero(); 2 * c],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                a
            },
        );
    dp.copy_from_slice(&partial);
    out
}

/// `$f(a, b, c)` on the contiguous data of three CPU storages of one float dtype (`f32` or
/// `f64`), wrapped back into a storage of that dtype.
macro_rules! on_floats3 {
    ($op:expr, ($s1:expr, $l1:expr), ($s2:expr, $l2:expr), ($s3:expr, $l3:expr), |$a:ident, $b:ident, $c:ident| $f:expr) => {
        match ($s1, $s2, $s3) {
            (CpuStorage::F32($a), CpuStorage::F32($b), CpuStorage::F32($c)) => {
                let ($a, $b, $c) = (contiguous($a, $l1, $op)?, contiguous($b, $l2, $op)?, contiguous($c, $l3, $op)?);
                CpuStorage::F32($f)
            }
            (CpuStorage::F64($a), CpuStorage::F64($b), CpuStorage::F64($c)) => {
                let ($a, $b, $c) = (contiguous($a, $l1, $op)?, contiguous($b, $l2, $op)?, contiguous($c, $l3, $op)?);
                CpuStorage::F64($f)
            }
            _ => return Err(unsupported($op)),
        }
    };
}

/// `(x, w, b) → y`, the fused forward.
#[derive(Debug, Clone, Copy)]
struct LayerNorm {
    eps: f64,
}

/// `(x, w, dy) → [dx | dw | db]`.
#[derive(Debug, Clone, Copy)]
struct LayerNormBackward {
    eps: f64,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = "layer-norm";
        let out = on_floats3!(op, (s1, l1), (s2, l2), (s3, l3), |x, w, b| forward(x, w, b, self.eps));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c) = (x.elem_count(), w.elem_count());
        let packed = x.apply_op3_no_bwd(w, &grad.contiguous()?, &LayerNormBackward { eps: self.eps })?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        Ok((x.track_op().then_some(dx), Some(packed.narrow(0, n, c)?), Some(packed.narrow(0, n + c, c)?)))
    }
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = "layer-norm-backward";
        let out = on_floats3!(op, (s1, l1), (s2, l2), (s3, l3), |x, w, g| backward(x, w, g, self.eps));
        Ok((out, Shape::from(l1.shape().elem_count() + 2 * l2.shape().elem_count())))
    }
}

//! Batch normalization over the channels of NCHW activations, optionally followed by ReLU:
//! one pass for the statistics and one for the output forward, one pass for the parameter
//! gradients and one for the input gradient backward.
//!
//! Training mode normalizes with the batch statistics, `y = γ (x − μ_B) / √(σ²_B + ε) + β`
//! (biased `σ²_B`, as PyTorch), and hands `μ_B` and `σ²_B` back so the caller can update its
//! running statistics. Evaluation mode is the per-channel affine map `y = s x + t` with
//! `s = γ / √(σ²_run + ε)`, `t = β − s μ_run`, formed by plain (differentiable) tensor ops.
//!
//! With `x̂ = (x − μ) / √(σ² + ε)` and `N = batch · H · W`, the training-mode backward is
//! `dβ = Σ dy`, `dγ = Σ dy x̂`, `dx = γ / √(σ² + ε) · (dy − dβ / N − x̂ dγ / N)` (after ReLU,
//! `dy` is first masked by `y > 0`). `γ` and `β` travel as one `[2, C]` tensor so the op sees
//! both (the ReLU mask is recomputed from them).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ops::storage::{Float, contiguous};

/// Per-channel `(mean, biased variance)` of the last training-mode batch.
#[derive(Debug, Clone, Default)]
pub struct BatchStats {
    /// `μ_B` per channel.
    pub mean: Vec<f64>,
    /// Biased `σ²_B` per channel.
    pub var: Vec<f64>,
    /// Values per channel (`batch · H · W`).
    pub count: usize,
}

/// `(batch, channels, H·W)` of an NCHW (or `[batch, C]`) shape.
fn nch(shape: &Shape) -> candle_core::Result<(usize, usize, usize)> {
    let d = shape.dims();
    if d.len() < 2 {
        return Err(candle_core::Error::Msg(format!("batch norm needs [batch, channels, ..], got {d:?}")));
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

fn f<T: Float>(v: f64) -> T {
    T::from_f64(v).unwrap_or_else(T::nan)
}

/// `(Σ p(v), Σ q(v))` over `v` in `x` with 8 accumulator lanes (so the loop vectorizes),
/// widened to f64 at the end.
fn lane_sums<T: Float>(x: &[T], g: Option<&[T]>, f: impl Fn(T, T) -> (T, T)) -> (f64, f64) {
    let mut a = [T::zero(); 8];
    let mut b = [T::zero(); 8];
    let gs = g.unwrap_or(x);
    let (xc, gc) = (x.chunks_exact(8), gs.chunks_exact(8));
    let (xr, gr) = (xc.remainder(), gc.remainder());
    for (xs, gs) in xc.zip(gc) {
        for l in 0..8 {
            let (p, q) = f(xs[l], gs[l]);
            a[l] += p;
            b[l] += q;
        }
    }
    let (mut sa, mut sb) = (0.0f64, 0.0f64);
    for l in 0..8 {
        sa += a[l].to_f64().unwrap_or(f64::NAN);
        sb += b[l].to_f64().unwrap_or(f64::NAN);
    }
    for (&xv, &gv) in xr.iter().zip(gr) {
        let (p, q) = f(xv, gv);
        sa += p.to_f64().unwrap_or(f64::NAN);
        sb += q.to_f64().unwrap_or(f64::NAN);
    }
    (sa, sb)
}

/// Per-channel sums over the batch, samples in parallel: `f(channel, x_chunk, g_chunk)` for each
/// `H·W` chunk, added up in f64.
fn channel_sums<T: Float>(
    x: &[T],
    g: Option<&[T]>,
    (_, c, hw): (usize, usize, usize),
    f: impl Fn(usize, &[T], Option<&[T]>) -> (f64, f64) + Sync,
) -> Vec<(f64, f64)> {
    let plane = (c * hw).max(1);
    let per_sample = |(b, xs): (usize, &[T])| -> Vec<(f64, f64)> {
        (0..c).map(|ch| f(ch, &xs[ch * hw..(ch + 1) * hw], g.map(|g| &g[b * plane + ch * hw..][..hw]))).collect()
    };
    x.par_chunks(plane).enumerate().map(per_sample).reduce(
        || vec![(0.0, 0.0); c],
        |mut a, b| {
            a.iter_mut().zip(b).for_each(|(a, b)| {
                a.0 += b.0;
                a.1 += b.1;
            });
            a
        },
    )
}

/// `out = f(channel, x_chunk, g_chunk, out_chunk)` for each `H·W` chunk, samples in parallel.
fn channel_map<T: Float>(
    x: &[T],
    g: Option<&[T]>,
    (_, c, hw): (usize, usize, usize),
    f: impl Fn(usize, &[T], Option<&[T]>, &mut [T]) + Sync,
) -> Vec<T> {
    let plane = (c * hw).max(1);
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(plane).zip(x.par_chunks(plane)).enumerate().for_each(|(b, (os, xs))| {
        for ch in 0..c {
            let r = ch * hw..(ch + 1) * hw;
            f(ch, &xs[r.clone()], g.map(|g| &g[b * plane + ch * hw..][..hw]), &mut os[r]);
        }
    });
    out
}

/// `y = relu?(γ x̂ + β)` with batch statistics; returns `y` and the statistics.
fn bn_train_forward<T: Float>(
    x: &[T],
    gb: &[T],
    dims: (usize, usize, usize),
    eps: f64,
    relu: bool,
) -> (Vec<T>, BatchStats) {
    let (n, c, hw) = dims;
    let count = n * hw;
    let sums = channel_sums(x, None, dims, |_, xs, _| lane_sums(xs, None, |v, _| (v, v * v)));
    let mean: Vec<f64> = sums.iter().map(|s| s.0 / count as f64).collect();
    let var: Vec<f64> = sums.iter().zip(&mean).map(|(s, m)| (s.1 / count as f64 - m * m).max(0.0)).collect();
    let scale: Vec<T> = (0..c).map(|ch| f(gb[ch].to_f64().unwrap_or(f64::NAN) / (var[ch] + eps).sqrt())).collect();
    let shift: Vec<T> = (0..c).map(|ch| gb[c + ch] - scale[ch] * f(mean[ch])).collect();
    let y = channel_map(x, None, dims, |ch, xs, _, out| affine_chunk(xs, scale[ch], shift[ch], relu, out));
    (y, BatchStats { mean, var, count })
}

fn affine_chunk<T: Float>(xs: &[T], s: T, t: T, relu: bool, out: &mut [T]) {
    if relu {
        out.iter_mut().zip(xs).for_each(|(o, &v)| *o = (v * s + t).max(T::zero()));
    } else {
        out.iter_mut().zip(xs).for_each(|(o, &v)| *o = v * s + t);
    }
}

/// `(Σ g, Σ g·x)` of a chunk, `g` masked by `x·s + t > 0` after a ReLU.
fn masked_sums<T: Float>(xs: &[T], gs: &[T], s: T, t: T, relu: bool) -> (f64, f64) {
    if relu {
        lane_sums(xs, Some(gs), |v, g| {
            let g = if v * s + t > T::zero() { g } else { T::zero() };
            (g, g * v)
        })
    } else {
        lane_sums(xs, Some(gs), |v, g| (g, g * v))
    }
}

/// `dx = a·g + b·x + c` of a chunk, `g` masked as in [`masked_sums`].
#[allow(clippy::too_many_arguments)]
fn grad_chunk<T: Float>(xs: &[T], gs: &[T], (s, t): (T, T), (a, b, c): (T, T, T), relu: bool, out: &mut [T]) {
    if relu {
        for ((o, &v), &g) in out.iter_mut().zip(xs).zip(gs) {
            let g = if v * s + t > T::zero() { g } else { T::zero() };
            *o = a * g + b * v + c;
        }
    } else {
        for ((o, &v), &g) in out.iter_mut().zip(xs).zip(gs) {
            *o = a * g + b * v + c;
        }
    }
}

/// `[dx | dγ | dβ]` of the training-mode forward.
fn bn_train_backward<T: Float>(
    x: &[T],
    gb: &[T],
    dy: &[T],
    dims: (usize, usize, usize),
    stats: &BatchStats,
    eps: f64,
    relu: bool,
) -> Vec<T> {
    let (_, c, _) = dims;
    let n = stats.count as f64;
    let inv: Vec<f64> = stats.var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let gamma: Vec<f64> = gb[..c].iter().map(|g| g.to_f64().unwrap_or(f64::NAN)).collect();
    // The forward's affine map, for the ReLU mask.
    let st: Vec<(T, T)> = (0..c)
        .map(|ch| {
            let s = gamma[ch] * inv[ch];
            (f(s), gb[c + ch] - f::<T>(s * stats.mean[ch]))
        })
        .collect();
    let sums =
        channel_sums(x, Some(dy), dims, |ch, xs, gs| masked_sums(xs, gs.unwrap_or(xs), st[ch].0, st[ch].1, relu));
    let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
    let coef: Vec<(T, T, T)> = (0..c)
        .map(|ch| {
            let (sg, sgx) = sums[ch];
            let (m, iv, g) = (stats.mean[ch], inv[ch], gamma[ch]);
            let dg = iv * (sgx - m * sg);
            (dgamma[ch], dbeta[ch]) = (dg, sg);
            let (a, b) = (g * iv, -g * iv * iv * dg / n);
            (f(a), f(b), f(-g * iv * sg / n - b * m))
        })
        .collect();
    let mut out =
        channel_map(x, Some(dy), dims, |ch, xs, gs, o| grad_chunk(xs, gs.unwrap_or(xs), st[ch], coef[ch], relu, o));
    out.extend(dgamma.iter().map(|&v| f::<T>(v)));
    out.extend(dbeta.iter().map(|&v| f::<T>(v)));
    out
}

/// The training-mode node `(x, [γ; β]) → y`; the statistics it computed are left in `stats`.
#[derive(Debug, Clone)]
struct BatchNormTrain {
    eps: f64,
    relu: bool,
    stats: Arc<Mutex<BatchStats>>,
}

/// `(x, [γ; β], dy) → [dx | dγ | dβ]` with the forward's statistics.
#[derive(Debug, Clone)]
struct BatchNormTrainBackward {
    eps: f64,
    relu: bool,
    stats: BatchStats,
}

macro_rules! float_op {
    ($op:expr, $($s:expr),+ ; |$($v:ident),+| $body:expr) => {
        match ($($s),+) {
            ($(CpuStorage::F32($v)),+) => CpuStorage::F32($body),
            ($(CpuStorage::F64($v)),+) => CpuStorage::F64($body),
            _ => return Err(candle_core::Error::Msg(format!("{}: f32 or f64 arguments of one dtype", $op))),
        }
    };
}

fn check_params(lx: &Layout, lp: &Layout, op: &str) -> candle_core::Result<(usize, usize, usize)> {
    let dims = nch(lx.shape())?;
    if lp.shape().dims() != [2, dims.1] {
        return Err(candle_core::Error::Msg(format!(
            "{op}: parameters {:?} for {} channels (expected [2, {}])",
            lp.shape(),
            dims.1,
            dims.1
        )));
    }
    Ok(dims)
}

impl CustomOp2 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sp: &CpuStorage,
        lp: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = "batch-norm";
        let dims = check_params(lx, lp, op)?;
        let stats;
        let out = float_op!(op, sx, sp; |x, p| {
            let (y, s) = bn_train_forward(contiguous(x, lx, op)?, contiguous(p, lp, op)?, dims, self.eps, self.relu);
            stats = s;
            y
        });
        *self.stats.lock().map_err(|_| candle_core::Error::Msg("batch-norm: poisoned statistics".into()))? = stats;
        Ok((out, lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let stats =
            self.stats.lock().map_err(|_| candle_core::Error::Msg("batch-norm: poisoned statistics".into()))?.clone();
        let back = BatchNormTrainBackward { eps: self.eps, relu: self.relu, stats };
        unpack_grads(&x.apply_op3_no_bwd(p, &grad.contiguous()?, &back)?, x, p)
    }
}

impl CustomOp3 for BatchNormTrainBackward {
    fn name(&self) -> &'static str {
        "batch-norm-backward"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sp: &CpuStorage,
        lp: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = "batch-norm-backward";
        let dims = check_params(lx, lp, op)?;
        if lx.shape() != lg.shape() || self.stats.mean.len() != dims.1 {
            return Err(candle_core::Error::Msg(format!("{op}: gradient {:?} for input {:?}", lg.shape(), lx.shape())));
        }
        let out = float_op!(op, sx, sp, sg; |x, p, g| bn_train_backward(
            contiguous(x, lx, op)?, contiguous(p, lp, op)?, contiguous(g, lg, op)?, dims, &self.stats, self.eps, self.relu));
        Ok((out, Shape::from(lx.shape().elem_count() + 2 * dims.1)))
    }
}

/// Splits a backward op's packed `[dx | ds | dt]` into the gradient of `x` (when `x` is
/// tracked) and that of the `[2, C]` parameters `p`.
fn unpack_grads(packed: &Tensor, x: &Tensor, p: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
    let (n, c) = (x.elem_count(), p.dim(1)?);
    let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
    let dp = packed.narrow(0, n, 2 * c)?.reshape((2, c))?;
    Ok((x.track_op().then_some(dx), Some(dp)))
}

/// `y = relu?(s ⊙ x + t)` per channel, `(x, [s; t])`, with its backward.
#[derive(Debug, Clone, Copy)]
struct ChannelAffine {
    relu: bool,
}

/// `(x, [s; t], dy) → [dx | ds | dt]`.
#[derive(Debug, Clone, Copy)]
struct ChannelAffineBackward {
    relu: bool,
}

fn affine_forward<T: Float>(x: &[T], st: &[T], dims: (usize, usize, usize), relu: bool) -> Vec<T> {
    let c = dims.1;
    channel_map(x, None, dims, |ch, xs, _, out| affine_chunk(xs, st[ch], st[c + ch], relu, out))
}

fn affine_backward<T: Float>(x: &[T], st: &[T], dy: &[T], dims: (usize, usize, usize), relu: bool) -> Vec<T> {
    let c = dims.1;
    let sums =
        channel_sums(x, Some(dy), dims, |ch, xs, gs| masked_sums(xs, gs.unwrap_or(xs), st[ch], st[c + ch], relu));
    let zero = T::zero();
    let mut out = channel_map(x, Some(dy), dims, |ch, xs, gs, o| {
        grad_chunk(xs, gs.unwrap_or(xs), (st[ch], st[c + ch]), (st[ch], zero, zero), relu, o)
    });
    out.extend(sums.iter().map(|s| f::<T>(s.1)));
    out.extend(sums.iter().map(|s| f::<T>(s.0)));
    out
}

impl CustomOp2 for ChannelAffine {
    fn name(&self) -> &'static str {
        "channel-affine"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sp: &CpuStorage,
        lp: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = "channel-affine";
        let dims = check_params(lx, lp, op)?;
        let out = float_op!(op, sx, sp; |x, p| affine_forward(contiguous(x, lx, op)?, contiguous(p, lp, op)?, dims, self.relu));
        Ok((out, lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        unpack_grads(&x.apply_op3_no_bwd(p, &grad.contiguous()?, &ChannelAffineBackward { relu: self.relu })?, x, p)
    }
}

impl CustomOp3 for ChannelAffineBackward {
    fn name(&self) -> &'static str {
        "channel-affine-backward"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sp: &CpuStorage,
        lp: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = "channel-affine-backward";
        let dims = check_params(lx, lp, op)?;
        if lx.shape() != lg.shape() {
            return Err(candle_core::Error::Msg(format!("{op}: gradient {:?} for input {:?}", lg.shape(), lx.shape())));
        }
        let out = float_op!(op, sx, sp, sg; |x, p, g| affine_backward(
            contiguous(x, lx, op)?, contiguous(p, lp, op)?, contiguous(g, lg, op)?, dims, self.relu));
        Ok((out, Shape::from(lx.shape().elem_count() + 2 * dims.1)))
    }
}

fn fused(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

fn check_shapes(x: &Tensor, gamma: &Tensor, beta: &Tensor, name: &str) -> Result<usize> {
    if x.rank() < 2 {
        return Err(Error::Model {
            what: name.into(),
            message: format!("batch norm needs [batch, channels, ..], got {:?}", x.dims()),
        });
    }
    let c = x.dim(1)?;
    for (what, t) in [("weight", gamma), ("bias", beta)] {
        if t.dims() != [c] {
            return Err(Error::Shape { op: format!("{name}: {what}"), expected: vec![c], actual: t.dims().to_vec() });
        }
    }
    Ok(c)
}

/// Training-mode batch norm (batch statistics), followed by ReLU if `relu`: `x` is
/// `[batch, C, ..]`, `gamma` and `beta` are `[C]`. Returns the output and the batch statistics
/// (for the running averages). Fused on CPU for `f32`/`f64`, [`batch_norm_train_reference`]
/// elsewhere.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
    name: &str,
) -> Result<(Tensor, BatchStats)> {
    let c = check_shapes(x, gamma, beta, name)?;
    let count = x.elem_count() / c.max(1);
    if count < 2 {
        return Err(Error::Model {
            what: name.into(),
            message: format!("training-mode batch norm needs >= 2 values per channel, got input {:?}", x.dims()),
        });
    }
    if !fused(x) || gamma.dtype() != x.dtype() || beta.dtype() != x.dtype() {
        let (y, stats) = batch_norm_train_reference(x, gamma, beta, eps)?;
        return Ok((if relu { y.relu()? } else { y }, stats));
    }
    let op = BatchNormTrain { eps, relu, stats: Arc::default() };
    let stats = op.stats.clone();
    let gb = Tensor::stack(&[gamma, beta], 0)?;
    let y = x.contiguous()?.apply_op2(&gb, op)?;
    let stats =
        stats.lock().map_err(|_| Error::Model { what: name.into(), message: "poisoned statistics".into() })?.clone();
    Ok((y, stats))
}

/// The composite reference of [`batch_norm_train`] (plain candle ops, no ReLU).
pub fn batch_norm_train_reference(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<(Tensor, BatchStats)> {
    let (n, c) = (x.dim(0)?, x.dim(1)?);
    let x3 = x.reshape((n, c, ()))?;
    let count = x3.dim(2)? * n;
    let mean = x3.sum_keepdim(2)?.sum_keepdim(0)?.affine(1.0 / count as f64, 0.0)?;
    let centered = x3.broadcast_sub(&mean)?;
    let var = centered.sqr()?.sum_keepdim(2)?.sum_keepdim(0)?.affine(1.0 / count as f64, 0.0)?;
    let y = centered.broadcast_div(&(var.clone() + eps)?.sqrt()?)?;
    let y = y.broadcast_mul(&gamma.reshape((1, c, 1))?)?.broadcast_add(&beta.reshape((1, c, 1))?)?;
    let stats = BatchStats {
        mean: mean.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?,
        var: var.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?,
        count,
    };
    Ok((y.reshape(x.shape())?, stats))
}

/// Evaluation-mode batch norm with running statistics, followed by ReLU if `relu`:
/// `y = s x + t`, `s = γ / √(var + ε)`, `t = β − s · mean` (differentiable in `x`, `γ`, `β`).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    relu: bool,
    name: &str,
) -> Result<Tensor> {
    let c = check_shapes(x, gamma, beta, name)?;
    check_shapes(x, running_mean, running_var, name)?;
    let s = gamma.div(&(running_var.to_dtype(gamma.dtype())? + eps)?.sqrt()?)?;
    let t = beta.sub(&s.mul(&running_mean.to_dtype(gamma.dtype())?)?)?;
    channel_affine(x, &s, &t, relu, c)
}

/// `relu?(s ⊙ x + t)` per channel (`s`, `t`: `[C]`).
pub fn channel_affine(x: &Tensor, s: &Tensor, t: &Tensor, relu: bool, c: usize) -> Result<Tensor> {
    if !fused(x) || s.dtype() != x.dtype() {
        let shape: Vec<usize> = (0..x.rank()).map(|d| if d == 1 { c } else { 1 }).collect();
        let y = x.broadcast_mul(&s.reshape(shape.as_slice())?)?.broadcast_add(&t.reshape(shape.as_slice())?)?;
        return Ok(if relu { y.relu()? } else { y });
    }
    let st = Tensor::stack(&[s, t], 0)?;
    Ok(x.contiguous()?.apply_op2(&st, ChannelAffine { relu })?)
}

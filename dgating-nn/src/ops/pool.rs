//! Max and average pooling over NCHW activations (window `k`, stride `s`, no padding, floor
//! of partial windows — PyTorch's defaults), each with a one-pass backward, and global
//! average pooling and flatten as composite (differentiable) candle ops.
//!
//! The max-pool backward routes `dy` to the first maximum of each window (PyTorch's choice on
//! ties), recomputed from `x` rather than stored.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ops::storage::{Float, contiguous, filled};

/// Which pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Max,
    Avg,
}

#[derive(Debug, Clone, Copy)]
struct Pool {
    kind: Kind,
    k: usize,
    s: usize,
}

/// `(x, dy) → dx` for max pooling; `(dy) → dx` for average pooling (input size carried).
#[derive(Debug, Clone, Copy)]
struct PoolBackward {
    pool: Pool,
    h: usize,
    w: usize,
}

struct Dims {
    planes: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
}

fn dims(shape: &Shape, p: Pool) -> candle_core::Result<(usize, usize, Dims)> {
    let (b, c, h, w) = shape.dims4()?;
    if p.k == 0 || p.s == 0 || h < p.k || w < p.k {
        return Err(candle_core::Error::Msg(format!("pool: window {} stride {} on {h}x{w}", p.k, p.s)));
    }
    Ok((b, c, Dims { planes: b * c, h, w, ho: (h - p.k) / p.s + 1, wo: (w - p.k) / p.s + 1 }))
}

/// The running maximum with NaN propagating, as in PyTorch.
#[inline(always)]
fn nan_max<T: Float>(acc: T, v: T) -> T {
    if v > acc || v.is_nan() { v } else { acc }
}

/// Planes per parallel task: enough work (~16k inputs) to outweigh rayon's scheduling.
fn planes_per_task(d: &Dims) -> usize {
    (16_384 / (d.h * d.w).max(1)).max(1)
}

fn pool_forward<T: Float>(x: &[T], d: &Dims, p: Pool) -> Vec<T> {
    let area = T::from_usize(p.k * p.k).unwrap_or_else(T::one);
    let (ip, op) = (d.h * d.w, d.ho * d.wo);
    let per = planes_per_task(d);
    let body = |y: &mut [std::mem::MaybeUninit<T>]| {
        y.par_chunks_mut(per * op).zip(x.par_chunks(per * ip)).for_each(|(ys, xs)| {
            for (yp, xp) in ys.chunks_exact_mut(op).zip(xs.chunks_exact(ip)) {
                if p.kind == Kind::Max && p.k == 2 && p.s == 2 {
                    // The 2x2 / stride-2 max pool of VGG and LeNet: two input rows per output row,
                    // the same visiting order (and so the same NaN and tie results) as below.
                    for (oy, out) in yp.chunks_exact_mut(d.wo).enumerate() {
                        let r0 = &xp[2 * oy * d.w..][..2 * d.wo];
                        let r1 = &xp[(2 * oy + 1) * d.w..][..2 * d.wo];
                        for ((o, a), b) in out.iter_mut().zip(r0.chunks_exact(2)).zip(r1.chunks_exact(2)) {
                            let m = nan_max(nan_max(nan_max(nan_max(T::neg_infinity(), a[0]), a[1]), b[0]), b[1]);
                            o.write(m);
                        }
                    }
                    continue;
                }
                for oy in 0..d.ho {
                    for ox in 0..d.wo {
                        let mut acc = if p.kind == Kind::Max { T::neg_infinity() } else { T::zero() };
                        for i in 0..p.k {
                            let row = &xp[(oy * p.s + i) * d.w + ox * p.s..][..p.k];
                            for &v in row {
                                match p.kind {
                                    Kind::Max => acc = nan_max(acc, v),
                                    Kind::Avg => acc += v,
                                }
                            }
                        }
                        yp[oy * d.wo + ox].write(if p.kind == Kind::Avg { acc / area } else { acc });
                    }
                }
            }
        });
    };
    // SAFETY: the chunks cover every plane, and every output element of a plane is written
    // (the fast path writes `ho` rows of `wo`; the general path every `(oy, ox)`).
    unsafe { filled(d.planes * op, body) }
}

fn pool_backward<T: Float>(x: Option<&[T]>, dy: &[T], d: &Dims, p: Pool) -> Vec<T> {
    let mut dx = vec![T::zero(); d.planes * d.h * d.w];
    let area = T::from_usize(p.k * p.k).unwrap_or_else(T::one);
    dx.par_chunks_mut(d.h * d.w).zip(dy.par_chunks(d.ho * d.wo)).enumerate().for_each(|(n, (dxp, dyp))| {
        for oy in 0..d.ho {
            for ox in 0..d.wo {
                let g = dyp[oy * d.wo + ox];
                let at = |i: usize, j: usize| (oy * p.s + i) * d.w + ox * p.s + j;
                match (p.kind, x) {
                    (Kind::Max, Some(x)) => {
                        let xp = &x[n * d.h * d.w..(n + 1) * d.h * d.w];
                        let mut best = at(0, 0);
                        for i in 0..p.k {
                            for j in 0..p.k {
                                let v = xp[at(i, j)];
                                if v > xp[best] || (v.is_nan() && !xp[best].is_nan()) {
                                    best = at(i, j);
                                }
                            }
                        }
                        dxp[best] += g;
                    }
                    _ => {
                        for i in 0..p.k {
                            for j in 0..p.k {
                                dxp[at(i, j)] += g / area;
                            }
                        }
                    }
                }
            }
        }
    });
    dx
}

impl CustomOp1 for Pool {
    fn name(&self) -> &'static str {
        "pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = "pool2d";
        let (b, c, d) = dims(l.shape(), *self)?;
        let out = match s {
            CpuStorage::F32(x) => CpuStorage::F32(pool_forward(contiguous(x, l, op)?, &d, *self)),
            CpuStorage::F64(x) => CpuStorage::F64(pool_forward(contiguous(x, l, op)?, &d, *self)),
            _ => return Err(candle_core::Error::UnsupportedDTypeForOp(s.dtype(), op)),
        };
        Ok((out, Shape::from((b, c, d.ho, d.wo))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (_, _, h, w) = x.dims4()?;
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &PoolBackward { pool: *self, h, w })?))
    }
}

impl CustomOp2 for PoolBackward {
    fn name(&self) -> &'static str {
        "pool2d-backward"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = "pool2d-backward";
        let (b, c, d) = dims(lx.shape(), self.pool)?;
        if lg.shape().dims() != [b, c, d.ho, d.wo] || (d.h, d.w) != (self.h, self.w) {
            return Err(candle_core::Error::Msg(format!("{op}: gradient {:?} for input {:?}", lg.shape(), lx.shape())));
        }
        let max = self.pool.kind == Kind::Max;
        let out = match (sx, sg) {
            (CpuStorage::F32(x), CpuStorage::F32(g)) => CpuStorage::F32(pool_backward(
                if max { Some(contiguous(x, lx, op)?) } else { None },
                contiguous(g, lg, op)?,
                &d,
                self.pool,
            )),
            (CpuStorage::F64(x), CpuStorage::F64(g)) => CpuStorage::F64(pool_backward(
                if max { Some(contiguous(x, lx, op)?) } else { None },
                contiguous(g, lg, op)?,
                &d,
                self.pool,
            )),
            _ => return Err(candle_core::Error::UnsupportedDTypeForOp(sx.dtype(), op)),
        };
        Ok((out, lx.shape().clone()))
    }
}

fn pool(x: &Tensor, kind: Kind, k: usize, s: usize, name: &str) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4().map_err(|_| Error::Model {
        what: name.into(),
        message: format!("pooling needs [batch, channels, height, width], got {:?}", x.dims()),
    })?;
    if k == 0 || s == 0 || h < k || w < k {
        return Err(Error::Model {
            what: name.into(),
            message: format!("a {k}x{k} window (stride {s}) does not fit {h}x{w}"),
        });
    }
    if !x.device().is_cpu() || !matches!(x.dtype(), DType::F32 | DType::F64) {
        return match kind {
            Kind::Max if k == s => max_pool2d_reference(x, k),
            Kind::Avg if k == s => avg_pool2d_reference(x, k),
            // candle refuses the backward of these (k != s) with an error, never silently.
            Kind::Max => Ok(x.max_pool2d_with_stride(k, s)?),
            Kind::Avg => Ok(x.avg_pool2d_with_stride(k, s)?),
        };
    }
    Ok(x.contiguous()?.apply_op1(Pool { kind, k, s })?)
}

/// `[b, c, h, w]` → `[b, c, h/k, w/k, k·k]`: every non-overlapping `k × k` window as a last
/// axis (partial windows dropped), by narrow, reshape and permute (all differentiable).
fn windows(x: &Tensor, k: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (ho, wo) = (h / k, w / k);
    let x = x.narrow(2, 0, ho * k)?.narrow(3, 0, wo * k)?;
    Ok(x.reshape((b, c, ho, k, wo, k))?.permute((0, 1, 2, 4, 3, 5))?.reshape((b, c, ho, wo, k * k))?)
}

/// Max pooling with window = stride `k` as back-propagating candle ops (the fallback off the
/// CPU and the reference of the fused op). Not candle's `max_pool2d`: its backward (candle
/// 0.11) multiplies the gradient by the share of maxima in each window (`1/k²` for a single
/// maximum) instead of dividing by their count, so gradients come out `k²` times too small.
pub fn max_pool2d_reference(x: &Tensor, k: usize) -> Result<Tensor> {
    Ok(windows(x, k)?.max(4)?)
}

/// Average pooling with window = stride `k` as back-propagating candle ops (the fallback off
/// the CPU and the reference of the fused op); exact also when `k` does not divide the size.
pub fn avg_pool2d_reference(x: &Tensor, k: usize) -> Result<Tensor> {
    Ok(windows(x, k)?.mean(4)?)
}

/// `k × k` max pooling with stride `s` over `[batch, C, H, W]`.
pub fn max_pool2d(x: &Tensor, k: usize, s: usize, name: &str) -> Result<Tensor> {
    pool(x, Kind::Max, k, s, name)
}

/// `k × k` average pooling with stride `s` over `[batch, C, H, W]`.
pub fn avg_pool2d(x: &Tensor, k: usize, s: usize, name: &str) -> Result<Tensor> {
    pool(x, Kind::Avg, k, s, name)
}

/// The mean over all positions of each channel: `[batch, C, H, W] → [batch, C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    Ok(x.reshape((b, c, h * w))?.mean(2)?)
}

/// `[batch, ..] → [batch, product of the rest]` (row-major: channel-major for NCHW).
pub fn flatten(x: &Tensor) -> Result<Tensor> {
    let b = x.dim(0)?;
    Ok(x.reshape((b, x.elem_count() / b.max(1)))?)
}

//! In-place optimizer updates: one pass over each buffer, no temporaries.
//!
//! A tensor-op SGD-momentum step with weight decay makes six weight-sized temporaries per
//! parameter (`θ·wd`, `g + ·`, `v·μ`, `· + g`, `v·lr`, `θ − ·`); these ops write the momentum
//! buffer and the parameter in place instead (docs/PERFORMANCE.md, "candle 0.11 facts"). `Optimizer` keeps the
//! tensor-op version as its reference and tests that both agree.

use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Tensor};

use crate::error::Result;
use crate::ops::storage::{contiguous, contiguous_mut, unsupported};

/// `dst ← a·dst + b·x + c·y` element-wise (`dst`, `x`, `y` of one shape).
#[derive(Debug)]
struct Axpby2 {
    a: f64,
    b: f64,
    c: f64,
    /// Cleared when a result is NaN or infinite (checked in the same pass, for free: the
    /// trainer reports the step where a parameter first went bad).
    finite: std::cell::Cell<bool>,
}

impl InplaceOp3 for Axpby2 {
    fn name(&self) -> &'static str {
        "axpby2"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dl: &Layout,
        x: &CpuStorage,
        xl: &Layout,
        y: &CpuStorage,
        yl: &Layout,
    ) -> candle_core::Result<()> {
        macro_rules! run {
            ($d:ident, $x:ident, $y:ident, $t:ty) => {{
                let d = contiguous_mut($d, dl, "axpby2")?;
                let (x, y) = (contiguous($x, xl, "axpby2")?, contiguous($y, yl, "axpby2")?);
                let (a, b, c) = (self.a as $t, self.b as $t, self.c as $t);
                let mut finite = true;
                for ((d, &x), &y) in d.iter_mut().zip(x).zip(y) {
                    let v = a * *d + b * x + c * y;
                    finite &= v.is_finite();
                    *d = v;
                }
                self.finite.set(finite);
            }};
        }
        match (dst, x, y) {
            (CpuStorage::F32(d), CpuStorage::F32(x), CpuStorage::F32(y)) => run!(d, x, y, f32),
            (CpuStorage::F64(d), CpuStorage::F64(x), CpuStorage::F64(y)) => run!(d, x, y, f64),
            _ => return Err(unsupported("axpby2")),
        }
        Ok(())
    }
}

/// Adam's moment updates and parameter step, in place on `θ` given `m` and `v`:
/// `θ ← θ·(1 − lr·wd) − lr · m̂ / (sqrt(v̂) + ε)` with bias corrections `m̂ = m/c1`, `v̂ = v/c2`.
#[derive(Debug)]
struct AdamStep {
    lr: f64,
    decay: f64,
    c1: f64,
    c2: f64,
    eps: f64,
    finite: std::cell::Cell<bool>,
}

impl InplaceOp3 for AdamStep {
    fn name(&self) -> &'static str {
        "adam-step"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dl: &Layout,
        m: &CpuStorage,
        ml: &Layout,
        v: &CpuStorage,
        vl: &Layout,
    ) -> candle_core::Result<()> {
        macro_rules! run {
            ($d:ident, $m:ident, $v:ident, $t:ty) => {{
                let d = contiguous_mut($d, dl, "adam-step")?;
                let (m, v) = (contiguous($m, ml, "adam-step")?, contiguous($v, vl, "adam-step")?);
                let (lr, keep, c1, c2, eps) =
                    (self.lr as $t, (1.0 - self.lr * self.decay) as $t, self.c1 as $t, self.c2 as $t, self.eps as $t);
                let mut finite = true;
                for ((d, &m), &v) in d.iter_mut().zip(m).zip(v) {
                    let x = *d * keep - lr * (m / c1) / ((v / c2).sqrt() + eps);
                    finite &= x.is_finite();
                    *d = x;
                }
                self.finite.set(finite);
            }};
        }
        match (dst, m, v) {
            (CpuStorage::F32(d), CpuStorage::F32(m), CpuStorage::F32(v)) => run!(d, m, v, f32),
            (CpuStorage::F64(d), CpuStorage::F64(m), CpuStorage::F64(v)) => run!(d, m, v, f64),
            _ => return Err(unsupported("adam-step")),
        }
        Ok(())
    }
}

/// `v ← β·v + (1 − β)·g²` in place.
#[derive(Debug, Clone, Copy)]
struct SecondMoment {
    beta: f64,
}

impl InplaceOp2 for SecondMoment {
    fn name(&self) -> &'static str {
        "second-moment"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dl: &Layout, g: &CpuStorage, gl: &Layout) -> candle_core::Result<()> {
        macro_rules! run {
            ($d:ident, $g:ident, $t:ty) => {{
                let d = contiguous_mut($d, dl, "second-moment")?;
                let g = contiguous($g, gl, "second-moment")?;
                let (b, a) = (self.beta as $t, (1.0 - self.beta) as $t);
                for (d, &g) in d.iter_mut().zip(g) {
                    *d = b * *d + a * g * g;
                }
            }};
        }
        match (dst, g) {
            (CpuStorage::F32(d), CpuStorage::F32(g)) => run!(d, g, f32),
            (CpuStorage::F64(d), CpuStorage::F64(g)) => run!(d, g, f64),
            _ => return Err(unsupported("second-moment")),
        }
        Ok(())
    }
}

/// Whether the fused updates can run on these tensors (CPU, f32/f64).
pub fn fusable(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// `dst ← a·dst + b·x + c·y` in place (`x`, `y` made contiguous if needed); returns whether
/// every result is finite.
pub fn axpby2(dst: &Tensor, a: f64, x: &Tensor, b: f64, y: &Tensor, c: f64) -> Result<bool> {
    let op = Axpby2 { a, b, c, finite: std::cell::Cell::new(true) };
    dst.inplace_op3(&x.contiguous()?, &y.contiguous()?, &op)?;
    Ok(op.finite.get())
}

/// `v ← β v + (1 − β) g²` in place.
pub fn second_moment(v: &Tensor, g: &Tensor, beta: f64) -> Result<()> {
    Ok(v.inplace_op2(&g.contiguous()?, &SecondMoment { beta })?)
}

/// The AdamW parameter step in place: `θ ← θ·(1 − lr·wd) − lr · (m/c1) / (sqrt(v/c2) + ε)`.
#[allow(clippy::too_many_arguments)]
pub fn adam_step(
    theta: &Tensor,
    m: &Tensor,
    v: &Tensor,
    lr: f64,
    decay: f64,
    c1: f64,
    c2: f64,
    eps: f64,
) -> Result<bool> {
    let op = AdamStep { lr, decay, c1, c2, eps, finite: std::cell::Cell::new(true) };
    theta.inplace_op3(m, v, &op)?;
    Ok(op.finite.get())
}

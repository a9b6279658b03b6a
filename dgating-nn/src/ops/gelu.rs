//! `gelu(x)`: GPT-2's tanh GELU, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, as one op with a
//! one-pass backward.
//!
//! candle's own `Tensor::gelu` is correct but slow on CPU: its backward is a dozen tensor ops
//! with `powf` and `tanh` over the whole activation, which a profile of a GPT training step
//! showed taking about a third of the step (`powf` 13%, `expm1f` 11%, `tanhf` 7%). Here the
//! forward and the backward are each one parallel pass. [`gelu_reference`] (candle's op) is
//! the slow reference; `tests/lm_ops.rs` checks they agree and checks the gradient against
//! finite differences.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::Result;
use crate::ops::storage::{contiguous, unsupported};

const K0: f64 = 0.797_884_560_802_865_4; // sqrt(2/pi)
const K1: f64 = 0.044715;
/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;

/// `tanh(z)` in `f32` without libm: `(e − 1)/(e + 1)` with `e = exp(2z)` from a degree-7
/// polynomial of `2^f` and the exponent put in by bits; branch-free, so loops over it vectorize.
/// Absolute error below 2e-7 (checked against `f64::tanh` in the tests of this module).
#[inline(always)]
fn tanh_f32(z: f32) -> f32 {
    let z = z.clamp(-9.0, 9.0);
    let t = 2.0 * z * std::f32::consts::LOG2_E;
    // Round to nearest by the magic-number trick: adding 1.5·2²³ pushes the fraction out of the
    // mantissa (|t| <= 26 here), subtracting it back leaves the rounded value. `round` and
    // `round_ties_even` are libm calls per element on the x86-64 baseline (no SSE4.1 `roundps`:
    // `rintf` was 18% of a GPT step), which also keeps the loop from vectorizing; these are two
    // vector adds. Either keeps |t − n| <= 1/2, which is all the polynomial needs.
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23
    let n = (t + ROUND) - ROUND;
    let f = (t - n) * std::f32::consts::LN_2;
    // exp(f) for |f| <= ln2/2.
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0 + f * (1.0 / 5040.0)))))));
    let e = p * f32::from_bits(((n as i32 + 127) as u32) << 23);
    (e - 1.0) / (e + 1.0)
}

trait Tanh {
    fn fast_tanh(self) -> Self;
}

impl Tanh for f32 {
    #[inline(always)]
    fn fast_tanh(self) -> f32 {
        tanh_f32(self)
    }
}

impl Tanh for f64 {
    #[inline(always)]
    fn fast_tanh(self) -> f64 {
        self.tanh()
    }
}

macro_rules! fwd {
    ($t:ty, $x:expr) => {{
        let mut out = vec![0 as $t; $x.len()];
        out.par_chunks_mut(CHUNK).zip($x.par_chunks(CHUNK)).for_each(|(o, x)| {
            for (o, &x) in o.iter_mut().zip(x) {
                let inner = (K0 as $t) * (x + (K1 as $t) * x * x * x);
                *o = 0.5 * x * (1.0 + inner.fast_tanh());
            }
        });
        out
    }};
}

macro_rules! bwd {
    ($t:ty, $x:expr, $g:expr) => {{
        let mut out = vec![0 as $t; $x.len()];
        out.par_chunks_mut(CHUNK).zip($x.par_chunks(CHUNK).zip($g.par_chunks(CHUNK))).for_each(|(o, (x, g))| {
            for ((o, &x), &g) in o.iter_mut().zip(x).zip(g) {
                let x2 = x * x;
                let th = ((K0 as $t) * (x + (K1 as $t) * x2 * x)).fast_tanh();
                let d_inner = (K0 as $t) * (1.0 + 3.0 * (K1 as $t) * x2);
                *o = g * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * d_inner);
            }
        });
        out
    }};
}

#[derive(Debug)]
struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-tanh"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(fwd!(f32, contiguous(v, l, "gelu")?)),
            CpuStorage::F64(v) => CpuStorage::F64(fwd!(f64, contiguous(v, l, "gelu")?)),
            _ => return Err(unsupported("gelu")),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &GeluBackward)?))
    }
}

/// `dy · gelu'(x)` for `(x, dy)`.
#[derive(Debug)]
struct GeluBackward;

impl CustomOp2 for GeluBackward {
    fn name(&self) -> &'static str {
        "gelu-tanh-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(g)) => {
                CpuStorage::F32(bwd!(f32, contiguous(x, l1, "gelu-bwd")?, contiguous(g, l2, "gelu-bwd")?))
            }
            (CpuStorage::F64(x), CpuStorage::F64(g)) => {
                CpuStorage::F64(bwd!(f64, contiguous(x, l1, "gelu-bwd")?, contiguous(g, l2, "gelu-bwd")?))
            }
            _ => return Err(unsupported("gelu-bwd")),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// The tanh GELU; one fused op with a one-pass backward on CPU for `f32`/`f64`,
/// [`gelu_reference`] elsewhere.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        Ok(x.contiguous()?.apply_op1(Gelu)?)
    } else {
        gelu_reference(x)
    }
}

/// candle's `Tensor::gelu` (the same tanh approximation, composite backward).
pub fn gelu_reference(x: &Tensor) -> Result<Tensor> {
    Ok(x.gelu()?)
}

#[cfg(test)]
mod tests {
    use super::tanh_f32;

    #[test]
    fn fast_tanh_is_accurate() {
        let mut worst = 0f64;
        for i in -200_000..=200_000 {
            let z = i as f64 * 1e-4;
            worst = worst.max((tanh_f32(z as f32) as f64 - z.tanh()).abs());
        }
        assert!(worst < 2e-7, "{worst}");
        assert_eq!(tanh_f32(100.0), 1.0);
        assert_eq!(tanh_f32(-100.0), -1.0);
    }
}

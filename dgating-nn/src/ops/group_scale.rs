//! `scale_groups(w, s)`: multiply every row (or column) of a matrix by its group's scalar, in
//! one pass, with a backward that computes `dw` and the per-group dot products `ds` in one
//! pass each.
//!
//! This is the gate composition `W = ω ⊙ Πγ` of a gated linear layer. Written with candle's
//! `broadcast_mul`, forward and backward go through strided broadcast kernels and a
//! reduction over a broadcast axis (several weight-sized temporaries and, for column groups,
//! a slow non-trailing reduction); see docs/PERFORMANCE.md ("candle 0.11 facts"). The fused op reads `w` once
//! forward and `grad`, `w` once each backward.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

use crate::error::Result;
use crate::ops::linear::{ReluBackward, relu_in_place};
use crate::ops::storage::contiguous;

/// Which axis of a `[rows, cols]` matrix the groups index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupAxis {
    /// Group `i` is row `i`: `s` has `rows` entries.
    Rows,
    /// Group `j` is column `j`: `s` has `cols` entries.
    Cols,
}

/// `out[i, j] = w[i, j] · s[i]` (rows) or `· s[j]` (columns).
#[derive(Debug, Clone, Copy)]
struct ScaleGroups(GroupAxis);

/// `max(w[i, j] · s[j], 0)`: column-group scaling followed by ReLU (gated output neurons).
#[derive(Debug, Clone, Copy)]
struct ScaleColsRelu;

/// `out[g] = Σ a[g-th row or column] · b[same]` — the backward of [`ScaleGroups`] w.r.t. `s`.
#[derive(Debug, Clone, Copy)]
struct GroupDot(GroupAxis);

fn shape_mismatch(l1: &Layout, l2: &Layout, op: &'static str) -> candle_core::Error {
    candle_core::Error::ShapeMismatchBinaryOp { lhs: l1.shape().clone(), rhs: l2.shape().clone(), op }
}

fn dims2(layout: &Layout) -> candle_core::Result<(usize, usize)> {
    layout.shape().dims2()
}

macro_rules! per_dtype {
    ($s1:expr, $s2:expr, $name:expr, |$a:ident, $b:ident| $body:expr) => {
        match ($s1, $s2) {
            (CpuStorage::F32($a), CpuStorage::F32($b)) => CpuStorage::F32($body),
            (CpuStorage::F64($a), CpuStorage::F64($b)) => CpuStorage::F64($body),
            _ => return Err(candle_core::Error::UnsupportedDTypeForOp(DType::BF16, $name)),
        }
    };
}

fn scale_kernel<T: Copy + std::ops::Mul<Output = T>>(w: &[T], s: &[T], cols: usize, axis: GroupAxis) -> Vec<T> {
    let mut out = Vec::with_capacity(w.len());
    match axis {
        GroupAxis::Rows => {
            for (row, &si) in w.chunks_exact(cols).zip(s) {
                out.extend(row.iter().map(|&x| x * si));
            }
        }
        GroupAxis::Cols => {
            for row in w.chunks_exact(cols) {
                out.extend(row.iter().zip(s).map(|(&x, &sj)| x * sj));
            }
        }
    }
    out
}

fn dot_kernel<T>(a: &[T], b: &[T], cols: usize, axis: GroupAxis) -> Vec<T>
where
    T: Copy + Default + std::ops::Mul<Output = T> + std::ops::Add<Output = T> + std::iter::Sum,
{
    match axis {
        GroupAxis::Rows => a
            .chunks_exact(cols)
            .zip(b.chunks_exact(cols))
            .map(|(x, y)| x.iter().zip(y).map(|(&p, &q)| p * q).sum())
            .collect(),
        GroupAxis::Cols => {
            // Accumulate row by row so memory is read contiguously.
            let mut acc = vec![T::default(); cols];
            for (x, y) in a.chunks_exact(cols).zip(b.chunks_exact(cols)) {
                for ((o, &p), &q) in acc.iter_mut().zip(x).zip(y) {
                    *o = *o + p * q;
                }
            }
            acc
        }
    }
}

impl CustomOp2 for ScaleGroups {
    fn name(&self) -> &'static str {
        "scale-groups"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, cols) = dims2(l1)?;
        let expect = if self.0 == GroupAxis::Rows { rows } else { cols };
        if l2.shape().dims() != [expect] {
            return Err(shape_mismatch(l1, l2, "scale-groups"));
        }
        let axis = self.0;
        let out = per_dtype!(s1, s2, "scale-groups", |w, s| {
            scale_kernel(contiguous(w, l1, "scale-groups")?, contiguous(s, l2, "scale-groups")?, cols, axis)
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        w: &Tensor,
        s: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        scale_backward(&grad.contiguous()?, w, s, self.0)
    }
}

/// The gradients of `w ⊙ s` (groups along `axis`) for the contiguous upstream `grad`: `dw` and
/// the per-group dot products `ds`, one pass each.
fn scale_backward(
    grad: &Tensor,
    w: &Tensor,
    s: &Tensor,
    axis: GroupAxis,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
    let dw = grad.apply_op2_no_bwd(s, &ScaleGroups(axis))?;
    let ds = grad.apply_op2_no_bwd(w, &GroupDot(axis))?;
    Ok((Some(dw), Some(ds)))
}

impl CustomOp2 for ScaleColsRelu {
    fn name(&self) -> &'static str {
        "scale-cols-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (mut out, shape) = ScaleGroups(GroupAxis::Cols).cpu_fwd(s1, l1, s2, l2)?;
        relu_in_place(&mut out);
        Ok((out, shape))
    }

    fn bwd(
        &self,
        h: &Tensor,
        s: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // Mask once; then the plain scaling's backward.
        let masked = grad.contiguous()?.apply_op2_no_bwd(res, &ReluBackward)?;
        scale_backward(&masked, h, s, GroupAxis::Cols)
    }
}

impl CustomOp2 for GroupDot {
    fn name(&self) -> &'static str {
        "group-dot"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, cols) = dims2(l1)?;
        if l1.shape() != l2.shape() {
            return Err(shape_mismatch(l1, l2, "group-dot"));
        }
        let axis = self.0;
        let out = per_dtype!(s1, s2, "group-dot", |a, b| {
            dot_kernel(contiguous(a, l1, "group-dot")?, contiguous(b, l2, "group-dot")?, cols, axis)
        });
        let n = if axis == GroupAxis::Rows { rows } else { cols };
        Ok((out, Shape::from(n)))
    }
}

/// `w ⊙ s` broadcast along `axis` (`w`: `[rows, cols]`, `s`: one scalar per group), fused on
/// CPU for `f32`/`f64`, composite elsewhere. Differentiable in both arguments.
pub fn scale_groups(w: &Tensor, s: &Tensor, axis: GroupAxis) -> Result<Tensor> {
    if !w.device().is_cpu() || !matches!(w.dtype(), DType::F32 | DType::F64) {
        return scale_groups_reference(w, s, axis);
    }
    Ok(w.contiguous()?.apply_op2(&s.contiguous()?, ScaleGroups(axis))?)
}

/// `relu(h ⊙ s)` with `s` one scalar per column (`h`: `[batch, n]`, `s`: `[n]`): the gated
/// output neurons of a hidden layer followed by their activation, as one op on CPU (one pass
/// forward; backward masks once, then one pass each for `dh` and `ds`), composite elsewhere.
pub fn scale_cols_relu(h: &Tensor, s: &Tensor) -> Result<Tensor> {
    if !h.device().is_cpu() || !matches!(h.dtype(), DType::F32 | DType::F64) {
        return Ok(scale_groups_reference(h, s, GroupAxis::Cols)?.relu()?);
    }
    Ok(h.contiguous()?.apply_op2(&s.contiguous()?, ScaleColsRelu)?)
}

/// The composite reference of [`scale_groups`] (plain broadcast ops).
pub fn scale_groups_reference(w: &Tensor, s: &Tensor, axis: GroupAxis) -> Result<Tensor> {
    Ok(match axis {
        GroupAxis::Rows => w.broadcast_mul(&s.unsqueeze(1)?)?,
        GroupAxis::Cols => w.broadcast_mul(&s.unsqueeze(0)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn check(axis: GroupAxis, dtype: DType, tol: f64) {
        let dev = Device::Cpu;
        let w: Vec<f64> = (0..35).map(|i| ((i as f64) * 0.37).sin()).collect();
        let w = Var::from_tensor(&Tensor::from_vec(w, (5, 7), &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let n = if axis == GroupAxis::Rows { 5 } else { 7 };
        let s: Vec<f64> = (0..n).map(|i| 0.5 + 0.3 * i as f64).collect();
        let s = Var::from_tensor(&Tensor::from_vec(s, n, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let c: Vec<f64> = (0..35).map(|i| ((i as f64) * 1.1).cos()).collect();
        let c = Tensor::from_vec(c, (5, 7), &dev).unwrap().to_dtype(dtype).unwrap();
        let run = |f: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>| {
            let out = f(w.as_tensor(), s.as_tensor()).unwrap();
            let loss = out.mul(&c).unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
            (flat(&out), flat(g.get(w.as_tensor()).unwrap()), flat(g.get(s.as_tensor()).unwrap()))
        };
        let fused = run(&|w, s| scale_groups(w, s, axis));
        let reference = run(&|w, s| scale_groups_reference(w, s, axis));
        for (name, a, b) in
            [("out", &fused.0, &reference.0), ("dw", &fused.1, &reference.1), ("ds", &fused.2, &reference.2)]
        {
            for (x, y) in a.iter().zip(b.iter()) {
                assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{axis:?} {dtype:?} {name}: {x} vs {y}");
            }
        }
    }

    /// Fused and composite agree: exactly the same arithmetic per element for the forward
    /// and `dw`; `ds` sums in a different order (tolerance 1e-12 in f64, 1e-5 in f32).
    #[test]
    fn fused_matches_reference() {
        for axis in [GroupAxis::Rows, GroupAxis::Cols] {
            check(axis, DType::F64, 1e-12);
            check(axis, DType::F32, 1e-5);
        }
    }

    /// `scale_cols_relu` against `relu(scale_groups_reference(..))`: output and both gradients
    /// (entries kept away from the kink; same arithmetic per element, sums reordered).
    #[test]
    fn scale_cols_relu_matches_reference() {
        let dev = Device::Cpu;
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            let h: Vec<f64> = (0..35).map(|i| ((i as f64) * 0.37).sin() + 0.05).collect();
            let h = Var::from_tensor(&Tensor::from_vec(h, (5, 7), &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
            let s: Vec<f64> =
                (0..7).map(|i| if i % 3 == 0 { -0.4 - 0.1 * i as f64 } else { 0.5 + 0.3 * i as f64 }).collect();
            let s = Var::from_tensor(&Tensor::from_vec(s, 7, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
            let c: Vec<f64> = (0..35).map(|i| ((i as f64) * 1.1).cos()).collect();
            let c = Tensor::from_vec(c, (5, 7), &dev).unwrap().to_dtype(dtype).unwrap();
            let run = |f: &dyn Fn(&Tensor, &Tensor) -> Tensor| {
                let out = f(h.as_tensor(), s.as_tensor());
                let g = out.mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
                let flat =
                    |t: &Tensor| t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
                [flat(&out), flat(g.get(h.as_tensor()).unwrap()), flat(g.get(s.as_tensor()).unwrap())]
            };
            let fused = run(&|h, s| scale_cols_relu(h, s).unwrap());
            let reference = run(&|h, s| scale_groups_reference(h, s, GroupAxis::Cols).unwrap().relu().unwrap());
            for (a, b) in fused.iter().zip(&reference) {
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{dtype:?}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let dev = Device::Cpu;
        let w = Tensor::zeros((3, 4), DType::F32, &dev).unwrap();
        let s = Tensor::zeros(4, DType::F32, &dev).unwrap();
        assert!(scale_groups(&w, &s, GroupAxis::Rows).is_err());
        assert!(scale_groups(&w, &s, GroupAxis::Cols).is_ok());
        let s64 = Tensor::zeros(3, DType::F64, &dev).unwrap();
        assert!(scale_groups(&w, &s64, GroupAxis::Rows).is_err());
    }
}

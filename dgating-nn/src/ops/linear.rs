//! `linear(x, w, b) = x wᵀ + b` and `relu(x)` as single ops whose backward does only the work
//! a training step needs.
//!
//! Written as `x.matmul(&w.t()).broadcast_add(b)`, candle's backward (docs/PERFORMANCE.md, "candle 0.11 facts")
//! * computes the input gradient `dy · w` even when `x` is the data batch — on the first layer
//!   of an MLP that is as much arithmetic as the weight gradient, thrown away;
//! * produces `dW` as the transpose of `xᵀ dy`, a strided view that is copied before the
//!   optimizer can read it;
//! * sums the bias gradient over the batch axis, a non-trailing reduction that candle runs as a
//!   scalar loop.
//!
//! Here the forward is one GEMM with the bias pre-filled in the output, and the backward asks
//! only for gradients of arguments that are tracked (`Tensor::track_op`): `dW = dyᵀ x` comes out
//! of the GEMM as `[out, in]`, `db` is a row-by-row sum over contiguous memory, and `dx` is
//! computed only when `x` is a variable or depends on one. ReLU's backward is one pass over
//! `(dy, y)` instead of candle's `ge` / `zeros_like` / `to_dtype` / `mul` chain.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ops::small_linear;
use crate::ops::storage::contiguous;

/// The fused `x wᵀ (+ b)` node, optionally followed by ReLU. Arguments: `x [batch, in]`,
/// `w [out, in]`, optionally `b [out]`.
#[derive(Debug, Clone, Copy)]
struct Linear {
    relu: bool,
}

/// `out[j] = Σ_i x[i, j]`, reading rows contiguously (the bias gradient).
#[derive(Debug, Clone, Copy)]
struct ColumnSums;

/// `max(x, 0)` with a one-pass backward.
#[derive(Debug, Clone, Copy)]
struct Relu;

/// `dy ⊙ [y > 0]` for `(dy, y)`: the backward of [`Relu`] from its output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReluBackward;

/// Problems smaller than this many multiply-adds run on the calling thread: waking the pool
/// costs more than it saves (batch-1 inference).
const PARALLEL_MIN_MACS: usize = 1 << 17;

/// Layers with at most this many outputs split the batch rows across threads themselves.
const NARROW_OUTPUTS: usize = 64;

/// `dst[m, n] = (dst if accumulate) + lhs[m, k] · rhs[n, k]ᵀ`, all row-major and contiguous.
fn gemm_nt<T: 'static + Copy + Send + Sync + num_traits::Zero + num_traits::One>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    lhs: &[T],
    rhs: &[T],
    accumulate: bool,
) -> candle_core::Result<()> {
    if dst.len() != m * n || lhs.len() != m * k || rhs.len() != n * k {
        return Err(candle_core::Error::Msg(format!(
            "linear: buffer sizes {}, {}, {} do not match m={m}, n={n}, k={k}",
            dst.len(),
            lhs.len(),
            rhs.len()
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let threads = candle_core::utils::get_num_threads();
    if threads < 2 || m * n * k < PARALLEL_MIN_MACS {
        gemm_nt_unchecked(m, n, k, dst, lhs, rhs, accumulate, Parallelism::None);
    } else if n <= NARROW_OUTPUTS && m >= 2 * threads {
        // Narrow outputs (a compacted layer): gemm's own split scales poorly here (1.3× on two
        // threads for 30 outputs against 1.75× for 300), so each thread takes a block of rows.
        let rows = m.div_ceil(threads);
        dst.par_chunks_mut(rows * n).zip(lhs.par_chunks(rows * k)).for_each(|(d, l)| {
            gemm_nt_unchecked(d.len() / n, n, k, d, l, rhs, accumulate, Parallelism::None);
        });
    } else {
        gemm_nt_unchecked(m, n, k, dst, lhs, rhs, accumulate, Parallelism::Rayon(threads));
    }
    Ok(())
}

/// [`gemm_nt`] after its size check: `dst`, `lhs`, `rhs` hold exactly `m·n`, `m·k`, `n·k`
/// elements.
#[allow(clippy::too_many_arguments)]
fn gemm_nt_unchecked<T: 'static + Copy + num_traits::One>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    lhs: &[T],
    rhs: &[T],
    accumulate: bool,
    parallelism: Parallelism,
) {
    debug_assert!(dst.len() == m * n && lhs.len() == m * k && rhs.len() == n * k);
    // SAFETY: the three buffers hold exactly m·n, m·k and n·k elements (checked by `gemm_nt`) and
    // the strides below address only those: dst row-major (rs = n, cs = 1), lhs row-major
    // (rs = k, cs = 1), and rhs read as its transpose (element (p, j) = rhs[j·k + p]).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            k as isize,
            1,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

fn linear_kernel<T: 'static + Copy + Send + Sync + num_traits::Zero + num_traits::One>(
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    (batch, inp, out): (usize, usize, usize),
) -> candle_core::Result<Vec<T>> {
    let mut y = match b {
        Some(b) => {
            let mut y = Vec::with_capacity(batch * out);
            for _ in 0..batch {
                y.extend_from_slice(b);
            }
            y
        }
        None => vec![T::zero(); batch * out],
    };
    gemm_nt(batch, out, inp, &mut y, x, w, b.is_some())?;
    Ok(y)
}

/// The `f32` forward: dot products for a few rows of a layer small enough for one thread
/// (batch-1 inference; [`small_linear`]), the GEMM otherwise.
fn linear_f32(x: &[f32], w: &[f32], b: Option<&[f32]>, dims: (usize, usize, usize)) -> candle_core::Result<Vec<f32>> {
    let (batch, inp, out) = dims;
    if batch <= small_linear::MAX_ROWS && batch * inp * out < PARALLEL_MIN_MACS {
        if x.len() != batch * inp || w.len() != out * inp || b.is_some_and(|b| b.len() != out) {
            return Err(candle_core::Error::Msg(format!("linear: buffer sizes do not match {dims:?}")));
        }
        return Ok(small_linear::linear_f32(x, w, b, inp, out));
    }
    linear_kernel(x, w, b, dims)
}

fn linear_dims(lx: &Layout, lw: &Layout, lb: Option<&Layout>) -> candle_core::Result<(usize, usize, usize)> {
    let (batch, inp) = lx.shape().dims2()?;
    let (out, w_in) = lw.shape().dims2()?;
    let bias_ok = lb.is_none_or(|lb| lb.shape().dims() == [out]);
    if w_in != inp || !bias_ok {
        return Err(candle_core::Error::ShapeMismatchBinaryOp {
            lhs: lx.shape().clone(),
            rhs: lw.shape().clone(),
            op: "linear",
        });
    }
    Ok((batch, inp, out))
}

fn linear_fwd(
    sx: &CpuStorage,
    lx: &Layout,
    sw: &CpuStorage,
    lw: &Layout,
    bias: Option<(&CpuStorage, &Layout)>,
    relu: bool,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let dims = linear_dims(lx, lw, bias.map(|(_, l)| l))?;
    let op = "linear";
    let mut out = match (sx, sw, bias) {
        (CpuStorage::F32(x), CpuStorage::F32(w), None) => {
            CpuStorage::F32(linear_f32(contiguous(x, lx, op)?, contiguous(w, lw, op)?, None, dims)?)
        }
        (CpuStorage::F64(x), CpuStorage::F64(w), None) => {
            CpuStorage::F64(linear_kernel(contiguous(x, lx, op)?, contiguous(w, lw, op)?, None, dims)?)
        }
        (CpuStorage::F32(x), CpuStorage::F32(w), Some((CpuStorage::F32(b), lb))) => CpuStorage::F32(linear_f32(
            contiguous(x, lx, op)?,
            contiguous(w, lw, op)?,
            Some(contiguous(b, lb, op)?),
            dims,
        )?),
        (CpuStorage::F64(x), CpuStorage::F64(w), Some((CpuStorage::F64(b), lb))) => CpuStorage::F64(linear_kernel(
            contiguous(x, lx, op)?,
            contiguous(w, lw, op)?,
            Some(contiguous(b, lb, op)?),
            dims,
        )?),
        _ => return Err(candle_core::Error::UnsupportedDTypeForOp(sx.dtype(), op)),
    };
    if relu {
        relu_in_place(&mut out);
    }
    Ok((out, Shape::from((dims.0, dims.2))))
}

/// `max(y, 0)` over a freshly computed `f32`/`f64` output (other dtypes never reach it).
pub(crate) fn relu_in_place(out: &mut CpuStorage) {
    match out {
        CpuStorage::F32(v) => v.iter_mut().for_each(|y| *y = y.max(0.0)),
        CpuStorage::F64(v) => v.iter_mut().for_each(|y| *y = y.max(0.0)),
        _ => {}
    }
}

/// The gradient w.r.t. the pre-activation: `dy`, masked by `y > 0` after a ReLU.
fn pre_activation_grad(relu: bool, res: &Tensor, grad: &Tensor) -> candle_core::Result<Tensor> {
    let grad = grad.contiguous()?;
    if relu { grad.apply_op2_no_bwd(res, &ReluBackward) } else { Ok(grad) }
}

/// The gradients of `y = x wᵀ + b` for the arguments that need one (`grad` contiguous).
fn linear_bwd(x: &Tensor, w: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Tensor)> {
    // `dyᵀ x`: candle's GEMM reads the transposed view in place and writes `[out, in]`.
    let dw = grad.t()?.matmul(x)?;
    let dx = if x.track_op() { Some(grad.matmul(w)?) } else { None };
    Ok((dx, dw))
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        linear_fwd(sx, lx, sw, lw, None, self.relu)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = pre_activation_grad(self.relu, res, grad)?;
        let (dx, dw) = linear_bwd(x, w, &grad)?;
        Ok((dx, Some(dw)))
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        linear_fwd(sx, lx, sw, lw, Some((sb, lb)), self.relu)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = pre_activation_grad(self.relu, res, grad)?;
        let (dx, dw) = linear_bwd(x, w, &grad)?;
        let db = grad.apply_op1_no_bwd(&ColumnSums)?;
        Ok((dx, Some(dw), Some(db)))
    }
}

fn column_sums<T: Copy + num_traits::Zero>(x: &[T], cols: usize) -> Vec<T> {
    let mut acc = vec![T::zero(); cols];
    for row in x.chunks_exact(cols) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a = *a + v;
        }
    }
    acc
}

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "column-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, cols) = l.shape().dims2()?;
        let op = "column-sums";
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(column_sums(contiguous(v, l, op)?, cols)),
            CpuStorage::F64(v) => CpuStorage::F64(column_sums(contiguous(v, l, op)?, cols)),
            _ => return Err(candle_core::Error::UnsupportedDTypeForOp(s.dtype(), op)),
        };
        Ok((out, Shape::from(cols)))
    }
}

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = "relu";
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(contiguous(v, l, op)?.iter().map(|&x| x.max(0.0)).collect()),
            CpuStorage::F64(v) => CpuStorage::F64(contiguous(v, l, op)?.iter().map(|&x| x.max(0.0)).collect()),
            _ => return Err(candle_core::Error::UnsupportedDTypeForOp(s.dtype(), op)),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op2_no_bwd(res, &ReluBackward)?))
    }
}

fn mask_by_positive<T: Copy + PartialOrd + num_traits::Zero>(grad: &[T], y: &[T]) -> Vec<T> {
    grad.iter().zip(y).map(|(&g, &v)| if v > T::zero() { g } else { T::zero() }).collect()
}

impl CustomOp2 for ReluBackward {
    fn name(&self) -> &'static str {
        "relu-backward"
    }

    fn cpu_fwd(
        &self,
        sg: &CpuStorage,
        lg: &Layout,
        sy: &CpuStorage,
        ly: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = "relu-backward";
        if lg.shape() != ly.shape() {
            return Err(candle_core::Error::ShapeMismatchBinaryOp {
                lhs: lg.shape().clone(),
                rhs: ly.shape().clone(),
                op,
            });
        }
        let out = match (sg, sy) {
            (CpuStorage::F32(g), CpuStorage::F32(y)) => {
                CpuStorage::F32(mask_by_positive(contiguous(g, lg, op)?, contiguous(y, ly, op)?))
            }
            (CpuStorage::F64(g), CpuStorage::F64(y)) => {
                CpuStorage::F64(mask_by_positive(contiguous(g, lg, op)?, contiguous(y, ly, op)?))
            }
            _ => return Err(candle_core::Error::UnsupportedDTypeForOp(sg.dtype(), op)),
        };
        Ok((out, lg.shape().clone()))
    }
}

fn fused(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// `x wᵀ + b` for `x [batch, in]`, `w [out, in]`, `b [out]`: one fused op on CPU for
/// `f32`/`f64` (see the module docs for what its backward skips), [`linear_reference`]
/// elsewhere. Shapes are checked; `name` (e.g. the layer prefix) goes into the error.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, name: &str) -> Result<Tensor> {
    linear_op(x, w, b, name, false)
}

/// `relu(x wᵀ + b)` as the same single op: the ReLU is applied to the GEMM's output in place,
/// and its backward masks `dy` in the pass that feeds the linear backward (no separate node,
/// no gradient accumulation for the pre-activation).
pub fn linear_relu(x: &Tensor, w: &Tensor, b: Option<&Tensor>, name: &str) -> Result<Tensor> {
    linear_op(x, w, b, name, true)
}

fn linear_op(x: &Tensor, w: &Tensor, b: Option<&Tensor>, name: &str, relu: bool) -> Result<Tensor> {
    let (_, inp) = x.dims2().map_err(|_| shape_error(name, x, w))?;
    let (out, w_in) = w.dims2()?;
    if inp != w_in {
        return Err(shape_error(name, x, w));
    }
    if let Some(b) = b
        && b.dims() != [out]
    {
        return Err(Error::Shape { op: format!("{name}: bias"), expected: vec![out], actual: b.dims().to_vec() });
    }
    if !fused(x) || w.dtype() != x.dtype() {
        let y = linear_reference(x, w, b)?;
        return if relu { Ok(y.relu()?) } else { Ok(y) };
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    let op = Linear { relu };
    Ok(match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, op)?,
        None => x.apply_op2(&w, op)?,
    })
}

/// `x wᵀ + b`, followed by ReLU if `relu`, on plain row-major `f32` buffers (`x`: rows of `inp`,
/// `w`: `[out, inp]`): the forward of [`linear`] / [`linear_relu`] — same kernels, same
/// numbers — without a tensor around it. For inference paths through many tiny layers, where
/// candle's cost per op (~0.3 µs: output allocation, shape and graph bookkeeping) exceeds the
/// arithmetic of a 30 → 10 layer.
pub fn linear_forward_f32(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    (inp, out): (usize, usize),
    relu: bool,
) -> Result<Vec<f32>> {
    if inp == 0 || !x.len().is_multiple_of(inp) || w.len() != out * inp || b.is_some_and(|b| b.len() != out) {
        return Err(Error::Model {
            what: "linear (f32 buffers)".into(),
            message: format!(
                "buffers of {}, {} and {:?} elements do not fit {inp} -> {out}",
                x.len(),
                w.len(),
                b.map(<[f32]>::len)
            ),
        });
    }
    let mut y = linear_f32(x, w, b, (x.len() / inp, inp, out))?;
    if relu {
        y.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    Ok(y)
}

fn shape_error(name: &str, x: &Tensor, w: &Tensor) -> Error {
    Error::Input { op: name.to_string(), expected: *w.dims().get(1).unwrap_or(&0), actual: x.dims().to_vec() }
}

/// The composite reference of [`linear`]: `x.matmul(wᵀ).broadcast_add(b)`.
pub fn linear_reference(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = x.matmul(&w.t()?)?;
    Ok(match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// `max(x, 0)`, fused on CPU for `f32`/`f64` (one pass forward and backward; the gradient at
/// exactly 0 is 0, as in PyTorch), candle's `relu` elsewhere.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if !fused(x) {
        return Ok(x.relu()?);
    }
    Ok(x.contiguous()?.apply_op1(Relu)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn tensor(n: usize, shape: &[usize], phase: f64, dtype: DType) -> Tensor {
        let v: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.731 + phase).sin()).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f64> {
        t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
    }

    fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}: {x} vs {y}");
        }
    }

    /// Fused and composite agree on the output and on every gradient, through a ReLU and a
    /// second layer so `dx` of the first layer's output is exercised. The same GEMM kernel
    /// runs in both; sums may associate differently (1e-12 in f64, 1e-5 in f32).
    fn check(dtype: DType, tol: f64, x_is_var: bool) {
        let (batch, inp, hid, out) = (6, 5, 4, 3);
        let x = Var::from_tensor(&tensor(batch * inp, &[batch, inp], 0.1, dtype)).unwrap();
        let w1 = Var::from_tensor(&tensor(hid * inp, &[hid, inp], 0.7, dtype)).unwrap();
        let b1 = Var::from_tensor(&tensor(hid, &[hid], 1.3, dtype)).unwrap();
        let w2 = Var::from_tensor(&tensor(out * hid, &[out, hid], 2.1, dtype)).unwrap();
        let c = tensor(batch * out, &[batch, out], 0.4, dtype);
        let x_in = if x_is_var { x.as_tensor().clone() } else { x.as_tensor().detach() };
        type Lin<'a> = &'a dyn Fn(&Tensor, &Tensor, Option<&Tensor>) -> Tensor;
        let run = |lin: Lin<'_>, act: &dyn Fn(&Tensor) -> Tensor| {
            let h = act(&lin(&x_in, w1.as_tensor(), Some(b1.as_tensor())));
            let y = lin(&h, w2.as_tensor(), None);
            let g = y.mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
            let grad = |v: &Var| g.get(v.as_tensor()).map(flat);
            (flat(&y), grad(&x), grad(&w1), grad(&b1), grad(&w2))
        };
        let fused = run(&|x, w, b| linear(x, w, b, "t").unwrap(), &|h| relu(h).unwrap());
        let reference = run(&|x, w, b| linear_reference(x, w, b).unwrap(), &|h| h.relu().unwrap());
        // The first layer as one linear + ReLU op (the identity "activation" after it).
        let fused_relu = run(
            &|x, w, b| if b.is_some() { linear_relu(x, w, b, "t").unwrap() } else { linear(x, w, b, "t").unwrap() },
            &|h| h.clone(),
        );
        close(&fused_relu.0, &reference.0, tol, "y (linear_relu)");
        for (name, a, r) in [
            ("dw1", &fused_relu.2, &reference.2),
            ("db1", &fused_relu.3, &reference.3),
            ("dw2", &fused_relu.4, &reference.4),
        ] {
            close(a.as_ref().unwrap(), r.as_ref().unwrap(), tol, name);
        }
        if x_is_var {
            close(fused_relu.1.as_ref().unwrap(), reference.1.as_ref().unwrap(), tol, "dx (linear_relu)");
        }
        close(&fused.0, &reference.0, tol, "y");
        assert_eq!(fused.1.is_some(), x_is_var, "dx only for a tracked input");
        if x_is_var {
            close(fused.1.as_ref().unwrap(), reference.1.as_ref().unwrap(), tol, "dx");
        }
        close(&fused.2.unwrap(), &reference.2.unwrap(), tol, "dw1");
        close(&fused.3.unwrap(), &reference.3.unwrap(), tol, "db1");
        close(&fused.4.unwrap(), &reference.4.unwrap(), tol, "dw2");
    }

    #[test]
    fn fused_matches_reference() {
        for x_is_var in [true, false] {
            check(DType::F64, 1e-12, x_is_var);
            check(DType::F32, 1e-5, x_is_var);
        }
    }

    /// `dW`, `db` and `dx` of the fused linear + ReLU op against central differences of the
    /// scalar `Σ c ⊙ relu(x wᵀ + b)` in f64 (inputs kept away from the ReLU kink).
    #[test]
    fn gradients_match_finite_differences() {
        let (batch, inp, out) = (4, 3, 5);
        let x = Var::from_tensor(&tensor(batch * inp, &[batch, inp], 0.3, DType::F64)).unwrap();
        let w = Var::from_tensor(&tensor(out * inp, &[out, inp], 1.9, DType::F64)).unwrap();
        let b = Var::from_tensor(&tensor(out, &[out], 0.2, DType::F64)).unwrap();
        let c = tensor(batch * out, &[batch, out], 2.5, DType::F64);
        let f = |x: &Tensor, w: &Tensor, b: &Tensor| -> f64 {
            let y = linear_relu(x, w, Some(b), "t").unwrap();
            y.mul(&c).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
        };
        let grads = {
            let y = linear_relu(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), "t").unwrap();
            y.mul(&c).unwrap().sum_all().unwrap().backward().unwrap()
        };
        let h = 1e-6;
        for (which, var) in [(0, &x), (1, &w), (2, &b)] {
            let base = flat(var.as_tensor());
            let analytic = flat(grads.get(var.as_tensor()).unwrap());
            for i in 0..base.len() {
                let shifted = |d: f64| {
                    let mut v = base.clone();
                    v[i] += d;
                    Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap()
                };
                let eval = |t: Tensor| match which {
                    0 => f(&t, w.as_tensor(), b.as_tensor()),
                    1 => f(x.as_tensor(), &t, b.as_tensor()),
                    _ => f(x.as_tensor(), w.as_tensor(), &t),
                };
                let fd = (eval(shifted(h)) - eval(shifted(-h))) / (2.0 * h);
                assert!((fd - analytic[i]).abs() < 1e-7, "arg {which} [{i}]: fd {fd} vs {}", analytic[i]);
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let x = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((4, 5), DType::F32, &Device::Cpu).unwrap();
        assert!(linear(&x, &w, None, "layer").unwrap_err().to_string().contains("layer"));
        let w = Tensor::zeros((4, 3), DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        assert!(linear(&x, &w, Some(&b), "layer").is_err());
        let x1 = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        assert!(linear(&x1, &w, None, "layer").is_err());
        let w64 = Tensor::zeros((4, 3), DType::F64, &Device::Cpu).unwrap();
        assert!(linear(&x, &w64, None, "layer").is_err(), "mixed dtypes are rejected by the reference matmul");
    }

    /// The slice-level forward gives bit-identical results to the tensor op, with and without
    /// ReLU, and rejects buffers that do not fit.
    #[test]
    fn slice_forward_is_the_tensor_forward() {
        for (batch, inp, out) in [(1, 784, 30), (3, 30, 10), (257, 100, 30)] {
            let x = tensor(batch * inp, &[batch, inp], 0.5, DType::F32);
            let w = tensor(out * inp, &[out, inp], 0.9, DType::F32);
            let b = tensor(out, &[out], 0.1, DType::F32);
            let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for relu in [false, true] {
                let op = if relu { linear_relu(&x, &w, Some(&b), "t") } else { linear(&x, &w, Some(&b), "t") };
                let got = linear_forward_f32(&v(&x), &v(&w), Some(&v(&b)), (inp, out), relu).unwrap();
                assert_eq!(got, v(&op.unwrap()), "{batch}x{inp}->{out} relu={relu}");
            }
        }
        assert!(linear_forward_f32(&[1.0; 5], &[1.0; 6], None, (3, 2), false).is_err());
        assert!(linear_forward_f32(&[1.0; 6], &[1.0; 6], Some(&[0.0; 3]), (3, 2), false).is_err());
        assert!(linear_forward_f32(&[], &[], None, (0, 2), false).is_err());
    }

    /// The single-threaded path (tiny problems) and the pooled path give the same numbers.
    #[test]
    fn small_and_large_problems_agree_with_reference() {
        // Single-threaded, few-row kernel, row blocks per thread (narrow, uneven split), gemm's
        // own threading.
        for (batch, inp, out) in [(1, 3, 2), (1, 784, 30), (64, 70, 40), (257, 100, 30), (64, 70, 80)] {
            let x = tensor(batch * inp, &[batch, inp], 0.5, DType::F64);
            let w = tensor(out * inp, &[out, inp], 0.9, DType::F64);
            let b = tensor(out, &[out], 0.1, DType::F64);
            close(
                &flat(&linear(&x, &w, Some(&b), "t").unwrap()),
                &flat(&linear_reference(&x, &w, Some(&b)).unwrap()),
                1e-12,
                "y",
            );
        }
    }
}

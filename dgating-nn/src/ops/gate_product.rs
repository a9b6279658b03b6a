//! `gate_product(γ)`: the row products `Π_d γ_{j,d}` of a `[J, D-1]` gate matrix as one op.
//!
//! Written with `narrow` and `mul`, the product costs `2(D-1)` small ops forward and as many
//! backward (each `narrow` backward pads a zero tensor); as one op it is one pass each way.
//! Backward: `∂/∂γ_{j,d} = grad_j · Π_{k≠d} γ_{j,k}` (computed without division, so zero
//! gates are fine).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use crate::error::Result;
use crate::ops::storage::contiguous;

#[derive(Debug, Clone, Copy)]
struct GateProduct;

#[derive(Debug, Clone, Copy)]
struct GateProductBackward;

fn rows<T: Copy>(data: &[T], layout: &Layout, op: &'static str) -> candle_core::Result<(usize, usize, Vec<T>)> {
    let (j, d) = layout.shape().dims2()?;
    Ok((j, d, contiguous(data, layout, op)?.to_vec()))
}

fn product<T: Copy + std::ops::Mul<Output = T>>(row: &[T], skip: Option<usize>, one: T) -> T {
    row.iter().enumerate().filter(|&(k, _)| Some(k) != skip).fold(one, |a, (_, &g)| a * g)
}

impl CustomOp1 for GateProduct {
    fn name(&self) -> &'static str {
        "gate-product"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(v) => {
                let (_, d, g) = rows(v, l, "gate-product")?;
                CpuStorage::F32(g.chunks_exact(d).map(|r| product(r, None, 1.0)).collect())
            }
            CpuStorage::F64(v) => {
                let (_, d, g) = rows(v, l, "gate-product")?;
                CpuStorage::F64(g.chunks_exact(d).map(|r| product(r, None, 1.0)).collect())
            }
            _ => return Err(candle_core::Error::UnsupportedDTypeForOp(s.dtype(), "gate-product")),
        };
        Ok((out, Shape::from(l.shape().dims2()?.0)))
    }

    fn bwd(&self, gates: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // Pack [grad | gates] so the backward is a single one-input op.
        let packed = Tensor::cat(&[&grad.unsqueeze(1)?, gates], 1)?;
        Ok(Some(packed.apply_op1_no_bwd(&GateProductBackward)?))
    }
}

impl CustomOp1 for GateProductBackward {
    fn name(&self) -> &'static str {
        "gate-product-backward"
    }

    /// Input `[J, D]` = `[grad_j, γ_{j,1..D-1}]`, output `[J, D-1]`.
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (j, d) = l.shape().dims2()?;
        macro_rules! run {
            ($v:ident, $one:expr) => {{
                let (_, _, p) = rows($v, l, "gate-product-backward")?;
                let mut out = Vec::with_capacity(j * (d - 1));
                for row in p.chunks_exact(d) {
                    let (g, gates) = (row[0], &row[1..]);
                    out.extend((0..d - 1).map(|k| g * product(gates, Some(k), $one)));
                }
                out
            }};
        }
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(run!(v, 1.0f32)),
            CpuStorage::F64(v) => CpuStorage::F64(run!(v, 1.0f64)),
            _ => return Err(candle_core::Error::UnsupportedDTypeForOp(s.dtype(), "gate-product-backward")),
        };
        Ok((out, Shape::from((j, d - 1))))
    }
}

/// `Π_d γ_{:,d}` of a `[J, D-1]` gate matrix as a `[J]` tensor; fused on CPU (f32/f64),
/// composite elsewhere. Differentiable.
pub fn gate_product(gates: &Tensor) -> Result<Tensor> {
    if !gates.device().is_cpu() || !matches!(gates.dtype(), DType::F32 | DType::F64) {
        return gate_product_reference(gates);
    }
    Ok(gates.contiguous()?.apply_op1(GateProduct)?)
}

/// The composite reference of [`gate_product`] (`narrow` + `mul`).
pub fn gate_product_reference(gates: &Tensor) -> Result<Tensor> {
    let cols = gates.dim(1)?;
    let mut prod = gates.narrow(1, 0, 1)?;
    for d in 1..cols {
        prod = prod.mul(&gates.narrow(1, d, 1)?)?;
    }
    Ok(prod.squeeze(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Fused and composite agree in value and gradient (f64 exact up to 1e-14, f32 1e-6),
    /// including a zero gate.
    #[test]
    fn fused_matches_reference() {
        for dtype in [DType::F64, DType::F32] {
            for cols in [1usize, 2, 3] {
                let vals: Vec<f64> = (0..4 * cols).map(|i| if i == 1 { 0.0 } else { 0.3 + 0.2 * i as f64 }).collect();
                let g = Var::from_tensor(
                    &Tensor::from_vec(vals, (4, cols), &Device::Cpu).unwrap().to_dtype(dtype).unwrap(),
                )
                .unwrap();
                let c = Tensor::new(&[1.0f64, -2.0, 0.5, 3.0], &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
                let run = |f: &dyn Fn(&Tensor) -> Result<Tensor>| {
                    let p = f(g.as_tensor()).unwrap();
                    let grads = p.mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
                    let flat =
                        |t: &Tensor| t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
                    (flat(&p), flat(grads.get(g.as_tensor()).unwrap()))
                };
                let (a, b) = (run(&gate_product), run(&gate_product_reference));
                let tol = if dtype == DType::F64 { 1e-14 } else { 1e-6 };
                for (x, y) in a.0.iter().chain(&a.1).zip(b.0.iter().chain(&b.1)) {
                    assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{dtype:?} cols={cols}: {x} vs {y}");
                }
            }
        }
    }
}

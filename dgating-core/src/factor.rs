//! The gate factorization `w_j = ω_j · γ_{j,1} ··· γ_{j,D-1}`: composing, its backward,
//! the closed-form balanced factorization and the imbalance it is measured by.

use serde::{Deserialize, Serialize};

use crate::config::check_depth;
use crate::error::{Error, Result, check_len};
use crate::layout::{GroupLayout, as_slices};
use crate::scalar::Scalar;

/// The scalar gates of one layout: a row-major `[J, D-1]` matrix, row `j` holding
/// `γ_{j,1} .. γ_{j,D-1}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateMatrix<T> {
    num_groups: usize,
    num_gates: usize,
    values: Vec<T>,
}

impl<T: Scalar> GateMatrix<T> {
    /// Wraps `values` (row-major `[num_groups, num_gates]`); `num_gates = D - 1 >= 1`.
    pub fn new(num_groups: usize, num_gates: usize, values: Vec<T>) -> Result<Self> {
        if num_gates == 0 {
            return Err(Error::InvalidDepth(1));
        }
        check_len(|| format!("gate matrix [{num_groups}, {num_gates}]"), num_groups * num_gates, values.len())?;
        Ok(Self { num_groups, num_gates, values })
    }

    /// All gates equal to `value` (the default initialization uses 1).
    pub fn filled(num_groups: usize, num_gates: usize, value: T) -> Result<Self> {
        Self::new(num_groups, num_gates, vec![value; num_groups * num_gates])
    }

    /// `J`.
    pub fn num_groups(&self) -> usize {
        self.num_groups
    }

    /// `D - 1`.
    pub fn num_gates(&self) -> usize {
        self.num_gates
    }

    /// `D`.
    pub fn depth(&self) -> usize {
        self.num_gates + 1
    }

    /// The gates of group `j`.
    pub fn row(&self, j: usize) -> &[T] {
        &self.values[j * self.num_gates..(j + 1) * self.num_gates]
    }

    /// Row-major values.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// Mutable row-major values.
    pub fn values_mut(&mut self) -> &mut [T] {
        &mut self.values
    }

    /// `Π_d γ_{j,d}` for every group.
    pub fn products(&self) -> Vec<T> {
        self.values.chunks(self.num_gates).map(|r| r.iter().fold(T::one(), |a, &g| a * g)).collect()
    }

    fn check_layout(&self, layout: &GroupLayout, context: &str) -> Result<()> {
        check_len(|| format!("{context}: gate rows vs layout groups"), layout.num_groups(), self.num_groups)
    }
}

/// `w = ω ⊙ Πγ`: every group `j` of the member buffers `omega` scaled by its gate product.
pub fn compose<T: Scalar>(layout: &GroupLayout, omega: &[&[T]], gates: &GateMatrix<T>) -> Result<Vec<Vec<T>>> {
    gates.check_layout(layout, "compose")?;
    layout.scale_groups(omega, &gates.products())
}

/// Gradients of the gate factors (excluding the penalty), given `∂L/∂w`:
///
/// ```text
/// ∂L/∂ω_j     = ∂L/∂w_j · Π_d γ_{j,d}
/// ∂L/∂γ_{j,d} = <∂L/∂w_j, ω_j> · Π_{k≠d} γ_{j,k}
/// ```
pub fn compose_backward<T: Scalar>(
    layout: &GroupLayout,
    omega: &[&[T]],
    gates: &GateMatrix<T>,
    grad_w: &[&[T]],
) -> Result<(Vec<Vec<T>>, GateMatrix<T>)> {
    gates.check_layout(layout, "compose backward")?;
    layout.check_buffers(omega, "compose backward (omega)")?;
    layout.check_buffers(grad_w, "compose backward (grad w)")?;
    let grad_omega = layout.scale_groups(grad_w, &gates.products())?;
    let mut grad_gates = GateMatrix::filled(gates.num_groups, gates.num_gates, T::zero())?;
    for j in 0..layout.num_groups() {
        let dot = T::of(layout.group_dot_f64(grad_w, omega, j));
        let row = gates.row(j);
        for d in 0..gates.num_gates {
            // Product over the other gates, without dividing (gates may be exactly 0).
            let others = row.iter().enumerate().filter(|&(k, _)| k != d).fold(T::one(), |a, (_, &g)| a * g);
            grad_gates.values[j * gates.num_gates + d] = dot * others;
        }
    }
    Ok((grad_omega, grad_gates))
}

/// A factorization of a layout's weights: primary buffers `ω` (one per member) and gates.
#[derive(Debug, Clone, PartialEq)]
pub struct Factorization<T> {
    /// `ω`, one buffer per layout member.
    pub omega: Vec<Vec<T>>,
    /// `γ`, `[J, D-1]`.
    pub gates: GateMatrix<T>,
}

impl<T: Scalar> Factorization<T> {
    /// `w = ω ⊙ Πγ`.
    pub fn compose(&self, layout: &GroupLayout) -> Result<Vec<Vec<T>>> {
        compose(layout, &as_slices(&self.omega), &self.gates)
    }
}

/// The balanced factorization of `w` (docs/METHOD.md §2): `γ_{j,d} = ||w_j||^(1/D)` and
/// `ω_j = w_j / ||w_j||^((D-1)/D)`, so `|γ_{j,d}| = ||ω_j||` and `ω ⊙ Πγ = w`.
/// It minimizes the factor penalty among all factorizations of `w` (AM-GM), e.g. to start
/// gated training from a dense model without changing its function. A zero group gets
/// `ω_j = 0`, `γ_j = 0`.
pub fn balance<T: Scalar>(layout: &GroupLayout, w: &[&[T]], depth: usize) -> Result<Factorization<T>> {
    check_depth(depth)?;
    let d = depth as f64;
    let norms = layout.group_norms(w)?;
    let omega_scale: Vec<T> =
        norms.iter().map(|&n| if n > 0.0 { T::of(n.powf(-(d - 1.0) / d)) } else { T::zero() }).collect();
    let omega = layout.scale_groups(w, &omega_scale)?;
    let gates = norms.iter().flat_map(|&n| std::iter::repeat_n(T::of(n.powf(1.0 / d)), depth - 1)).collect();
    Ok(Factorization { omega, gates: GateMatrix::new(layout.num_groups(), depth - 1, gates)? })
}

/// Imbalance `Δ_{j,d} = ||ω_j||² − γ_{j,d}²` of every gate, with summary statistics.
/// Under gradient flow on the gated objective it decays as `exp(−4λt/D)` (docs/METHOD.md §2).
#[derive(Debug, Clone, PartialEq)]
pub struct Imbalance {
    /// `Δ`, row-major `[J, D-1]`.
    pub values: Vec<f64>,
    /// `max |Δ|`.
    pub max_abs: f64,
    /// `mean |Δ|`.
    pub mean_abs: f64,
}

/// Computes the [`Imbalance`] of a factorization.
pub fn imbalance<T: Scalar>(layout: &GroupLayout, omega: &[&[T]], gates: &GateMatrix<T>) -> Result<Imbalance> {
    gates.check_layout(layout, "imbalance")?;
    let omega_sq = layout.group_sq_norms(omega)?;
    let values: Vec<f64> = omega_sq
        .iter()
        .enumerate()
        .flat_map(|(j, &o)| gates.row(j).iter().map(move |g| o - g.f64() * g.f64()))
        .collect();
    let max_abs = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mean_abs = values.iter().map(|v| v.abs()).sum::<f64>() / values.len() as f64;
    Ok(Imbalance { values, max_abs, mean_abs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_multiplies_each_group_by_its_gate_product() {
        let l = GroupLayout::columns("w", 2, 3).unwrap();
        let omega = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let gates = GateMatrix::new(3, 2, vec![1.0, 2.0, 0.5, 0.5, -1.0, 3.0]).unwrap();
        let w = compose(&l, &[&omega], &gates).unwrap();
        assert_eq!(w[0], vec![2.0, 0.5, -9.0, 8.0, 1.25, -18.0]);
    }

    #[test]
    fn balance_zero_group_is_zero() {
        let l = GroupLayout::rows("w", 2, 2).unwrap();
        let f = balance(&l, &[&[0.0f64, 0.0, 3.0, 4.0]], 3).unwrap();
        assert_eq!(f.gates.row(0), &[0.0, 0.0]);
        assert_eq!(&f.omega[0][..2], &[0.0, 0.0]);
        let g = 5.0f64.powf(1.0 / 3.0);
        assert!((f.gates.row(1)[0] - g).abs() < 1e-12);
        assert!(balance(&l, &[&[0.0f64; 4]], 1).is_err());
    }

    #[test]
    fn mismatched_gate_rows_are_errors() {
        let l = GroupLayout::rows("w", 2, 2).unwrap();
        let gates = GateMatrix::<f64>::filled(3, 1, 1.0).unwrap();
        assert!(compose(&l, &[&[1.0; 4]], &gates).is_err());
        assert!(GateMatrix::<f64>::new(2, 2, vec![1.0; 3]).is_err());
        assert!(GateMatrix::<f64>::new(2, 0, vec![]).is_err());
    }
}

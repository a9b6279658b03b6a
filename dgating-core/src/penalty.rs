//! Penalty values and the (sub)gradient of the direct penalty.
//!
//! None of these functions multiplies by `λ` unless it takes `lambda`: the value of the
//! objective's penalty term is `λ · group_penalty(..)` for (P) and `λ · factor_penalty(..)`
//! for (G) (docs/METHOD.md §1–2).

use crate::config::check_depth;
use crate::error::{Error, Result};
use crate::factor::GateMatrix;
use crate::layout::GroupLayout;
use crate::scalar::Scalar;

/// `Σ_j ||w_j||^(2/D)` from the group norms — the `L_{2,2/D}` penalty of (P) without `λ`.
/// `D = 2` is the group-lasso norm `Σ_j ||w_j||`.
pub fn group_penalty(norms: &[f64], depth: usize) -> Result<f64> {
    check_depth(depth)?;
    let q = 2.0 / depth as f64;
    Ok(norms.iter().map(|&n| n.powf(q)).sum())
}

/// `(1/D) · Σ_j ( ||ω_j||² + Σ_d γ_{j,d}² )` — the D-Gating factor penalty of (G) without
/// `λ`, with `D = gates.depth()`. By AM-GM it is `>= group_penalty` of the composed weights,
/// with equality exactly at balanced factorizations.
pub fn factor_penalty<T: Scalar>(layout: &GroupLayout, omega: &[&[T]], gates: &GateMatrix<T>) -> Result<f64> {
    let omega_sq: f64 = layout.group_sq_norms(omega)?.iter().sum();
    if gates.num_groups() != layout.num_groups() {
        return Err(Error::LengthMismatch {
            context: "factor penalty: gate rows vs layout groups".into(),
            expected: layout.num_groups(),
            actual: gates.num_groups(),
        });
    }
    let gates_sq: f64 = gates.values().iter().map(|g| g.f64() * g.f64()).sum();
    Ok((omega_sq + gates_sq) / gates.depth() as f64)
}

/// (Sub)gradient of the direct penalty `λ Σ_j ||w_j||^(2/D)` with respect to `w`.
///
/// Uses the smoothed norm `s_j = sqrt(||w_j||² + ε²)`, i.e. returns
/// `λ (2/D) s_j^(2/D − 2) w_j`. With `epsilon = 0` this is the exact gradient wherever
/// `w_j ≠ 0`; at `w_j = 0` it returns `0`, which is a valid subgradient for `D = 2` and the
/// usual convention for `D > 2` (where the penalty's slope is unbounded near 0 — the reason
/// the direct baseline never reaches exact zeros and oscillates around them). `ε > 0` bounds
/// the gradient by `λ (2/D) ε^(2/D − 1)·||w_j||`; it must be finite and `>= 0`.
pub fn direct_penalty_grad<T: Scalar>(
    layout: &GroupLayout,
    w: &[&[T]],
    depth: usize,
    lambda: f64,
    epsilon: f64,
) -> Result<Vec<Vec<T>>> {
    check_depth(depth)?;
    if !lambda.is_finite() || lambda < 0.0 {
        return Err(Error::InvalidLambda(lambda));
    }
    if !epsilon.is_finite() || epsilon < 0.0 {
        return Err(Error::InvalidParameter { what: "epsilon", value: epsilon, reason: "must be finite and >= 0" });
    }
    let q = 2.0 / depth as f64;
    let sq = layout.group_sq_norms(w)?;
    let scales: Vec<T> = sq
        .iter()
        .map(|&n2| {
            let s2 = n2 + epsilon * epsilon;
            if s2 > 0.0 { T::of(lambda * q * s2.powf(q / 2.0 - 1.0)) } else { T::zero() }
        })
        .collect();
    layout.scale_groups(w, &scales)
}

//! Proximal gradient for the group penalty (the `prox` baseline and the reference for `D = 2`).
//!
//! Minimizes `P(β, b) = L(β, b) + λ Σ_j ||β_j||^(2/D)` by
//! `β ← prox_{ηλ}(β − η ∇L)` with `η = 1/Lip` ([`LinearProblem::lipschitz`]); the intercept
//! takes a plain gradient step. For `D = 2` (convex) FISTA momentum is used; for `D > 2`
//! (non-convex) plain monotone steps, which converge to a stationary point.

use crate::config::GateConfig;
use crate::error::{Error, Result};
use crate::layout::GroupLayout;
use crate::penalty::group_penalty;
use crate::prox::prox_groups;
use crate::solver::problem::LinearProblem;

/// Stopping rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProxOptions {
    /// Maximum number of steps.
    pub max_iter: usize,
    /// Stop once `max |Δβ|, |Δb|` of one step is below `tol · max(1, max |β|)`.
    pub tol: f64,
}

/// Result of [`proximal_gradient`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProxSolution {
    /// Coefficients `β`.
    pub coef: Vec<f64>,
    /// Intercept.
    pub intercept: f64,
    /// Final value of `P`.
    pub objective: f64,
    /// Steps taken.
    pub iterations: usize,
    /// Whether the tolerance was reached.
    pub converged: bool,
}

/// `P(β, b)`.
pub fn penalized_objective(
    problem: &LinearProblem,
    layout: &GroupLayout,
    config: &GateConfig,
    coef: &[f64],
    intercept: f64,
) -> Result<f64> {
    let (loss, _, _) = problem.loss_and_grad(coef, intercept)?;
    Ok(loss + config.lambda() * group_penalty(&layout.group_norms(&[coef])?, config.depth())?)
}

/// Runs proximal gradient from `β = 0` and the null intercept.
pub fn proximal_gradient(
    problem: &LinearProblem,
    layout: &GroupLayout,
    config: &GateConfig,
    options: &ProxOptions,
) -> Result<ProxSolution> {
    problem.check_layout(layout)?;
    if !options.tol.is_finite() || options.tol < 0.0 {
        return Err(Error::InvalidParameter {
            what: "tolerance",
            value: options.tol,
            reason: "must be finite and >= 0",
        });
    }
    let step = 1.0 / problem.lipschitz();
    let t = step * config.lambda();
    let accelerate = config.depth() == 2;
    let mut beta = vec![0.0; problem.p()];
    let mut b = problem.null_intercept();
    let (mut y_beta, mut y_b) = (beta.clone(), b);
    let mut momentum = 1.0f64;
    let mut converged = false;
    let mut iterations = 0;
    while iterations < options.max_iter {
        let (loss, grad, grad_b) = problem.loss_and_grad(&y_beta, y_b)?;
        if !loss.is_finite() {
            return Err(Error::Diverged { solver: "proximal gradient", iteration: iterations, value: loss });
        }
        let moved: Vec<f64> = y_beta.iter().zip(&grad).map(|(w, g)| w - step * g).collect();
        let next = prox_groups(layout, &[&moved], t, config.depth())?.swap_remove(0);
        let next_b = if problem.fit_intercept() { y_b - step * grad_b } else { 0.0 };
        let change = next.iter().zip(&beta).map(|(a, c)| (a - c).abs()).fold((next_b - b).abs(), f64::max);
        let scale = next.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        if accelerate {
            let m_next = 0.5 * (1.0 + (1.0 + 4.0 * momentum * momentum).sqrt());
            let c = (momentum - 1.0) / m_next;
            y_beta = next.iter().zip(&beta).map(|(n, o)| n + c * (n - o)).collect();
            y_b = next_b + c * (next_b - b);
            momentum = m_next;
        } else {
            y_beta.clone_from(&next);
            y_b = next_b;
        }
        beta = next;
        b = next_b;
        iterations += 1;
        if change < options.tol * scale {
            converged = true;
            break;
        }
    }
    let objective = penalized_objective(problem, layout, config, &beta, b)?;
    Ok(ProxSolution { coef: beta, intercept: b, objective, iterations, converged })
}

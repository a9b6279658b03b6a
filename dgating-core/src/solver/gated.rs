//! Full-batch gradient descent on the D-Gating factors of a linear model.
//!
//! Minimizes the gated objective (docs/METHOD.md eq. G) for `β = ω ⊙ Πγ`:
//!
//! ```text
//! G(ω, γ, b) = L(ω ⊙ Πγ, b) + (λ/D) · Σ_j ( ||ω_j||² + Σ_d γ_{j,d}² )
//! ```
//!
//! with plain gradient steps of fixed size `η` on every factor (weight decay `2λ/D` enters
//! the gradient, docs/METHOD.md's convention). This is exactly the dynamics whose imbalance obeys
//! `Δ⁺ = (1 − 2ηλ/D)² Δ + O(η²)`; it is the reference the `dgating-nn` layers are checked
//! against.

use crate::config::GateConfig;
use crate::error::{Error, Result};
use crate::factor::{Factorization, GateMatrix, compose_backward};
use crate::layout::GroupLayout;
use crate::penalty::factor_penalty;
use crate::solver::problem::LinearProblem;

/// Step size and stopping rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GdOptions {
    /// Fixed step size `η > 0`.
    pub learning_rate: f64,
    /// Maximum number of steps.
    pub max_iter: usize,
    /// Stop once the largest absolute gradient entry of `G` (all factors and the
    /// intercept) is below this.
    pub tol: f64,
}

impl GdOptions {
    fn check(&self) -> Result<()> {
        if !self.learning_rate.is_finite() || self.learning_rate <= 0.0 {
            return Err(Error::InvalidParameter {
                what: "learning rate",
                value: self.learning_rate,
                reason: "must be finite and > 0",
            });
        }
        if !self.tol.is_finite() || self.tol < 0.0 {
            return Err(Error::InvalidParameter {
                what: "tolerance",
                value: self.tol,
                reason: "must be finite and >= 0",
            });
        }
        Ok(())
    }
}

/// The state of gated gradient descent: the factors of `β` and the intercept.
#[derive(Debug, Clone, PartialEq)]
pub struct GatedState {
    /// `ω` (one buffer of length `p`) and `γ` (`[J, D-1]`).
    pub factors: Factorization<f64>,
    /// Unpenalized intercept (0 and untouched without one).
    pub intercept: f64,
}

impl GatedState {
    /// `β = ω ⊙ Πγ`.
    pub fn coef(&self, layout: &GroupLayout) -> Result<Vec<f64>> {
        Ok(self.factors.compose(layout)?.swap_remove(0))
    }

    /// A start that is the same for every group: `ω = scale` everywhere, gates balanced
    /// to it (`γ = ||ω_j||`), intercept at the null fit.
    pub fn uniform(problem: &LinearProblem, layout: &GroupLayout, config: &GateConfig, scale: f64) -> Result<Self> {
        problem.check_layout(layout)?;
        let gate = scale * (layout.group_len() as f64).sqrt();
        Ok(Self {
            factors: Factorization {
                omega: vec![vec![scale; problem.p()]],
                gates: GateMatrix::filled(layout.num_groups(), config.num_gates(), gate)?,
            },
            intercept: problem.null_intercept(),
        })
    }
}

/// Result of [`gated_gradient_descent`].
#[derive(Debug, Clone, PartialEq)]
pub struct GatedSolution {
    /// Final factors and intercept.
    pub state: GatedState,
    /// Composed coefficients `β`.
    pub coef: Vec<f64>,
    /// Final value of `G`.
    pub objective: f64,
    /// Steps taken.
    pub iterations: usize,
    /// Whether the gradient tolerance was reached.
    pub converged: bool,
}

/// One gradient step of size `lr` on `G`; returns `(G, max |∇G|)` at the state *before*
/// the step.
pub fn gated_step(
    problem: &LinearProblem,
    layout: &GroupLayout,
    config: &GateConfig,
    state: &mut GatedState,
    lr: f64,
) -> Result<(f64, f64)> {
    problem.check_layout(layout)?;
    let f = &mut state.factors;
    let beta = f.compose(layout)?.swap_remove(0);
    let (loss, grad_beta, grad_b) = problem.loss_and_grad(&beta, state.intercept)?;
    let omega = [f.omega[0].as_slice()];
    let objective = loss + config.lambda() * factor_penalty(layout, &omega, &f.gates)?;
    let (mut g_omega, g_gates) = compose_backward(layout, &omega, &f.gates, &[&grad_beta])?;
    let wd = config.weight_decay();
    let mut max_grad = grad_b.abs();
    for (w, g) in f.omega[0].iter_mut().zip(g_omega.swap_remove(0)) {
        let g = g + wd * *w;
        max_grad = max_grad.max(g.abs());
        *w -= lr * g;
    }
    for (w, g) in f.gates.values_mut().iter_mut().zip(g_gates.values()) {
        let g = g + wd * *w;
        max_grad = max_grad.max(g.abs());
        *w -= lr * g;
    }
    state.intercept -= lr * grad_b;
    Ok((objective, max_grad))
}

/// Runs [`gated_step`] until the gradient tolerance or `max_iter`.
pub fn gated_gradient_descent(
    problem: &LinearProblem,
    layout: &GroupLayout,
    config: &GateConfig,
    init: GatedState,
    options: &GdOptions,
) -> Result<GatedSolution> {
    options.check()?;
    let mut state = init;
    let mut objective = f64::NAN;
    let mut converged = false;
    let mut iterations = 0;
    while iterations < options.max_iter {
        let (obj, max_grad) = gated_step(problem, layout, config, &mut state, options.learning_rate)?;
        if !obj.is_finite() || !max_grad.is_finite() {
            return Err(Error::Diverged { solver: "gated gradient descent", iteration: iterations, value: obj });
        }
        objective = obj;
        iterations += 1;
        if max_grad < options.tol {
            converged = true;
            break;
        }
    }
    let coef = state.coef(layout)?;
    Ok(GatedSolution { state, coef, objective, iterations, converged })
}

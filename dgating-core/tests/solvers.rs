//! The reference solvers against the method's equivalences (docs/METHOD.md §2), in f64.

use dgating_core::solver::gated::gated_step;
use dgating_core::solver::proximal::penalized_objective;
use dgating_core::{
    GateConfig, GatedState, GdOptions, GroupSparseSpec, Loss, ProxOptions, Threshold, as_slices, balance,
    direct_penalty_grad, gated_gradient_descent, imbalance, proximal_gradient,
};

fn small_problem(loss: Loss, seed: u64) -> dgating_core::GroupSparseData {
    GroupSparseSpec { samples: 120, groups: 8, group_size: 3, active_groups: 3, noise_std: 0.3, loss, seed }
        .generate()
        .unwrap()
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
    let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    diff / norm
}

/// One exact GD step changes every imbalance by (1 − 2ηλ/D)²·Δ + O(η²): the loss-gradient
/// terms cancel. We check |Δ⁺ − (1 − 2ηλ/D)²Δ| <= C η² with C measured by halving η.
#[test]
fn one_gd_step_scales_imbalance() {
    let data = small_problem(Loss::Squared, 1);
    for depth in [2, 3, 4] {
        let cfg = GateConfig::new(depth, 0.2).unwrap();
        let mut residuals = vec![];
        for lr in [1e-3, 5e-4, 2.5e-4] {
            // Start from an unbalanced point: ω = 0.5, γ = 1.3.
            let mut state = GatedState::uniform(&data.problem, &data.layout, &cfg, 0.5).unwrap();
            state.factors.gates.values_mut().iter_mut().for_each(|g| *g = 1.3);
            let omega = as_slices(&state.factors.omega);
            let before = imbalance(&data.layout, &omega, &state.factors.gates).unwrap();
            gated_step(&data.problem, &data.layout, &cfg, &mut state, lr).unwrap();
            let after = imbalance(&data.layout, &as_slices(&state.factors.omega), &state.factors.gates).unwrap();
            let factor = (1.0 - 2.0 * lr * cfg.lambda() / depth as f64).powi(2);
            let worst =
                before.values.iter().zip(&after.values).map(|(b, a)| (a - factor * b).abs()).fold(0.0f64, f64::max);
            // The O(η) term is gone: without the cancellation the change would be ~η·|∇L|.
            assert!(worst < 0.5 * lr, "D={depth} lr={lr}: residual {worst}");
            residuals.push(worst);
        }
        // Second order: halving η divides the residual by ~4 (accept 3..5).
        for w in residuals.windows(2) {
            let ratio = w[0] / w[1];
            assert!((3.0..5.0).contains(&ratio), "D={depth}: residual ratio {ratio} is not O(η²)");
        }
    }
}

/// D = 2 gated GD and proximal group lasso reach the same coefficients (rel. err <= 1e-6).
#[test]
fn d2_gating_equals_group_lasso() {
    for (loss, seed) in [(Loss::Squared, 3), (Loss::Logistic, 4)] {
        let data = small_problem(loss, seed);
        let lam_max = data.problem.lambda_max(&data.layout).unwrap();
        let cfg = GateConfig::new(2, 0.3 * lam_max).unwrap();
        let prox = proximal_gradient(&data.problem, &data.layout, &cfg, &ProxOptions { max_iter: 200_000, tol: 1e-14 })
            .unwrap();
        assert!(prox.converged, "{loss:?}: prox did not converge");
        let init = GatedState::uniform(&data.problem, &data.layout, &cfg, 0.3).unwrap();
        let lr = 0.5 / data.problem.lipschitz();
        let gd = gated_gradient_descent(
            &data.problem,
            &data.layout,
            &cfg,
            init,
            &GdOptions { learning_rate: lr, max_iter: 400_000, tol: 1e-11 },
        )
        .unwrap();
        assert!(gd.converged, "{loss:?}: gated GD did not converge in {} steps", gd.iterations);
        let err = rel_err(&gd.coef, &prox.coef);
        assert!(err <= 1e-6, "{loss:?}: relative error {err}");
        // Same support, and some groups are exactly zero in the prox solution.
        let t = Threshold::absolute(1e-6).unwrap();
        let gd_mask = t.keep_mask(&data.layout.group_norms(&[&gd.coef]).unwrap());
        let px_mask = t.keep_mask(&data.layout.group_norms(&[&prox.coef]).unwrap());
        assert_eq!(gd_mask, px_mask);
        assert!(px_mask.iter().any(|k| !k), "{loss:?}: lambda too small to zero any group");
        // And the gated objective at its optimum equals the group-lasso objective.
        let direct = penalized_objective(&data.problem, &data.layout, &cfg, &gd.coef, gd.state.intercept).unwrap();
        assert!((gd.objective - direct).abs() <= 1e-8 * direct.abs(), "{} vs {direct}", gd.objective);
    }
}

/// For D = 3, 4 the gated GD solution is a stationary point of (P) (the paper's theorem:
/// local minima of (G) are local minima of (P)): on every surviving group the gradient of
/// `L + λ Σ ||w_j||^(2/D)` vanishes, and the true support is recovered.
#[test]
fn deeper_gating_ends_at_a_stationary_point_of_the_penalized_problem() {
    let data = small_problem(Loss::Squared, 5);
    let lam_max = data.problem.lambda_max(&data.layout).unwrap();
    // λ as a fraction of the group-lasso λ_max; deeper gates penalize small groups harder.
    // The curvature in ω_j grows like ||w_j||^(2(D-1)/D), so deeper gates need smaller steps.
    for (depth, frac, lr_scale) in [(3, 0.2, 0.2), (4, 0.1, 0.05)] {
        let cfg = GateConfig::new(depth, frac * lam_max).unwrap();
        let init = GatedState::uniform(&data.problem, &data.layout, &cfg, 0.3).unwrap();
        let lr = lr_scale / data.problem.lipschitz();
        let gd = gated_gradient_descent(
            &data.problem,
            &data.layout,
            &cfg,
            init,
            &GdOptions { learning_rate: lr, max_iter: 400_000, tol: 1e-10 },
        )
        .unwrap();
        assert!(gd.converged, "D={depth}: {} steps", gd.iterations);
        let norms = data.layout.group_norms(&[&gd.coef]).unwrap();
        let mask = Threshold::absolute(1e-6).unwrap().keep_mask(&norms);
        assert_eq!(mask, data.support, "D={depth}: support not recovered");
        let (_, grad, _) = data.problem.loss_and_grad(&gd.coef, 0.0).unwrap();
        let pen = direct_penalty_grad(&data.layout, &[&gd.coef], depth, cfg.lambda(), 0.0).unwrap().swap_remove(0);
        let total: Vec<f64> = grad.iter().zip(&pen).map(|(a, b)| a + b).collect();
        let total_norms = data.layout.group_norms(&[&total]).unwrap();
        for j in (0..mask.len()).filter(|&j| mask[j]) {
            assert!(total_norms[j] < 1e-8, "D={depth} group {j}: |grad P_j| = {}", total_norms[j]);
        }
    }
}

/// Balanced initialization from a dense solution changes nothing (function-preserving).
#[test]
fn balanced_start_preserves_predictions() {
    let data = small_problem(Loss::Squared, 6);
    let f = balance(&data.layout, &[&data.coef], 3).unwrap();
    let coef = f.compose(&data.layout).unwrap().swap_remove(0);
    let a = data.problem.predict(&data.coef, 0.0);
    let b = data.problem.predict(&coef, 0.0);
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + x.abs())));
}

#[test]
fn invalid_options_are_errors() {
    let data = small_problem(Loss::Squared, 7);
    let cfg = GateConfig::new(2, 0.1).unwrap();
    let init = GatedState::uniform(&data.problem, &data.layout, &cfg, 0.3).unwrap();
    let bad = GdOptions { learning_rate: 0.0, max_iter: 10, tol: 1e-6 };
    assert!(gated_gradient_descent(&data.problem, &data.layout, &cfg, init.clone(), &bad).is_err());
    // A huge step diverges and says so instead of returning garbage.
    let huge = GdOptions { learning_rate: 1e6, max_iter: 1000, tol: 0.0 };
    let err = gated_gradient_descent(&data.problem, &data.layout, &cfg, init, &huge).unwrap_err();
    assert!(err.to_string().contains("diverged"), "{err}");
}

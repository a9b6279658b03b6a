//! Support recovery on a synthetic group-sparse regression, solved by D-Gating gradient
//! descent for several depths `D` (the `dgating demo` job).
//!
//! `λ` is set per depth as a fraction of the group-lasso `λ_max` (the smallest `λ` with an
//! all-zero `D = 2` solution), because the penalty `r^(2/D)` bites harder on small groups as
//! `D` grows. The step size follows the curvature of the factorized loss, which grows like
//! `||w_j||^(2(D-1)/D)`: `η = 0.25 / (Lip · max(1, R)^(2(D-1)/D))` with `R` the largest group
//! norm of a nearly unpenalized fit.

use serde::{Deserialize, Serialize};

use dgating_core::{
    GateConfig, GatedState, GdOptions, GroupSparseSpec, Loss, ProxOptions, Threshold, gated_gradient_descent,
    proximal_gradient,
};

use crate::error::{Error, Result};

/// One solver setting: a depth and its `λ` as a fraction of `λ_max`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DepthSetting {
    /// `D >= 2`.
    pub depth: usize,
    /// `λ / λ_max`.
    pub lambda_fraction: f64,
}

/// The experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryConfig {
    /// The data.
    pub data: GroupSparseSpec,
    /// Depths to solve with.
    pub settings: Vec<DepthSetting>,
    /// Read-out of the recovered support.
    pub threshold: Threshold,
    /// Step limit per solve.
    pub max_iter: usize,
    /// Gradient tolerance.
    pub tol: f64,
}

impl Default for RecoveryConfig {
    /// 50 groups of 4 features, 5 active, 200 samples; `D ∈ {2, 3, 4}`.
    fn default() -> Self {
        Self {
            data: GroupSparseSpec {
                samples: 200,
                groups: 50,
                group_size: 4,
                active_groups: 5,
                noise_std: 0.5,
                loss: Loss::Squared,
                seed: 2025,
            },
            settings: vec![
                DepthSetting { depth: 2, lambda_fraction: 0.1 },
                DepthSetting { depth: 3, lambda_fraction: 0.1 },
                DepthSetting { depth: 4, lambda_fraction: 0.03 },
            ],
            threshold: Threshold::new(1e-4, 1e-3).expect("constant threshold is valid"),
            max_iter: 200_000,
            tol: 1e-9,
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryRow {
    /// `D`.
    pub depth: usize,
    /// `λ` used.
    pub lambda: f64,
    /// Indices of the groups kept by the threshold.
    pub recovered: Vec<usize>,
    /// Whether `recovered` equals the true support.
    pub exact: bool,
    /// `||β̂ − β|| / ||β||`.
    pub coef_rel_error: f64,
    /// Gradient steps taken.
    pub iterations: usize,
    /// Whether the gradient tolerance was reached.
    pub converged: bool,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// The configuration that produced it.
    pub config: RecoveryConfig,
    /// `λ_max` of the data.
    pub lambda_max: f64,
    /// Indices of the truly active groups.
    pub true_support: Vec<usize>,
    /// One row per setting.
    pub rows: Vec<RecoveryRow>,
}

fn indices(mask: &[bool]) -> Vec<usize> {
    mask.iter().enumerate().filter_map(|(i, &k)| k.then_some(i)).collect()
}

/// Runs the experiment.
pub fn run(config: &RecoveryConfig) -> Result<RecoveryReport> {
    if config.settings.is_empty() {
        return Err(Error::InvalidConfig("no depth settings".into()));
    }
    let data = config.data.generate()?;
    let (problem, layout) = (&data.problem, &data.layout);
    let lambda_max = problem.lambda_max(layout)?;
    let lip = problem.lipschitz();
    // Scale of the solution from a lightly penalized group lasso.
    let light = GateConfig::new(2, 1e-3 * lambda_max)?;
    let rough = proximal_gradient(problem, layout, &light, &ProxOptions { max_iter: 5_000, tol: 1e-8 })?;
    let scale = layout.group_norms(&[&rough.coef])?.into_iter().fold(1.0f64, f64::max);
    let true_norm = data.coef.iter().map(|c| c * c).sum::<f64>().sqrt();
    let mut rows = Vec::with_capacity(config.settings.len());
    for s in &config.settings {
        if !(s.lambda_fraction.is_finite() && s.lambda_fraction > 0.0) {
            return Err(Error::InvalidConfig(format!("lambda fraction {} must be > 0", s.lambda_fraction)));
        }
        let gate = GateConfig::new(s.depth, s.lambda_fraction * lambda_max)?;
        let d = s.depth as f64;
        let lr = 0.25 / (lip * scale.powf(2.0 * (d - 1.0) / d));
        let init = GatedState::uniform(problem, layout, &gate, 0.5)?;
        let sol = gated_gradient_descent(
            problem,
            layout,
            &gate,
            init,
            &GdOptions { learning_rate: lr, max_iter: config.max_iter, tol: config.tol },
        )?;
        let mask = config.threshold.keep_mask(&layout.group_norms(&[&sol.coef])?);
        let err = sol.coef.iter().zip(&data.coef).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt() / true_norm;
        rows.push(RecoveryRow {
            depth: s.depth,
            lambda: gate.lambda(),
            recovered: indices(&mask),
            exact: mask == data.support,
            coef_rel_error: err,
            iterations: sol.iterations,
            converged: sol.converged,
        });
    }
    Ok(RecoveryReport { config: config.clone(), lambda_max, true_support: indices(&data.support), rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_demo_recovers_the_support_for_every_depth() {
        let report = run(&RecoveryConfig::default()).unwrap();
        assert_eq!(report.true_support.len(), 5);
        for row in &report.rows {
            assert!(row.converged, "D={} did not converge ({} steps)", row.depth, row.iterations);
            assert!(row.exact, "D={}: recovered {:?}, true {:?}", row.depth, row.recovered, report.true_support);
        }
        // The group lasso (D = 2) shrinks surviving groups; deeper gating is less biased.
        let err: Vec<f64> = report.rows.iter().map(|r| r.coef_rel_error).collect();
        eprintln!("coefficient errors by depth: {err:?}");
        assert!(err[0] < 0.2, "D=2 error {}", err[0]);
        assert!(err[1] < err[0] && err[2] < err[0], "deeper gates should be less biased: {err:?}");
    }

    #[test]
    fn empty_settings_are_an_error() {
        let cfg = RecoveryConfig { settings: vec![], ..RecoveryConfig::default() };
        assert!(run(&cfg).is_err());
    }
}

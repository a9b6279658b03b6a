//! [`EpochMetrics`]: what every epoch logs (one JSON line each in `metrics.jsonl`), and the
//! group statistics behind it.

use dgating_core::{Threshold, as_slices, factor_penalty, group_penalty, imbalance};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::gates::GateSet;
use crate::params::ParamStore;

/// One epoch's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimizer steps so far.
    pub steps: usize,
    /// Mean training loss over the epoch's batches (without penalty).
    pub train_loss: f64,
    /// Validation accuracy in `[0, 1]` (classification) or `None`.
    pub val_accuracy: Option<f64>,
    /// Validation loss: cross-entropy (classification) or `½·MSE` (regression).
    pub val_loss: f64,
    /// Groups above the threshold, over all gate sets.
    pub active_groups: usize,
    /// All groups.
    pub total_groups: usize,
    /// Active groups per gate set (in structure order).
    pub active_per_layer: Vec<usize>,
    /// `max |Δ|` over all gates (`None` without gates).
    pub max_imbalance: Option<f64>,
    /// `mean |Δ|` over all gates.
    pub mean_imbalance: Option<f64>,
    /// `(1/D) Σ (||ω_j||² + Σ γ²)` summed over gate sets (without `λ`).
    pub factor_penalty: Option<f64>,
    /// `Σ_j ||w_j||^(2/D)` of the composed weights over all gate sets (without `λ`).
    pub group_penalty: f64,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Validation root mean squared error (regression).
    #[serde(default)]
    pub val_rmse: Option<f64>,
    /// Validation mean absolute error (regression).
    #[serde(default)]
    pub val_mae: Option<f64>,
    /// Validation `R²` (regression).
    #[serde(default)]
    pub val_r2: Option<f64>,
}

/// Group statistics of a model's gate sets.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStats {
    /// `||w_j||` of the composed weights, per gate set.
    pub norms: Vec<Vec<f64>>,
    /// Kept-group mask per gate set.
    pub masks: Vec<Vec<bool>>,
    /// `Σ ||w_j||^(2/D)`.
    pub group_penalty: f64,
    /// Factor penalty of gated layers.
    pub factor_penalty: Option<f64>,
    /// `(max, mean)` imbalance over gated layers.
    pub imbalance: Option<(f64, f64)>,
}

/// Computes [`GroupStats`] for the gate sets `sets` of a model with parameters `store`,
/// with `threshold` and depth `depth`.
pub fn group_stats(sets: &[GateSet], store: &ParamStore, threshold: &Threshold, depth: usize) -> Result<GroupStats> {
    let mut stats =
        GroupStats { norms: vec![], masks: vec![], group_penalty: 0.0, factor_penalty: None, imbalance: None };
    let (mut max_imb, mut sum_imb, mut count) = (0.0f64, 0.0f64, 0usize);
    for set in sets {
        let layout = set.layout();
        let norms = set.group_norms(store)?;
        stats.group_penalty += group_penalty(&norms, depth)?;
        stats.masks.push(threshold.keep_mask(&norms));
        stats.norms.push(norms);
        if let Some(g) = set.gate_matrix()? {
            let omega = set.omega_buffers(store)?;
            *stats.factor_penalty.get_or_insert(0.0) += factor_penalty(layout, &as_slices(&omega), &g)?;
            let imb = imbalance(layout, &as_slices(&omega), &g)?;
            max_imb = max_imb.max(imb.max_abs);
            sum_imb += imb.mean_abs * imb.values.len() as f64;
            count += imb.values.len();
        }
    }
    if count > 0 {
        stats.imbalance = Some((max_imb, sum_imb / count as f64));
    }
    Ok(stats)
}

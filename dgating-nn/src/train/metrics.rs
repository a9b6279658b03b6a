//! [`EpochMetrics`]: what every epoch logs (one JSON line each in `metrics.jsonl`), and the
//! group statistics behind it.

use dgating_core::{GroupLayout, Threshold, as_slices, factor_penalty, group_penalty, imbalance};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layers::GatedLinear;
use crate::tensor_util::to_f64_vec;

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
    /// Groups above the threshold, over all group layers.
    pub active_groups: usize,
    /// All groups.
    pub total_groups: usize,
    /// Active groups per group layer.
    pub active_per_layer: Vec<usize>,
    /// `max |Δ|` over all gates (`None` without gates).
    pub max_imbalance: Option<f64>,
    /// `mean |Δ|` over all gates.
    pub mean_imbalance: Option<f64>,
    /// `(1/D) Σ (||ω_j||² + Σ γ²)` summed over gated layers (without `λ`).
    pub factor_penalty: Option<f64>,
    /// `Σ_j ||w_j||^(2/D)` of the composed weights over all group layers (without `λ`).
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

/// Group statistics of a model's group layers.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStats {
    /// `||w_j||` of the composed weights, per layer.
    pub norms: Vec<Vec<f64>>,
    /// Kept-group mask per layer.
    pub masks: Vec<Vec<bool>>,
    /// `Σ ||w_j||^(2/D)`.
    pub group_penalty: f64,
    /// Factor penalty of gated layers.
    pub factor_penalty: Option<f64>,
    /// `(max, mean)` imbalance over gated layers.
    pub imbalance: Option<(f64, f64)>,
}

/// The member buffers of a layer's effective (composed) weights, in layout order.
pub fn effective_buffers(layer: &GatedLinear) -> Result<(GroupLayout, Vec<Vec<f64>>)> {
    let layout = layer.layout()?;
    let (w, b) = layer.effective()?;
    let mut bufs = vec![to_f64_vec(&w)?];
    if layout.members().len() > 1
        && let Some(b) = b
    {
        bufs.push(to_f64_vec(&b)?);
    }
    Ok((layout, bufs))
}

/// Computes [`GroupStats`] for `layers` with `threshold` and depth `depth`.
pub fn group_stats(layers: &[&GatedLinear], threshold: &Threshold, depth: usize) -> Result<GroupStats> {
    let mut stats =
        GroupStats { norms: vec![], masks: vec![], group_penalty: 0.0, factor_penalty: None, imbalance: None };
    let (mut max_imb, mut sum_imb, mut count) = (0.0f64, 0.0f64, 0usize);
    for layer in layers {
        let (layout, bufs) = effective_buffers(layer)?;
        let norms = layout.group_norms(&as_slices(&bufs))?;
        stats.group_penalty += group_penalty(&norms, depth)?;
        stats.masks.push(threshold.keep_mask(&norms));
        stats.norms.push(norms);
        if let Some(gates) = layer.gates_var() {
            let mut omega = vec![to_f64_vec(layer.weight_var().as_tensor())?];
            if layout.members().len() > 1
                && let Some(b) = layer.bias_var()
            {
                omega.push(to_f64_vec(b.as_tensor())?);
            }
            let g =
                dgating_core::GateMatrix::new(layout.num_groups(), gates.dims()[1], to_f64_vec(gates.as_tensor())?)?;
            *stats.factor_penalty.get_or_insert(0.0) += factor_penalty(&layout, &as_slices(&omega), &g)?;
            let imb = imbalance(&layout, &as_slices(&omega), &g)?;
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

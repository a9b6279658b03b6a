//! [`PointRecord`]: what one point of a sweep measured. One JSON file per point
//! (`OUT/records/<id>.json`, written atomically): a finished point is skipped on resume, and
//! shards on different machines never write the same file.

use serde::{Deserialize, Serialize};

use crate::sweep::point::Point;

/// One point's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRecord {
    /// The point.
    pub point: Point,
    /// Its id ([`Point::id`]).
    pub id: String,
    /// Groups per gate set before pruning.
    pub groups: Vec<usize>,
    /// Groups kept per gate set.
    pub kept: Vec<usize>,
    /// Fraction of all groups removed.
    pub removed_fraction: f64,
    /// Parameters of the compacted model.
    pub params: usize,
    /// Parameters of the unpruned (dense-equivalent) model.
    pub params_before: usize,
    /// FLOPs per sample of the compacted model.
    pub flops: usize,
    /// FLOPs per sample before pruning.
    pub flops_before: usize,
    /// `accuracy` (classification) or `r2` (regression): higher is better.
    pub metric_name: String,
    /// Held-out metric of the compacted model, no fine-tuning.
    pub metric: f64,
    /// Held-out metric after the sweep's common fine-tuning budget (`None`: no fine-tuning).
    pub metric_finetuned: Option<f64>,
    /// Per gate set: whether the read-out found a gap (the groups it removed were clearly
    /// zero) or cut inside a continuum (`false`; always `false` for magnitude pruning).
    pub gap_found: Vec<bool>,
    /// Whether the kept input features are exactly the true support (synthetic task only).
    pub support_exact: Option<bool>,
    /// `||β̂ − β|| / ||β||` of the compacted linear model against the true coefficients, in
    /// raw feature units (synthetic task with the linear model only).
    #[serde(default)]
    pub coef_error: Option<f64>,
    /// Training time in seconds (fine-tuning excluded).
    pub train_seconds: f64,
    /// Fine-tuning time in seconds.
    pub finetune_seconds: f64,
}

/// The CSV header of [`PointRecord::csv_row`].
pub const CSV_HEADER: &str = "id,task,method,depth,lambda,sparsity,seed,groups,kept,removed_fraction,params,params_before,flops,flops_before,metric_name,metric,metric_finetuned,gap_found,support_exact,coef_error,train_seconds,finetune_seconds";

impl PointRecord {
    /// One CSV row (lists joined with `;`).
    pub fn csv_row(&self) -> String {
        let opt = |v: Option<String>| v.unwrap_or_default();
        let list = |v: &[usize]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(";");
        let p = &self.point;
        [
            self.id.clone(),
            p.task.clone(),
            p.method.name().into(),
            opt(p.depth.map(|d| d.to_string())),
            opt(p.lambda.map(|l| format!("{l:e}"))),
            opt(p.sparsity.map(|s| s.to_string())),
            p.seed.to_string(),
            list(&self.groups),
            list(&self.kept),
            format!("{:.6}", self.removed_fraction),
            self.params.to_string(),
            self.params_before.to_string(),
            self.flops.to_string(),
            self.flops_before.to_string(),
            self.metric_name.clone(),
            format!("{:.6}", self.metric),
            opt(self.metric_finetuned.map(|m| format!("{m:.6}"))),
            self.gap_found.iter().map(|g| if *g { "1" } else { "0" }).collect::<Vec<_>>().join(";"),
            opt(self.support_exact.map(|s| s.to_string())),
            opt(self.coef_error.map(|c| format!("{c:.6}"))),
            format!("{:.3}", self.train_seconds),
            format!("{:.3}", self.finetune_seconds),
        ]
        .join(",")
    }
}

/// A point whose run ended without a model to score: every group of a gate set was removed
/// (λ too large for the task), or training diverged. Recorded (`records/<id>.failed.json`) so
/// that resume skips it and the report lists it; its metric is not averaged with the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedPoint {
    /// The point.
    pub point: Point,
    /// Its id.
    pub id: String,
    /// What happened, as the library said it.
    pub error: String,
}

//! What pruning bought, as plain data: parameters, FLOPs, removed groups, measured latency and
//! held-out results ([`crate::prune_run`] fills it in).

use std::collections::BTreeMap;
use std::path::PathBuf;

use dgating_core::ReadOut;
use dgating_nn::Architecture;
use serde::{Deserialize, Serialize};

use crate::error::Result;
pub use crate::format::GroupsRemoved;
use crate::verify::Verification;

/// Size and cost of the dense model an architecture computes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Size of every dim, by name.
    pub sizes: BTreeMap<String, usize>,
    /// Every tensor's elements (gate factors of a gated model are not counted: this is the
    /// dense model it computes).
    pub params: usize,
    /// Multiply-adds of one sample's forward, as FLOPs.
    pub flops_per_sample: usize,
}

impl Cost {
    /// The cost of `architecture`.
    pub fn of(architecture: &Architecture) -> Result<Self> {
        let s = architecture.structure()?;
        Ok(Self {
            sizes: s.sizes(),
            params: s.tensors().values().map(|t| t.iter().product::<usize>()).sum(),
            flops_per_sample: architecture.flops_per_sample(),
        })
    }
}

/// Median wall-clock time of one forward pass on the same batch. A measurement for reports,
/// never asserted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Rows per forward pass.
    pub batch: usize,
    /// Timed repetitions per model (after 2 warm-up passes).
    pub repetitions: usize,
    /// The gated model as trained (composes `ω·Πγ` in every pass).
    pub gated_ms: f64,
    /// The folded but unpruned dense model.
    pub dense_ms: f64,
    /// The compacted model.
    pub compact_ms: f64,
    /// `dense_ms / compact_ms`.
    pub speedup: f64,
}

/// Loss, accuracy (classification) or RMSE / MAE / R² (regression) on a data set: the
/// scores of `dgating-nn` ([`dgating_nn::train::Scores`]).
pub type Evaluation = dgating_nn::train::Scores;

/// Everything [`crate::prune_run`] found and did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    /// The training run.
    pub run_dir: PathBuf,
    /// Where the compacted model was written.
    pub out_dir: PathBuf,
    /// The read-out that decided which groups are zero.
    pub read_out: ReadOut,
    /// The dense model the gated one computes.
    pub before: Cost,
    /// The compacted model.
    pub after: Cost,
    /// Per gate set: what was removed, the cut-off and the gaps.
    pub groups: Vec<GroupsRemoved>,
    /// Compacted vs gated outputs on the held-out split.
    pub verification: Verification,
    /// Held-out loss/accuracy of the gated model.
    pub gated_eval: Evaluation,
    /// Held-out loss/accuracy of the compacted model.
    pub compact_eval: Evaluation,
    /// Names of the input features the compacted model reads (when the run had names).
    #[serde(default)]
    pub kept_input_names: Option<Vec<String>>,
    /// Measured forward latency.
    pub latency: Latency,
}

//! What pruning bought: parameters, FLOPs, removed groups and measured latency.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Tensor;
use dgating_core::{Decision, ReadOut};
use dgating_nn::{GateSite, Mlp, Model};
use serde::{Deserialize, Serialize};

use crate::compact::CompactMlp;
use crate::error::Result;
use crate::plan::PrunePlan;
use crate::verify::Verification;

/// Size and cost of a dense MLP of some widths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// `[inputs, hidden.., outputs]`.
    pub widths: Vec<usize>,
    /// Weights + biases: `Σ_l (in_l·out_l + out_l)` (gate factors of the gated model are not
    /// counted: this is the dense model it computes).
    pub params: usize,
    /// Multiply-adds as FLOPs per sample: `Σ_l 2·in_l·out_l`.
    pub flops_per_sample: usize,
}

impl Cost {
    /// The cost of widths `[inputs, hidden.., outputs]`.
    pub fn of_widths(widths: &[usize]) -> Self {
        Self {
            widths: widths.to_vec(),
            params: widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum(),
            flops_per_sample: widths.windows(2).map(|w| 2 * w[0] * w[1]).sum(),
        }
    }
}

/// Groups of one gate site before and after, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupsRemoved {
    /// Layer index.
    pub layer: usize,
    /// Where the groups are.
    pub site: GateSite,
    /// Groups before.
    pub groups: usize,
    /// Groups removed.
    pub removed: usize,
    /// The read-out's cut-off for this site and the gaps it saw (`None` for plans built from
    /// given masks). Absent in files written before the gap rule.
    #[serde(default)]
    pub decision: Option<Decision>,
}

impl GroupsRemoved {
    /// One entry per gate site of `plan`.
    pub fn of_plan(plan: &PrunePlan) -> Vec<Self> {
        plan.sites
            .iter()
            .map(|s| Self {
                layer: s.layer,
                site: s.site,
                groups: s.keep.len(),
                removed: s.removed(),
                decision: s.decision,
            })
            .collect()
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

fn median_ms(reps: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    for _ in 0..2 {
        f()?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let y = f()?;
        // Force the result (candle CPU ops are eager, but keep the value alive until timed).
        std::hint::black_box(&y);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Times `gated`, `dense` (the folded unpruned model) and `compact` on the full inputs `x`.
pub fn measure_latency(
    gated: &Mlp,
    dense: &CompactMlp,
    compact: &CompactMlp,
    x: &Tensor,
    repetitions: usize,
) -> Result<Latency> {
    let gated_ms = median_ms(repetitions, || Ok(gated.forward(x)?))?;
    let dense_ms = median_ms(repetitions, || dense.forward_full(x))?;
    let compact_ms = median_ms(repetitions, || compact.forward_full(x))?;
    Ok(Latency {
        batch: x.dims()[0],
        repetitions: repetitions.max(1),
        gated_ms,
        dense_ms,
        compact_ms,
        speedup: dense_ms / compact_ms.max(f64::MIN_POSITIVE),
    })
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
    /// Per gate site: what was removed, the cut-off and the gaps.
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

//! [`CompactMlp`]: the pruned model as plain dense layers, gates folded into the weights.
//!
//! [`compact()`] multiplies the gates into `ω` (`W = ω ⊙ Πγ`, what
//! [`GatedLinear::effective`](dgating_nn::GatedLinear::effective) returns) and cuts every
//! removed entry out of every coupled tensor, following the [`PrunePlan`]'s widths.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use dgating_core::{ReadOut, Threshold};
use dgating_nn::data::{Standardizer, Task};
use dgating_nn::params::ParamStore;
use dgating_nn::tensor_util::cpu_f32;
use dgating_nn::train::DataSpec;
use dgating_nn::train::EpochMetrics;
use dgating_nn::{GateSite, GatedLinear, Mlp, MlpConfig, Model, ops};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::PrunePlan;
use crate::report::GroupsRemoved;

/// Format tag of a compacted model (`config.json` field `format` and safetensors metadata
/// key `format`).
pub const COMPACT_FORMAT: &str = "dgating-compact-v1";

/// The only activation of compacted MLPs.
pub const ACTIVATION: &str = "relu";

/// Where a compacted model came from (informational; not needed to run it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// `D` of the gated model (`None` for ungated modes).
    pub depth: Option<usize>,
    /// `λ` of the run.
    pub lambda: Option<f64>,
    /// Training mode of the run (`dgating`, `prox`, ...).
    pub mode: Option<String>,
    /// The threshold that decided which groups are zero — with a gap rule, its floor
    /// (`None` when built from masks).
    pub threshold: Option<Threshold>,
    /// The full read-out: the rule and, per gate site, the cut-off, which part set it and
    /// the gaps seen. `None` when built from masks, and in files written before it existed
    /// (they still load).
    #[serde(default)]
    pub read_out: Option<ReadOutRecord>,
    /// Widths `[input, hidden.., output]` before pruning.
    pub original_widths: Vec<usize>,
    /// For each hidden width, the original indices of the kept neurons.
    pub kept_hidden: Vec<Vec<usize>>,
    /// The run's last epoch metrics, if available.
    pub metrics: Option<EpochMetrics>,
}

/// The held-out rows of the run a model came from: the run's data specification, seed and
/// data hash (refused if the data changed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutSource {
    /// The run's data (source, target, split).
    pub data: DataSpec,
    /// The run's seed (it seeds the split).
    pub seed: u64,
    /// SHA-256 of the run's raw data.
    pub data_sha256: Option<String>,
}

/// How the groups of a compacted model were chosen ([`Provenance::read_out`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadOutRecord {
    /// The rule: floor and optional gap rule.
    pub rule: ReadOut,
    /// Per gate site, in layer order.
    pub sites: Vec<GroupsRemoved>,
}

/// Everything needed to rebuild and run a compacted model (`config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactConfig {
    /// [`COMPACT_FORMAT`].
    pub format: String,
    /// Widths `[kept inputs, hidden.., outputs]`; layer `l` maps `widths[l]` to `widths[l+1]`.
    pub widths: Vec<usize>,
    /// Activation between layers (none after the last): [`ACTIVATION`].
    pub activation: String,
    /// Features of the original inputs (before input-feature selection).
    pub input_dim_full: usize,
    /// Original indices of the kept input features, ascending; `None` = all kept.
    pub kept_inputs: Option<Vec<usize>>,
    /// Names of the kept input features (when the run had names).
    pub kept_input_names: Option<Vec<String>>,
    /// Standardization of the *full* raw inputs (training statistics), applied before
    /// selecting the kept features.
    pub standardizer: Option<Standardizer>,
    /// Names of all `input_dim_full` original features, in order: new data is matched to them
    /// by name. `None` in files written before they were recorded.
    #[serde(default)]
    pub input_names: Option<Vec<String>>,
    /// The training data's target column.
    #[serde(default)]
    pub target: Option<String>,
    /// What the model predicts.
    #[serde(default)]
    pub task: Option<Task>,
    /// Class names of a classifier: output `k` is class `class_names[k]`; labels of new data
    /// are mapped by name.
    #[serde(default)]
    pub class_names: Option<Vec<String>>,
    /// The data and split of the run it came from: `dgating eval` without `--data` scores
    /// its held-out rows.
    #[serde(default)]
    pub held_out: Option<HeldOutSource>,
    /// Where the model came from.
    pub provenance: Provenance,
}

impl CompactConfig {
    /// Indices of the kept inputs (all of them when `kept_inputs` is `None`).
    pub fn kept_input_indices(&self) -> Vec<usize> {
        self.kept_inputs.clone().unwrap_or_else(|| (0..self.input_dim_full).collect())
    }

    /// Checks the internal consistency of the config; `Err(message)`.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.widths.len() < 2 || self.widths.contains(&0) {
            return Err(format!("widths must be >= 2 entries, each >= 1, got {:?}", self.widths));
        }
        if self.activation != ACTIVATION {
            return Err(format!("unknown activation `{}` (only `{ACTIVATION}`)", self.activation));
        }
        match &self.kept_inputs {
            None if self.widths[0] != self.input_dim_full => {
                return Err(format!(
                    "no kept_inputs but widths[0] = {} differs from input_dim_full = {}",
                    self.widths[0], self.input_dim_full
                ));
            }
            Some(k) if k.len() != self.widths[0] => {
                return Err(format!("{} kept_inputs for widths[0] = {}", k.len(), self.widths[0]));
            }
            Some(k) if k.windows(2).any(|w| w[0] >= w[1]) || k.iter().any(|&i| i >= self.input_dim_full) => {
                return Err(format!("kept_inputs must be ascending indices below {}", self.input_dim_full));
            }
            _ => {}
        }
        if let Some(names) = &self.input_names
            && names.len() != self.input_dim_full
        {
            return Err(format!("{} input_names for input_dim_full = {}", names.len(), self.input_dim_full));
        }
        let outputs = self.widths[self.widths.len() - 1];
        if let Some(c) = &self.class_names
            && c.len() != outputs
        {
            return Err(format!("{} class_names for {outputs} outputs", c.len()));
        }
        if self.task == Some(Task::Regression) && (outputs != 1 || self.class_names.is_some()) {
            return Err(format!("a regression model has 1 output and no class names, this one has {outputs}"));
        }
        if let Some(names) = &self.kept_input_names
            && names.len() != self.widths[0]
        {
            return Err(format!("{} kept_input_names for widths[0] = {}", names.len(), self.widths[0]));
        }
        if let Some(s) = &self.standardizer
            && (s.mean.len() != self.input_dim_full || s.std.len() != self.input_dim_full)
        {
            return Err(format!("standardizer is not over input_dim_full = {} features", self.input_dim_full));
        }
        Ok(())
    }
}

/// A dense ReLU MLP: `h_{l+1} = relu(h_l W_lᵀ + b_l)`, no activation after the last layer.
/// Weights are `f32` on the CPU.
#[derive(Debug, Clone)]
pub struct CompactMlp {
    /// Architecture and provenance.
    pub config: CompactConfig,
    /// `(W [out, in], b [out])` per layer.
    pub layers: Vec<(Tensor, Tensor)>,
}

/// Folds the gates of `model` and removes what `plan` removes. The result computes the same
/// function as `model` with the removed groups zeroed (see [`crate::verify()`]).
pub fn compact(model: &Mlp, plan: &PrunePlan) -> Result<CompactMlp> {
    let layers = model.layers();
    if plan.widths_before() != model.config().widths() {
        return Err(Error::Plan(format!(
            "plan for widths {:?}, model has {:?}",
            plan.widths_before(),
            model.config().widths()
        )));
    }
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for layer in layers {
        let (w, b) = layer.effective()?;
        let b = match b {
            Some(b) => b,
            None => Tensor::zeros(layer.out_dim(), w.dtype(), w.device())?,
        };
        // `copy`: own storage, never aliasing the model's variables.
        tensors.insert(format!("{}.weight", layer.prefix()), w.to_dtype(DType::F32)?.copy()?.detach());
        tensors.insert(format!("{}.bias", layer.prefix()), b.to_dtype(DType::F32)?.copy()?.detach());
    }
    for wp in plan.widths.iter().filter(|w| w.prunes()) {
        let kept: Vec<u32> = wp.kept().iter().map(|&i| i as u32).collect();
        let ids = Tensor::from_vec(kept.clone(), kept.len(), &Device::Cpu)?;
        for m in &wp.members {
            let t = tensors.get_mut(&m.tensor).ok_or_else(|| Error::Plan(format!("no tensor `{}`", m.tensor)))?;
            *t = t.index_select(&ids.to_device(t.device())?, m.axis)?.contiguous()?;
        }
    }
    let mut out = Vec::with_capacity(layers.len());
    for l in 0..layers.len() {
        let mut take = |n: String| tensors.remove(&n).ok_or_else(|| Error::Plan(format!("no tensor `{n}`")));
        let w = take(format!("layers.{l}.weight"))?.to_device(&Device::Cpu)?;
        let b = take(format!("layers.{l}.bias"))?.to_device(&Device::Cpu)?;
        out.push((w, b));
    }
    let widths = plan.widths_after();
    let n = layers.len();
    let input = &plan.widths[0];
    let config = CompactConfig {
        format: COMPACT_FORMAT.into(),
        widths,
        activation: ACTIVATION.into(),
        input_dim_full: input.keep.len(),
        kept_inputs: input.prunes().then(|| input.kept()),
        kept_input_names: None,
        standardizer: None,
        input_names: None,
        target: None,
        task: None,
        class_names: None,
        held_out: None,
        provenance: Provenance {
            depth: layers.iter().find_map(GatedLinear::depth),
            lambda: None,
            mode: None,
            threshold: plan.read_out.map(|r| r.floor),
            read_out: plan.read_out.map(|rule| ReadOutRecord { rule, sites: GroupsRemoved::of_plan(plan) }),
            original_widths: plan.widths_before(),
            kept_hidden: plan.widths[1..n].iter().map(|w| w.kept()).collect(),
            metrics: None,
        },
    };
    Ok(CompactMlp { config, layers: out })
}

impl CompactMlp {
    /// Widths `[inputs, hidden.., outputs]`.
    pub fn widths(&self) -> &[usize] {
        &self.config.widths
    }

    /// Runs the layers on already selected (and standardized) inputs `[batch, widths[0]]`.
    pub fn forward_reduced(&self, x: &Tensor) -> Result<Tensor> {
        check_input(x, self.config.widths[0], "forward_reduced")?;
        Ok(self.run_layers(x)?)
    }

    /// Selects the kept features of standardized full inputs `[batch, input_dim_full]`, then
    /// runs the layers (the same inputs the gated model takes).
    pub fn forward_full(&self, x: &Tensor) -> Result<Tensor> {
        check_input(x, self.config.input_dim_full, "forward_full")?;
        Ok(self.run_layers(&self.select(x)?)?)
    }

    /// Standardizes raw inputs `[batch, input_dim_full]` with the stored training statistics
    /// (if any), then [`forward_full`](Self::forward_full).
    pub fn forward_raw(&self, x: &Tensor) -> Result<Tensor> {
        check_input(x, self.config.input_dim_full, "forward_raw")?;
        let Some(s) = &self.config.standardizer else { return self.forward_full(x) };
        let mut rows = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        s.apply_rows(&mut rows)?;
        self.forward_full(&Tensor::from_vec(rows, x.dims(), x.device())?)
    }

    /// Parameters (weights + biases).
    pub fn num_params(&self) -> usize {
        self.config.widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }

    /// The same layers as an ungated [`Mlp`] (e.g. to fine-tune or evaluate it with
    /// `dgating-nn`); it takes the reduced inputs.
    pub fn to_mlp(&self) -> Result<Mlp> {
        let w = &self.config.widths;
        let cfg = MlpConfig {
            input_dim: w[0],
            hidden: w[1..w.len() - 1].to_vec(),
            output_dim: w[w.len() - 1],
            group_inputs: false,
            group_hidden: false,
        };
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(l, (w, b))| {
                GatedLinear::from_tensors(format!("layers.{l}"), w.copy()?, Some(b.copy()?), GateSite::None, None)
            })
            .collect::<dgating_nn::Result<Vec<_>>>()?;
        Ok(Mlp::from_layers(cfg, layers)?)
    }

    fn select(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.config.kept_inputs {
            None => Ok(x.clone()),
            Some(k) => {
                let ids = Tensor::from_vec(k.iter().map(|&i| i as u32).collect::<Vec<_>>(), k.len(), x.device())?;
                x.index_select(&ids, 1)
            }
        }
    }

    /// The layer loop, with the kernels of the gated forward (`dgating_nn::ops::linear_relu` for
    /// hidden layers, `linear` for the last): on plain buffers for CPU tensors, as candle ops
    /// on other devices.
    fn run_layers(&self, x: &Tensor) -> dgating_nn::Result<Tensor> {
        let x = x.to_dtype(DType::F32)?.contiguous()?;
        if let Some(y) = self.run_layers_f32(&x)? {
            return Ok(y);
        }
        let last = self.layers.len() - 1;
        let mut h = x;
        for (l, (w, b)) in self.layers.iter().enumerate() {
            h = if l < last {
                ops::linear_relu(&h, w, Some(b), "compact layer")?
            } else {
                ops::linear(&h, w, Some(b), "compact layer")?
            };
        }
        Ok(h)
    }
}

impl CompactMlp {
    /// [`CompactMlp::run_layers`] on plain `f32` buffers borrowed from CPU tensors: the same
    /// kernels without a candle op per layer (the per-op cost dominates tiny compacted layers at
    /// batch 1; docs/PERFORMANCE.md). `None` when `x` or a weight is not a contiguous CPU `f32`
    /// tensor.
    fn run_layers_f32(&self, x: &Tensor) -> dgating_nn::Result<Option<Tensor>> {
        let (xs, xl) = x.storage_and_layout();
        let guards: Vec<_> =
            self.layers.iter().map(|(w, b)| (w.storage_and_layout(), b.storage_and_layout())).collect();
        let Some(input) = cpu_f32(&xs, xl) else { return Ok(None) };
        let mut weights = Vec::with_capacity(guards.len());
        for ((ws, wl), (bs, bl)) in &guards {
            let (Some(w), Some(b)) = (cpu_f32(ws, wl), cpu_f32(bs, bl)) else { return Ok(None) };
            weights.push((w, b));
        }
        let widths = &self.config.widths;
        let last = weights.len() - 1;
        let mut h: Option<Vec<f32>> = None;
        for (l, (w, b)) in weights.into_iter().enumerate() {
            let inp = h.as_deref().unwrap_or(input);
            h = Some(ops::linear_forward_f32(inp, w, Some(b), (widths[l], widths[l + 1]), l < last)?);
        }
        let batch = x.dim(0)?;
        Ok(Some(Tensor::from_vec(h.unwrap_or_default(), (batch, widths[last + 1]), &Device::Cpu)?))
    }
}

fn check_input(x: &Tensor, expected: usize, context: &'static str) -> Result<()> {
    if x.rank() != 2 || x.dims()[1] != expected {
        return Err(Error::Input { context, expected, actual: x.dims().to_vec() });
    }
    Ok(())
}

/// A [`CompactMlp`] seen as a [`Model`] on the *full* standardized inputs, so the
/// `dgating-nn` evaluation runs on it unchanged. It has no trainable parameters.
#[derive(Debug, Clone, Copy)]
pub struct FullInputModel<'a>(pub &'a CompactMlp);

impl Model for FullInputModel<'_> {
    fn forward(&self, x: &Tensor) -> dgating_nn::Result<Tensor> {
        check_input(x, self.0.config.input_dim_full, "FullInputModel")
            .map_err(|e| dgating_nn::Error::Config(e.to_string()))?;
        self.0.run_layers(&self.0.select(x)?)
    }

    fn params(&self) -> dgating_nn::Result<ParamStore> {
        Ok(ParamStore::new())
    }

    fn group_layers(&self) -> Vec<&GatedLinear> {
        vec![]
    }
}

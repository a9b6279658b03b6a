//! The `dgating-compact-v2` file format as data: [`CompactConfig`] (`config.json`), its
//! sections, the file names and tags. No model code: the architecture is nn's tagged
//! [`Architecture`], the tensor keys and shapes are its [`Structure`](dgating_core::Structure)'s
//! (docs/FORMAT.md).

use std::collections::BTreeMap;

use dgating_core::{Decision, ReadOut};
use dgating_nn::Architecture;
use dgating_nn::data::{Standardizer, Task};
use dgating_nn::model::INPUTS;
use dgating_nn::train::DataSpec;
use serde::{Deserialize, Serialize};

/// Format tag this build writes (`config.json` field `format` and safetensors metadata key
/// `format`).
pub const COMPACT_FORMAT: &str = "dgating-compact-v2";
/// The older tag this build still reads (MLPs only; converted on import).
pub const COMPACT_FORMAT_V1: &str = "dgating-compact-v1";
/// File name of the weights.
pub const MODEL_FILE: &str = "model.safetensors";
/// File name of the config.
pub const CONFIG_FILE: &str = "config.json";

/// What the model's input is and how raw data becomes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Raw features a row has (before selecting the kept ones).
    pub features: usize,
    /// Names of the raw features, when the data had them.
    pub names: Option<Vec<String>>,
    /// Standardization of the raw features (training statistics), applied before selecting
    /// the kept features.
    pub standardizer: Option<Standardizer>,
    /// Names of the classes, output `k` = class `k` (classification with named classes).
    #[serde(default)]
    pub class_names: Option<Vec<String>>,
    /// The training data's target column.
    #[serde(default)]
    pub target: Option<String>,
    /// What the model predicts (`classification` or `regression`).
    #[serde(default)]
    pub task: Option<Task>,
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

/// The original indices one dim kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptDim {
    /// Dim name (`inputs`, `hidden.0`, `stream`, ...).
    pub name: String,
    /// Entries before pruning.
    pub original: usize,
    /// Original indices of the kept entries, ascending.
    pub kept: Vec<usize>,
}

/// Groups of one gate set before and after, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupsRemoved {
    /// The dim of the gate set.
    pub dim: String,
    /// Groups before.
    pub groups: usize,
    /// Groups removed.
    pub removed: usize,
    /// The read-out's cut-off for this set and the gaps it saw (`None` for plans built from
    /// given masks).
    pub decision: Option<Decision>,
}

/// Where a compacted model came from. Informational: nothing needed to run or verify the
/// model is here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Training mode of the run (`dgating`, `prox`, ...).
    pub mode: Option<String>,
    /// `D` of the gated model (`None` for ungated modes).
    pub depth: Option<usize>,
    /// `λ` of the run.
    pub lambda: Option<f64>,
    /// The read-out rule that decided which groups are zero (`None` when built from masks).
    pub read_out: Option<ReadOut>,
    /// Per gate set: what was removed, the cut-off and the gaps.
    pub groups: Vec<GroupsRemoved>,
    /// The run's last epoch, as it was logged.
    pub training: Option<TrainingRecord>,
}

/// The last epoch of the training run (informational).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// Epochs trained.
    pub epochs: usize,
    /// Validation loss of the last epoch.
    pub val_loss: f64,
    /// Validation accuracy of the last epoch (classification).
    pub val_accuracy: Option<f64>,
}

/// Everything needed to rebuild and run a compacted model (`config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactConfig {
    /// [`COMPACT_FORMAT`].
    pub format: String,
    /// The model at its compacted sizes (tagged by `"type"`).
    pub architecture: Architecture,
    /// The raw input and its preprocessing.
    pub input: InputSpec,
    /// Every dim of the architecture, in structure order, with the original indices it kept.
    pub dims: Vec<KeptDim>,
    /// The data and split of the run it came from: `dgating eval` without `--data` scores
    /// its held-out rows.
    #[serde(default)]
    pub held_out: Option<HeldOutSource>,
    /// Where the model came from (informational).
    pub provenance: Provenance,
}

impl CompactConfig {
    /// The kept original indices of dim `name`.
    pub fn kept(&self, name: &str) -> Option<&[usize]> {
        self.dims.iter().find(|d| d.name == name).map(|d| d.kept.as_slice())
    }

    /// Original indices of the kept input features.
    pub fn kept_input_indices(&self) -> Vec<usize> {
        self.kept(INPUTS).map_or_else(Vec::new, <[usize]>::to_vec)
    }

    /// Names of the kept input features (when the data had names).
    pub fn kept_input_names(&self) -> Option<Vec<String>> {
        let names = self.input.names.as_ref()?;
        Some(self.kept_input_indices().iter().map(|&i| names[i].clone()).collect())
    }

    /// Sizes before pruning, by dim.
    pub fn original_sizes(&self) -> BTreeMap<String, usize> {
        self.dims.iter().map(|d| (d.name.clone(), d.original)).collect()
    }

    /// Checks the internal consistency of the config; `Err(message)`.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.format != COMPACT_FORMAT {
            return Err(format!("format `{}` is not `{COMPACT_FORMAT}`", self.format));
        }
        let structure = self.architecture.structure().map_err(|e| e.to_string())?;
        let names: Vec<&str> = structure.dims().iter().map(|d| d.name.as_str()).collect();
        let listed: Vec<&str> = self.dims.iter().map(|d| d.name.as_str()).collect();
        if names != listed {
            return Err(format!("dims {listed:?} do not match the architecture's dims {names:?}"));
        }
        for (d, k) in structure.dims().iter().zip(&self.dims) {
            if k.kept.len() != d.size {
                return Err(format!("dim `{}`: {} kept indices for size {}", d.name, k.kept.len(), d.size));
            }
            if k.kept.windows(2).any(|w| w[0] >= w[1]) || k.kept.iter().any(|&i| i >= k.original) {
                return Err(format!("dim `{}`: kept indices must be ascending and below {}", d.name, k.original));
            }
            if !d.removable && k.kept.len() != k.original {
                return Err(format!("dim `{}` cannot be removed from", d.name));
            }
        }
        let inputs = self.dims.iter().find(|d| d.name == INPUTS).ok_or("the architecture has no `inputs` dim")?;
        if self.input.features != inputs.original {
            return Err(format!("input.features = {} but dim `inputs` had {}", self.input.features, inputs.original));
        }
        if let Some(n) = &self.input.names
            && n.len() != self.input.features
        {
            return Err(format!("{} input names for {} features", n.len(), self.input.features));
        }
        if let Some(s) = &self.input.standardizer
            && (s.mean.len() != self.input.features || s.std.len() != self.input.features)
        {
            return Err(format!("standardizer is not over the {} raw features", self.input.features));
        }
        if let Some(c) = &self.input.class_names
            && c.len() != self.architecture.output_dim()
        {
            return Err(format!("{} class names for {} outputs", c.len(), self.architecture.output_dim()));
        }
        let outputs = self.architecture.output_dim();
        if self.input.task == Some(Task::Regression) && (outputs != 1 || self.input.class_names.is_some()) {
            return Err(format!("a regression model has 1 output and no class names, this one has {outputs}"));
        }
        Ok(())
    }
}

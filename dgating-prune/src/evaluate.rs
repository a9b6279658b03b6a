//! [`evaluate_dir`]: evaluate a training run (gated checkpoint) or a compacted export alike —
//! the library side of `dgating eval`; [`check_export`]: reload an export from disk and hold
//! it against the run it came from.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use dgating_nn::Model;
use dgating_nn::data::{Dataset, Standardizer, Task};
use dgating_nn::train::EVAL_CHUNK_ROWS;
use dgating_nn::train::engine::{TensorData, score};
use dgating_nn::train::run::{RunConfig, load_run_model, load_run_model_on};

use crate::compact::Compacted;
use crate::error::{Error, Result};
use crate::export::import;
use crate::format::CompactConfig;
use crate::format::MODEL_FILE;
use crate::pipeline::check_on_held_out;
use crate::report::Evaluation;
use crate::verify::Verification;

/// An exported model reloaded from disk and compared with its training run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExportCheck {
    /// Size of every dim of the reloaded model.
    pub sizes: std::collections::BTreeMap<String, usize>,
    /// Parameters of the reloaded model.
    pub params: usize,
    /// Names of the kept input features, when the run had names.
    pub kept_input_names: Option<Vec<String>>,
    /// Reloaded model vs the run's gated model (masked and unmasked) on the held-out split.
    pub verification: Verification,
    /// Held-out loss/accuracy of the gated model.
    pub gated: Evaluation,
    /// Held-out loss/accuracy of the reloaded compacted model.
    pub compacted: Evaluation,
}

/// Imports the compacted model in `compact_dir` (trusting nothing, see [`import`]) and
/// compares it with the gated model of `run_dir` on the run's held-out split: the outputs
/// ([`verify`](crate::verify())) and the held-out loss and accuracy of both. The end-to-end check that what was
/// written is what was trained.
pub fn check_export(run_dir: &Path, compact_dir: &Path) -> Result<ExportCheck> {
    let (cfg, model) = load_run_model(run_dir)?;
    let compact = import(compact_dir)?;
    let held_out = check_on_held_out(run_dir, &cfg, &model, &compact)?;
    Ok(ExportCheck {
        sizes: compact.sizes()?,
        params: compact.num_params()?,
        kept_input_names: compact.config.kept_input_names(),
        verification: held_out.verification,
        gated: held_out.gated,
        compacted: held_out.compacted,
    })
}

/// What was evaluated.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DirEvaluation {
    /// `"gated run"` or `"compacted model"`.
    pub kind: &'static str,
    /// The rows scored: a file, or the held-out split of the run.
    pub data: String,
    /// Rows evaluated.
    pub samples: usize,
    /// `classification` or `regression`.
    pub task: Task,
    /// What `evaluation.loss` is: `cross_entropy` or `half_mse` (`½·MSE`).
    pub loss_kind: &'static str,
    /// Loss, accuracy or RMSE / MAE / R².
    pub evaluation: Evaluation,
}

/// What a model expects of its input data: recorded by the run (`config.json`) or the
/// export, and applied to every file it is given, so that columns are matched by name and
/// labels by class name.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInputs {
    /// Names of all input features in the model's order (`None`: an old export without them;
    /// columns are then taken by position and their count checked).
    pub names: Option<Vec<String>>,
    /// Which of them the model reads (all for a run; the kept ones for a compacted model).
    pub required: Vec<bool>,
    /// Training statistics to standardize with.
    pub standardizer: Option<Standardizer>,
    /// The training data's target column.
    pub target: Option<String>,
    /// Classification or regression.
    pub task: Task,
    /// Class names of a classifier (output `k` = `class_names[k]`).
    pub class_names: Option<Vec<String>>,
    /// Model outputs.
    pub outputs: usize,
}

impl ModelInputs {
    /// The inputs of a training run.
    pub fn of_run(cfg: &RunConfig) -> Self {
        let outputs = cfg.model.output_dim();
        Self {
            names: Some(cfg.feature_names.clone()),
            required: vec![true; cfg.feature_names.len()],
            standardizer: cfg.standardizer.clone(),
            target: cfg.data.target.clone(),
            task: recorded_task(cfg.task, cfg.class_names.is_some(), outputs),
            class_names: cfg.class_names.clone(),
            outputs,
        }
    }

    /// The inputs of a compacted model.
    pub fn of_compact(c: &CompactConfig) -> Self {
        let outputs = c.architecture.output_dim();
        let mut required = vec![false; c.input.features];
        c.kept_input_indices().into_iter().for_each(|i| required[i] = true);
        Self {
            names: c.input.names.clone(),
            required,
            standardizer: c.input.standardizer.clone(),
            target: c.input.target.clone(),
            task: recorded_task(c.input.task, c.input.class_names.is_some(), outputs),
            class_names: c.input.class_names.clone(),
            outputs,
        }
    }

    /// Loads `src` (a built-in name, table or IDX directory; `target` defaults to the
    /// model's) as this model's data: the target read as the model's task, columns matched by
    /// name, labels mapped by class name, standardized with the training statistics.
    pub fn load(&self, src: &str, target: Option<&str>) -> Result<Dataset> {
        let target = target.or(self.target.as_deref());
        let (set, _) = dgating_nn::data::load_with(src, target, Some(self.task))?;
        let set = self.conform(set)?;
        let set = match (&self.class_names, set.targets.num_classes()) {
            (Some(names), _) => set.map_classes(names)?,
            (None, Some(k)) if k > self.outputs => {
                return Err(Error::format(src, format!("{k} classes, but the model has {} outputs", self.outputs)));
            }
            _ => set,
        };
        self.standardized(set)
    }

    /// Loads the feature columns of `src` for prediction (the target column may be absent).
    pub fn load_features(&self, src: &str) -> Result<Dataset> {
        let path = Path::new(src);
        let set = if dgating_nn::data::table_delimiter(path).is_some() {
            dgating_nn::data::load_features(path, self.target.as_deref())?
        } else {
            dgating_nn::data::load(src, None)?
        };
        self.standardized(self.conform(set)?)
    }

    fn conform(&self, set: Dataset) -> Result<Dataset> {
        match &self.names {
            Some(names) => Ok(set.align_features(names, Some(&self.required))?),
            None if set.num_features != self.required.len() => Err(Error::format(
                &set.name,
                format!("{} feature columns, but the model reads {}", set.num_features, self.required.len()),
            )),
            None => Ok(set),
        }
    }

    fn standardized(&self, mut set: Dataset) -> Result<Dataset> {
        if let Some(s) = &self.standardizer {
            s.apply(&mut set)?;
        }
        Ok(set)
    }
}

/// The task a run or export recorded; files written before it was recorded are classifiers
/// when they have class names or more than one output.
fn recorded_task(recorded: Option<Task>, has_class_names: bool, outputs: usize) -> Task {
    recorded.unwrap_or(if has_class_names || outputs > 1 { Task::Classification } else { Task::Regression })
}

/// A model directory (training run or compacted export) loaded for inference.
#[allow(clippy::large_enum_variant)] // one per command, never in a collection
enum LoadedModel {
    Run(RunConfig, dgating_nn::Network),
    Compact(Compacted),
}

impl LoadedModel {
    fn open(dir: &Path, device: &Device) -> Result<Self> {
        let is_run = dir.join("state.json").exists() || dir.join("optimizer.safetensors").exists();
        if is_run {
            let (cfg, model) = load_run_model_on(dir, device)?;
            return Ok(Self::Run(cfg, model));
        }
        if !dir.join(MODEL_FILE).exists() {
            return Err(Error::format(
                dir,
                "neither a training run (state.json) nor a compacted model (model.safetensors)",
            ));
        }
        let compact = import(dir)?;
        Ok(Self::Compact(if device.is_cpu() { compact } else { compact.to_device(device)? }))
    }

    fn device(&self) -> Result<Device> {
        match self {
            Self::Run(_, m) => Ok(dgating_nn::device_of(m)?),
            Self::Compact(c) => c.device(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Run(..) => "gated run",
            Self::Compact(_) => "compacted model",
        }
    }

    fn inputs(&self) -> ModelInputs {
        match self {
            Self::Run(cfg, _) => ModelInputs::of_run(cfg),
            Self::Compact(c) => ModelInputs::of_compact(&c.config),
        }
    }

    /// The held-out rows of the run the model comes from (standardized).
    fn held_out(&self, dir: &Path) -> Result<(Dataset, String)> {
        let (spec, seed, sha) = match self {
            Self::Run(cfg, _) => (&cfg.data, cfg.train.seed, cfg.data_sha256.as_deref()),
            Self::Compact(c) => match &c.config.held_out {
                Some(h) => (&h.data, h.seed, h.data_sha256.as_deref()),
                None => {
                    return Err(Error::format(
                        dir,
                        "this export does not record the run it came from; pass --data to evaluate it",
                    ));
                }
            },
        };
        let prepared = spec.load_checked(seed, sha)?;
        Ok((prepared.test, format!("the held-out split of {} ({})", spec.source, prepared.held_out)))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Run(_, m) => m.forward(x)?,
            Self::Compact(c) => c.forward_full(x)?,
        })
    }

    fn score(&self, data: &TensorData) -> Result<Evaluation> {
        Ok(match self {
            Self::Run(_, m) => score(m, data)?,
            Self::Compact(c) => score(&c.model, &data.select_features(&c.config.kept_input_indices())?)?,
        })
    }
}

/// Evaluates the model in `dir` (a training run or a compacted model) on `data` (a built-in
/// name, table or IDX directory; raw features, matched to the model's by name and
/// standardized with its training statistics; `target` defaults to the model's target
/// column). Without `data`, on the held-out split of the run the model comes from — for a
/// compacted model the run recorded in its config — refusing data that changed since.
pub fn evaluate_dir(dir: &Path, data: Option<&str>, target: Option<&str>) -> Result<DirEvaluation> {
    evaluate_dir_on(dir, data, target, &Device::Cpu)
}

/// [`evaluate_dir`] with the model computing on `device`.
pub fn evaluate_dir_on(dir: &Path, data: Option<&str>, target: Option<&str>, device: &Device) -> Result<DirEvaluation> {
    let model = LoadedModel::open(dir, device)?;
    let inputs = model.inputs();
    let (set, what) = match data {
        Some(src) => (inputs.load(src, target)?, src.to_string()),
        None => model.held_out(dir)?,
    };
    let evaluation = model.score(&TensorData::new(&set, DType::F32, &model.device()?)?)?;
    Ok(DirEvaluation {
        kind: model.kind(),
        data: what,
        samples: set.len(),
        task: inputs.task,
        loss_kind: match inputs.task {
            Task::Classification => "cross_entropy",
            Task::Regression => "half_mse",
        },
        evaluation,
    })
}

/// Predictions of a model for every row of a file, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Class names of a classifier (`None`: regression).
    pub class_names: Option<Vec<String>>,
    /// Per row: the predicted class index (classification) or `None`.
    pub classes: Vec<Option<usize>>,
    /// Per row: class probabilities (softmax of the logits) or the one regression value.
    pub values: Vec<Vec<f64>>,
}

impl Predictions {
    /// Writes one CSV line per row: `prediction` (class name or value) and, with `proba`, one
    /// `p_<class>` column per class.
    pub fn to_csv(&self, proba: bool) -> String {
        let mut out = String::from("prediction");
        if let (true, Some(names)) = (proba, &self.class_names) {
            for n in names {
                out.push(',');
                out.push_str(&csv_field(&format!("p_{n}")));
            }
        }
        out.push('\n');
        for (c, v) in self.classes.iter().zip(&self.values) {
            match (c, &self.class_names) {
                (Some(k), Some(names)) => out.push_str(&csv_field(&names[*k])),
                _ => out.push_str(&format!("{}", v[0])),
            }
            if proba && self.class_names.is_some() {
                for p in v {
                    out.push_str(&format!(",{p:.6}"));
                }
            }
            out.push('\n');
        }
        out
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// Predicts every row of `data` (a table whose target column may be absent, a built-in name
/// or an IDX directory) with the model in `dir` (training run or compacted model).
pub fn predict_dir(dir: &Path, data: &str) -> Result<Predictions> {
    predict_dir_on(dir, data, &Device::Cpu)
}

/// [`predict_dir`] with the model computing on `device`.
pub fn predict_dir_on(dir: &Path, data: &str, device: &Device) -> Result<Predictions> {
    let model = LoadedModel::open(dir, device)?;
    let inputs = model.inputs();
    let set = inputs.load_features(data)?;
    let x = Tensor::from_slice(&set.features, (set.len(), set.num_features), &model.device()?)?;
    let mut classes = Vec::with_capacity(set.len());
    let mut values = Vec::with_capacity(set.len());
    for start in (0..set.len()).step_by(EVAL_CHUNK_ROWS) {
        let end = (start + EVAL_CHUNK_ROWS).min(set.len());
        let out = model.forward(&x.narrow(0, start, end - start)?)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        for row in out {
            if inputs.task == Task::Classification {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exp: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
                let sum: f64 = exp.iter().sum();
                let k = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, _)| k);
                classes.push(k);
                values.push(exp.iter().map(|e| e / sum).collect());
            } else {
                classes.push(None);
                values.push(row);
            }
        }
    }
    let class_names = match inputs.task {
        Task::Classification => {
            Some(inputs.class_names.clone().unwrap_or_else(|| dgating_nn::data::class_names_numbered(inputs.outputs)))
        }
        Task::Regression => None,
    };
    Ok(Predictions { class_names, classes, values })
}

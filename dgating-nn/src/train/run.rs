//! A training *run*: data + model + [`Trainer`] + a run directory that holds everything to
//! continue or evaluate it.
//!
//! ```text
//! RUN_DIR/config.json          RunConfig (model architecture, training config, data spec, standardizer)
//! RUN_DIR/model.safetensors    gated checkpoint: every ParamStore tensor by name
//! RUN_DIR/optimizer.safetensors optimizer state ({param}.m / {param}.v)
//! RUN_DIR/state.json           epochs done, steps, magnitude masks
//! RUN_DIR/metrics.jsonl        one EpochMetrics per line
//! ```
//!
//! Each file is written atomically; `state.json` is written last and both tensor files carry
//! the epoch in their metadata, so a resume never mixes epochs. An epoch-0 checkpoint is
//! written before training, so a run that stops on a NaN always leaves a good checkpoint.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Standardizer};
use crate::error::{Error, Result};
use crate::model::{Architecture, Model, Network};
use crate::train::checkpoint::{CHECKPOINT_FORMAT, EPOCH_KEY, FORMAT_KEY, atomic_write, load_tensors, save_tensors};
use crate::train::config::{Mode, TrainConfig};
use crate::train::engine::{Progress, TensorData, Trainer};
use crate::train::metrics::EpochMetrics;

/// Format tag of `config.json`.
pub const RUN_FORMAT: &str = "dgating-run-v1";

/// Where the data comes from and how it is split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// A built-in name, a CSV path or an IDX directory.
    pub source: String,
    /// Target column (CSV only).
    pub target: Option<String>,
    /// Held-out fraction (stratified, seeded); `mnist-10k` always uses its last 2000 images.
    pub test_fraction: f64,
    /// Standardize features with training statistics.
    pub standardize: bool,
}

impl DataSpec {
    /// Defaults for a source: 20% held out; standardized unless it is image data.
    pub fn new(source: impl Into<String>, target: Option<String>) -> Self {
        let source = source.into();
        let standardize = !(source == "mnist-10k" || Path::new(&source).is_dir());
        Self { source, target, test_fraction: 0.2, standardize }
    }

    /// Loads, splits (seeded by `seed`) and standardizes.
    pub fn prepare(&self, seed: u64) -> Result<(Dataset, Dataset, Option<Standardizer>)> {
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(Error::Config(format!("test fraction must be in (0, 1), got {}", self.test_fraction)));
        }
        let data = crate::data::load(&self.source, self.target.as_deref())?;
        let (mut train, mut test) = if self.source == "mnist-10k" {
            data.split_at(8000)?
        } else {
            data.shuffled_split(self.test_fraction, seed)?
        };
        let standardizer = if self.standardize {
            let s = Standardizer::fit(&train)?;
            s.apply(&mut train)?;
            s.apply(&mut test)?;
            Some(s)
        } else {
            None
        };
        Ok((train, test, standardizer))
    }
}

/// What `config.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// [`RUN_FORMAT`].
    pub format: String,
    /// Model preset name.
    pub model_name: String,
    /// Architecture (tagged by `"type"`; untagged MLP configs of older runs still read).
    #[serde(deserialize_with = "crate::model::arch::deserialize_compat")]
    pub model: Architecture,
    /// Training configuration.
    pub train: TrainConfig,
    /// Data.
    pub data: DataSpec,
    /// Feature names of the input columns.
    pub feature_names: Vec<String>,
    /// Training-set standardization, to apply to new data.
    pub standardizer: Option<Standardizer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunState {
    epochs_done: usize,
    steps: usize,
    masks: Option<Vec<Vec<bool>>>,
    metrics: Vec<EpochMetrics>,
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run directory.
    pub dir: PathBuf,
    /// Every epoch's metrics.
    pub metrics: Vec<EpochMetrics>,
}

fn output_dim(data: &Dataset) -> usize {
    data.num_classes().unwrap_or(1)
}

fn build_model(cfg: &RunConfig) -> Result<Network> {
    let depth = (cfg.train.mode == Mode::Dgating).then(|| cfg.train.gate.depth());
    cfg.model.build(depth, cfg.train.gate_init, cfg.train.seed, DType::F32, &cfg.train.device.device()?)
}

/// Trains `model_name` on `data` into the new directory `out`. `on_epoch` sees each epoch's
/// metrics after its checkpoint is written; `ControlFlow::Break` stops the run there (it can
/// be resumed).
pub fn train(
    model_name: &str,
    train_cfg: TrainConfig,
    data: DataSpec,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> Result<RunSummary> {
    train_cfg.check()?;
    let (train_set, val_set, standardizer) = data.prepare(train_cfg.seed)?;
    let model_cfg = Architecture::preset(model_name, train_set.num_features, output_dim(&train_set))?;
    if out.join("config.json").exists() {
        return Err(Error::Config(format!("{} already holds a run; resume it or choose another --out", out.display())));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let cfg = RunConfig {
        format: RUN_FORMAT.into(),
        model_name: model_name.into(),
        model: model_cfg,
        train: train_cfg,
        data,
        feature_names: train_set.feature_names.clone(),
        standardizer,
    };
    let model = build_model(&cfg)?;
    let trainer = Trainer::new(&model, cfg.train.clone())?;
    let json = serde_json::to_vec_pretty(&cfg).map_err(|e| json_error("run config", e))?;
    atomic_write(&out.join("config.json"), &json)?;
    let state = RunState { epochs_done: 0, steps: 0, masks: None, metrics: vec![] };
    save_checkpoint(out, &model, &trainer, &state)?;
    continue_run(out, &model, trainer, state, &train_set, &val_set, progress, on_epoch)
}

/// Continues the run in `dir` from its last checkpoint, exactly as if it had not stopped.
pub fn resume(
    dir: &Path,
    progress: &mut dyn FnMut(Progress),
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> Result<RunSummary> {
    let (cfg, state, model) = load_checkpoint(dir)?;
    let (train_set, val_set, _) = cfg.data.prepare(cfg.train.seed)?;
    let mut trainer = Trainer::new(&model, cfg.train.clone())?;
    let opt_path = dir.join("optimizer.safetensors");
    let (opt_tensors, meta) = load_tensors(&opt_path, &cfg.train.device.device()?)?;
    check_epoch(&opt_path, &meta, state.epochs_done)?;
    trainer
        .restore(state.epochs_done, opt_tensors, state.steps, state.masks.clone())
        .map_err(|e| Error::Checkpoint { path: opt_path, message: e.to_string() })?;
    continue_run(dir, &model, trainer, state, &train_set, &val_set, progress, on_epoch)
}

#[allow(clippy::too_many_arguments)]
fn continue_run(
    dir: &Path,
    model: &Network,
    mut trainer: Trainer<'_, Network>,
    mut state: RunState,
    train_set: &Dataset,
    val_set: &Dataset,
    progress: &mut dyn FnMut(Progress),
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> Result<RunSummary> {
    let device = trainer.config().device.device()?;
    let train_t = TensorData::new(train_set, DType::F32, &device)?;
    let val_t = TensorData::new(val_set, DType::F32, &device)?;
    while !trainer.finished() {
        let m = trainer.run_epoch(&train_t, &val_t, progress)?;
        let flow = on_epoch(&m);
        state.metrics.push(m);
        state.epochs_done = trainer.epochs_done();
        state.steps = trainer.optimizer().steps();
        state.masks = trainer.masks().cloned();
        save_checkpoint(dir, model, &trainer, &state)?;
        if flow.is_break() {
            break;
        }
    }
    Ok(RunSummary { dir: dir.into(), metrics: state.metrics })
}

fn save_checkpoint(dir: &Path, model: &Network, trainer: &Trainer<'_, Network>, state: &RunState) -> Result<()> {
    let meta = || {
        HashMap::from([
            (FORMAT_KEY.to_string(), CHECKPOINT_FORMAT.to_string()),
            (EPOCH_KEY.to_string(), state.epochs_done.to_string()),
        ])
    };
    save_tensors(&dir.join("model.safetensors"), &model.params()?.tensors(), meta())?;
    save_tensors(&dir.join("optimizer.safetensors"), &trainer.optimizer().state_tensors(), meta())?;
    let mut lines = String::new();
    for m in &state.metrics {
        lines.push_str(&serde_json::to_string(m).map_err(|e| json_error("epoch metrics", e))?);
        lines.push('\n');
    }
    atomic_write(&dir.join("metrics.jsonl"), lines.as_bytes())?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| json_error("run state", e))?;
    atomic_write(&dir.join("state.json"), &json)
}

fn check_epoch(path: &Path, meta: &HashMap<String, String>, epoch: usize) -> Result<()> {
    if meta.get(FORMAT_KEY).map(String::as_str) != Some(CHECKPOINT_FORMAT) {
        return Err(Error::Checkpoint { path: path.into(), message: format!("not a {CHECKPOINT_FORMAT} file") });
    }
    let found = meta.get(EPOCH_KEY).and_then(|e| e.parse::<usize>().ok());
    if found != Some(epoch) {
        return Err(Error::Checkpoint {
            path: path.into(),
            message: format!("holds epoch {found:?}, state.json says {epoch}: files of different epochs"),
        });
    }
    Ok(())
}

/// Loads a gated checkpoint into `model`'s variables; every tensor must exist with the
/// right shape and no unknown tensor may be present.
pub fn load_params<M: Model>(path: &Path, model: &M, epoch: usize) -> Result<()> {
    let device = model.params()?.iter().next().map_or(Device::Cpu, |p| p.var.device().clone());
    let (mut tensors, meta) = load_tensors(path, &device)?;
    check_epoch(path, &meta, epoch)?;
    let bad = |m: String| Error::Checkpoint { path: path.into(), message: m };
    for p in model.params()?.iter() {
        let t = tensors.remove(&p.name).ok_or_else(|| bad(format!("missing tensor `{}`", p.name)))?;
        if t.dims() != p.var.dims() {
            return Err(bad(format!("tensor `{}` has shape {:?}, model needs {:?}", p.name, t.dims(), p.var.dims())));
        }
        p.var.set(&t.to_dtype(p.var.dtype())?)?;
    }
    if let Some(name) = tensors.keys().next() {
        return Err(bad(format!("unknown tensor `{name}`")));
    }
    Ok(())
}

/// Reads `config.json` of a run directory.
pub fn read_config(dir: &Path) -> Result<RunConfig> {
    let cfg: RunConfig = read_json(&dir.join("config.json"))?;
    if cfg.format != RUN_FORMAT {
        return Err(Error::Checkpoint {
            path: dir.join("config.json"),
            message: format!("unknown format `{}`", cfg.format),
        });
    }
    cfg.train.check()?;
    cfg.model.check()?;
    Ok(cfg)
}

fn json_error(what: &str, source: serde_json::Error) -> Error {
    Error::Json { what: what.into(), source }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Checkpoint { path: path.into(), message: e.to_string() })
}

/// Loads a trained run's model (for evaluation and pruning).
pub fn load_run_model(dir: &Path) -> Result<(RunConfig, Network)> {
    let (cfg, _, model) = load_checkpoint(dir)?;
    Ok((cfg, model))
}

/// Config, state and the model with the checkpoint's parameters.
fn load_checkpoint(dir: &Path) -> Result<(RunConfig, RunState, Network)> {
    let cfg = read_config(dir)?;
    let state: RunState = read_json(&dir.join("state.json"))?;
    let model = build_model(&cfg)?;
    load_params(&dir.join("model.safetensors"), &model, state.epochs_done)?;
    Ok((cfg, state, model))
}

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
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::{Dataset, Standardizer, Targets, Task, TaskChoice};
use crate::error::{Error, Result};
use crate::model::{Architecture, Model, Network};
use crate::train::checkpoint::{CHECKPOINT_FORMAT, EPOCH_KEY, FORMAT_KEY, atomic_write, load_tensors, save_tensors};
use crate::train::config::{Mode, TrainConfig};
use crate::train::engine::{Progress, TensorData, Trainer};
use crate::train::lock::{DirLock, LOCK_FILE, remove_stale_temp_files};
use crate::train::metrics::EpochMetrics;

/// Format tag of `config.json`.
pub const RUN_FORMAT: &str = "dgating-run-v1";
/// The run's configuration.
pub const CONFIG_FILE: &str = "config.json";
/// The gated checkpoint.
pub const MODEL_FILE: &str = "model.safetensors";
/// The optimizer state.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Where training is; written last, so a directory holds a run once this file exists.
pub const STATE_FILE: &str = "state.json";
/// One [`EpochMetrics`] JSON object per line, appended each epoch.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The next epoch's model, complete on disk before `state.json` commits it.
pub const MODEL_NEXT_FILE: &str = "model.safetensors.next";
/// The next epoch's optimizer state.
pub const OPTIMIZER_NEXT_FILE: &str = "optimizer.safetensors.next";
/// Every file a run directory may hold.
pub const RUN_FILES: &[&str] = &[
    CONFIG_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
    METRICS_FILE,
    MODEL_NEXT_FILE,
    OPTIMIZER_NEXT_FILE,
    LOCK_FILE,
];

/// Where the data comes from and how it is split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// A built-in name, a CSV/TSV path or an IDX directory.
    pub source: String,
    /// Target column (tables only).
    pub target: Option<String>,
    /// Held-out fraction (stratified, seeded) when the data has no test set of its own.
    pub test_fraction: f64,
    /// Standardize features with training statistics.
    pub standardize: bool,
    /// The task asked for; `None` chooses it from the target column ([`crate::data::parse_table`]).
    #[serde(default)]
    pub task: Option<Task>,
    /// A separate held-out file (columns matched by name, labels by class name) instead of a
    /// split of `source`.
    #[serde(default)]
    pub val_source: Option<String>,
    /// With `standardize`: per-channel statistics of images (the channels follow from the
    /// row length, [`crate::model::ImageShape::infer`]) instead of per-feature ones.
    #[serde(default)]
    pub per_channel: bool,
}

/// A data set ready for training: the split, standardized, with the task it was read as.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// Training rows (standardized when asked).
    pub train: Dataset,
    /// Held-out rows (standardized with the training statistics).
    pub test: Dataset,
    /// The training statistics.
    pub standardizer: Option<Standardizer>,
    /// The task and why.
    pub task: TaskChoice,
    /// Where the held-out rows come from, for people.
    pub held_out: String,
    /// SHA-256 (hex) of the raw training and held-out data: features, targets, names.
    pub sha256: String,
}

impl DataSpec {
    /// Defaults for a source: 20% held out; standardized unless it is image data; task chosen
    /// automatically.
    pub fn new(source: impl Into<String>, target: Option<String>) -> Self {
        let source = source.into();
        let images = ["mnist-10k", "fashion-mnist-10k", "fashion-mnist"].contains(&source.as_str());
        let standardize = !(images || Path::new(&source).is_dir());
        Self { source, target, test_fraction: 0.2, standardize, task: None, val_source: None, per_channel: false }
    }

    /// Loads, splits (seeded by `seed`) and standardizes: `(train, test, standardizer)`.
    pub fn prepare(&self, seed: u64) -> Result<(Dataset, Dataset, Option<Standardizer>)> {
        let p = self.load(seed)?;
        Ok((p.train, p.test, p.standardizer))
    }

    /// Loads and splits the data. The held-out rows are, in this order of preference: the
    /// file `val_source`; the `t10k-*` files of an IDX directory; the last 2000 images of
    /// `mnist-10k`; a seeded stratified `test_fraction` of `source`.
    pub fn load(&self, seed: u64) -> Result<PreparedData> {
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(Error::Config(format!(
                "test fraction must be in (0, 1) (exclusive), got {}",
                self.test_fraction
            )));
        }
        let (data, task) = crate::data::load_with(&self.source, self.target.as_deref(), self.task)?;
        let (train, test, held_out) = if let Some(val) = &self.val_source {
            let (v, _) = crate::data::load_with(val, self.target.as_deref(), Some(task.task))?;
            (data.clone(), conform(&v, &data)?, format!("the file {val}"))
        } else if let Some(t) = crate::data::load_idx_test(Path::new(&self.source))? {
            (data.clone(), conform(&t, &data)?, "the t10k-* files of the directory".to_string())
        } else if self.source == "mnist-10k" || self.source == "fashion-mnist-10k" {
            let (a, b) = data.split_at(8000)?;
            (a, b, format!("the last 2000 images of {}", self.source))
        } else {
            let (a, b) = data.shuffled_split(self.test_fraction, seed)?;
            let how = if a.num_classes().is_some() { "stratified" } else { "shuffled" };
            (a, b, format!("{:.0}% of the rows ({how}, seed {seed})", 100.0 * self.test_fraction))
        };
        if let Targets::Classes { names, .. } = &train.targets
            && names.len() < 2
        {
            return Err(Error::data(
                data.name.clone(),
                format!(
                    "the target holds one class (`{}`) in every row: a classifier needs at least two classes",
                    names.first().map(String::as_str).unwrap_or_default()
                ),
            ));
        }
        let sha256 = data_sha256(&[&train, &test]);
        let (mut train, mut test) = (train, test);
        let standardizer = if self.standardize {
            let s = if self.per_channel {
                let shape = crate::model::ImageShape::infer(train.num_features)?;
                Standardizer::fit_channels(&train, shape.channels)?
            } else {
                Standardizer::fit(&train)?
            };
            s.apply(&mut train)?;
            s.apply(&mut test)?;
            Some(s)
        } else {
            None
        };
        Ok(PreparedData { train, test, standardizer, task, held_out, sha256 })
    }
}

/// `other` with `reference`'s column order and class numbering.
fn conform(other: &Dataset, reference: &Dataset) -> Result<Dataset> {
    let aligned = other.align_features(&reference.feature_names, None)?;
    match reference.targets.class_names() {
        Some(names) => aligned.map_classes(names),
        None => Ok(aligned),
    }
}

/// SHA-256 (hex) of data sets' names, features and targets: what resume and pruning compare
/// to refuse data that changed under a run.
pub fn data_sha256(sets: &[&Dataset]) -> String {
    let mut h = Sha256::new();
    for d in sets {
        h.update((d.len() as u64).to_le_bytes());
        for n in &d.feature_names {
            h.update(n.as_bytes());
            h.update([0]);
        }
        for v in &d.features {
            h.update(v.to_le_bytes());
        }
        match &d.targets {
            Targets::Classes { labels, names, .. } => {
                for n in names {
                    h.update(n.as_bytes());
                    h.update([0]);
                }
                labels.iter().for_each(|l| h.update(l.to_le_bytes()));
            }
            Targets::Values(v) => v.iter().for_each(|x| h.update(x.to_le_bytes())),
        }
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    /// Feature names of the input columns, in the model's order (new data is matched to them
    /// by name).
    pub feature_names: Vec<String>,
    /// Training-set standardization, to apply to new data.
    pub standardizer: Option<Standardizer>,
    /// The task the target was read as (absent in runs written before it was recorded).
    #[serde(default)]
    pub task: Option<Task>,
    /// Class names (`class_names[k]` is output `k`) of a classifier.
    #[serde(default)]
    pub class_names: Option<Vec<String>>,
    /// SHA-256 of the raw training + held-out data ([`data_sha256`]).
    #[serde(default)]
    pub data_sha256: Option<String>,
}

impl RunConfig {
    /// The run's held-out rows (standardized), refusing data that changed since training.
    pub fn held_out(&self) -> Result<Dataset> {
        Ok(self.load_data()?.test)
    }

    /// The run's data, refusing data that changed since training (when the run recorded a
    /// hash).
    pub fn load_data(&self) -> Result<PreparedData> {
        self.data.load_checked(self.train.seed, self.data_sha256.as_deref())
    }
}

impl DataSpec {
    /// [`DataSpec::load`], refusing data whose [`data_sha256`] differs from `expected`.
    pub fn load_checked(&self, seed: u64, expected: Option<&str>) -> Result<PreparedData> {
        let prepared = self.load(seed)?;
        if let Some(expected) = expected
            && expected != prepared.sha256
        {
            return Err(Error::data(
                self.source.clone(),
                format!(
                    "the data changed since the model was trained (SHA-256 {}... is now {}...); use the \
                     original data or train a new run",
                    &expected[..12.min(expected.len())],
                    &prepared.sha256[..12]
                ),
            ));
        }
        Ok(prepared)
    }
}

/// `state.json`: where training is. Small and rewritten each epoch; the metrics live in
/// `metrics.jsonl`, appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunState {
    epochs_done: usize,
    steps: usize,
    masks: Option<Vec<Vec<bool>>>,
    /// SHA-256 of `config.json` as written: a changed config is refused.
    #[serde(default)]
    config_sha256: Option<String>,
    /// Why training stopped early (a non-finite value), if it did.
    #[serde(default)]
    stopped: Option<String>,
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run directory.
    pub dir: PathBuf,
    /// Every epoch's metrics.
    pub metrics: Vec<EpochMetrics>,
}

/// How to continue a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResumeOptions {
    /// A new total number of (dense-phase) epochs, `>=` the epochs done: extends a finished
    /// run. The cosine schedule is stretched to the new total from the current step on, so an
    /// extended run is not identical to one trained for that total from the start.
    pub epochs: Option<usize>,
}

fn output_dim(data: &Dataset) -> usize {
    data.num_classes().unwrap_or(1)
}

fn build_model(cfg: &RunConfig, device: &Device) -> Result<Network> {
    let depth = (cfg.train.mode == Mode::Dgating).then(|| cfg.train.gate.depth());
    cfg.model.build(depth, cfg.train.gate_init, cfg.train.seed, DType::F32, device)
}

/// A run ready to start: configuration validated and data loaded, nothing written yet.
#[derive(Debug)]
pub struct RunPlan {
    cfg: RunConfig,
    data: PreparedData,
}

/// Validates the configuration, loads the data and builds the model configuration of a new
/// run; writes nothing.
pub fn plan(model_name: &str, mut train_cfg: TrainConfig, data: DataSpec) -> Result<RunPlan> {
    train_cfg.check()?;
    let prepared = data.load(train_cfg.seed)?;
    if let Some(w) = train_cfg.warmup {
        let per_epoch = prepared.train.len().div_ceil(train_cfg.batch_size);
        let warmup = w.steps(per_epoch, per_epoch * train_cfg.total_epochs());
        train_cfg.schedule = train_cfg.schedule.with_warmup(warmup);
    }
    let model_cfg = Architecture::named(model_name, prepared.train.num_features, output_dim(&prepared.train))?;
    let cfg = RunConfig {
        format: RUN_FORMAT.into(),
        model_name: model_name.into(),
        model: model_cfg,
        train: train_cfg,
        data,
        feature_names: prepared.train.feature_names.clone(),
        standardizer: prepared.standardizer.clone(),
        task: Some(prepared.task.task),
        class_names: prepared.train.targets.class_names().map(<[String]>::to_vec),
        data_sha256: Some(prepared.sha256.clone()),
    };
    build_model(&cfg, &cfg.train.device.device()?)?;
    Ok(RunPlan { cfg, data: prepared })
}

impl RunPlan {
    /// The configuration that will be written.
    pub fn config(&self) -> &RunConfig {
        &self.cfg
    }

    /// The data.
    pub fn data(&self) -> &PreparedData {
        &self.data
    }

    /// Trains into the directory `out`, which must be new, empty, or hold only the leftovers of
    /// a run that never completed an epoch. Holds `out`'s lock throughout.
    pub fn train(
        self,
        out: &Path,
        progress: &mut dyn FnMut(Progress),
        on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
    ) -> Result<RunSummary> {
        let _lock = DirLock::exclusive(out)?;
        remove_stale_temp_files(out)?;
        claim_fresh(out)?;
        start(out, &self.cfg, &self.data, progress, on_epoch)
    }
}

/// Trains `model_name` on `data` into the new directory `out` ([`plan`] then
/// [`RunPlan::train`]). `on_epoch` sees each epoch's metrics after its checkpoint is
/// written; `ControlFlow::Break` stops the run there (it can be resumed).
pub fn train(
    model_name: &str,
    train_cfg: TrainConfig,
    data: DataSpec,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> Result<RunSummary> {
    plan(model_name, train_cfg, data)?.train(out, progress, on_epoch)
}

/// Refuses a directory that holds a trained run or files that are not a run's; removes the
/// leftovers of a run that never completed an epoch (its state says 0 epochs, or it has no
/// state at all because the process died before the first checkpoint was complete).
fn claim_fresh(dir: &Path) -> Result<()> {
    let refuse = |message: String| Err(Error::RunDir { dir: dir.into(), message });
    let mut ours = vec![];
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let name = entry.map_err(|e| Error::io(dir, e))?.file_name().to_string_lossy().into_owned();
        if !RUN_FILES.contains(&name.as_str()) {
            return refuse(format!(
                "is not empty (it holds `{}`) and is not a run directory; choose a new or empty directory",
                crate::data::csv::clean(&name)
            ));
        }
        ours.push(name);
    }
    let state_path = dir.join(STATE_FILE);
    if state_path.exists() {
        match read_json::<RunState>(&state_path) {
            Ok(s) if s.epochs_done == 0 => {}
            Ok(s) => {
                return refuse(format!(
                    "already holds a run trained for {} epoch{}; continue it with `dgating train --resume {}` \
                     (add --epochs N for a new total), or choose another --out",
                    s.epochs_done,
                    if s.epochs_done == 1 { "" } else { "s" },
                    dir.display()
                ));
            }
            Err(e) => return refuse(format!("holds a run whose state cannot be read ({e}); choose another --out")),
        }
    }
    for name in ours.iter().filter(|n| n.as_str() != LOCK_FILE) {
        std::fs::remove_file(dir.join(name)).map_err(|e| Error::io(dir.join(name), e))?;
    }
    Ok(())
}

/// Writes config and the epoch-0 checkpoint (state last), then trains.
fn start(
    dir: &Path,
    cfg: &RunConfig,
    data: &PreparedData,
    progress: &mut dyn FnMut(Progress),
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> Result<RunSummary> {
    let model = build_model(cfg, &cfg.train.device.device()?)?;
    let trainer = Trainer::new(&model, cfg.train.clone())?;
    let config_sha256 = write_config(dir, cfg)?;
    atomic_write(&dir.join(METRICS_FILE), b"")?;
    let state = RunState { epochs_done: 0, steps: 0, masks: None, config_sha256: Some(config_sha256), stopped: None };
    save_checkpoint(dir, &model, &trainer, &state, None)?;
    continue_run(dir, &model, trainer, state, vec![], data, progress, on_epoch)
}

fn write_config(dir: &Path, cfg: &RunConfig) -> Result<String> {
    let json = serde_json::to_vec_pretty(cfg).map_err(|e| json_error("run config", e))?;
    atomic_write(&dir.join(CONFIG_FILE), &json)?;
    Ok(hex(&Sha256::digest(&json)))
}

/// Continues the run in `dir` from its last checkpoint, exactly as if it had not stopped
/// (with `options.epochs`: to a new total). A directory whose first checkpoint was never
/// completed is restarted from its `config.json`. Refuses a run whose `config.json` or
/// data changed, or whose `metrics.jsonl` is missing or short.
pub fn resume(
    dir: &Path,
    options: ResumeOptions,
    progress: &mut dyn FnMut(Progress),
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> Result<RunSummary> {
    if !dir.join(CONFIG_FILE).exists() && !dir.join(STATE_FILE).exists() {
        return Err(Error::RunDir {
            dir: dir.into(),
            message: format!("is not a run directory (no {CONFIG_FILE} or {STATE_FILE})"),
        });
    }
    let _lock = DirLock::exclusive(dir)?;
    remove_stale_temp_files(dir)?;
    if !dir.join(STATE_FILE).exists() {
        // Killed before its first checkpoint was complete: nothing was trained; start over.
        let mut cfg = read_config(dir)?;
        if let Some(e) = options.epochs {
            cfg.train.epochs = e;
            cfg.train.check()?;
        }
        let data = cfg.load_data()?;
        return start(dir, &cfg, &data, progress, on_epoch);
    }
    let (mut cfg, mut state, model) = load_checkpoint(dir, None)?;
    if let Some(epochs) = options.epochs
        && epochs != cfg.train.epochs
    {
        if epochs < state.epochs_done.min(cfg.train.epochs) || epochs == 0 {
            return Err(Error::Config(format!(
                "--epochs {epochs} is below the {} epochs already done; give a total >= {}",
                state.epochs_done, state.epochs_done
            )));
        }
        if cfg.train.mode.prunes_then_finetunes() {
            return Err(Error::Config(
                "a magnitude run cannot change its epochs on resume: its pruning step happens after them".into(),
            ));
        }
        cfg.train.epochs = epochs;
        state.config_sha256 = Some(write_config(dir, &cfg)?);
        atomic_write(&dir.join(STATE_FILE), &to_json(&state)?)?;
    }
    let metrics = read_metrics(dir, state.epochs_done)?;
    let data = cfg.load_data()?;
    let mut trainer = Trainer::new(&model, cfg.train.clone())?;
    let opt_path = settled(dir, OPTIMIZER_FILE, OPTIMIZER_NEXT_FILE, state.epochs_done)?;
    let (opt_tensors, meta) = load_tensors(&opt_path, &cfg.train.device.device()?)?;
    check_epoch(&opt_path, &meta, state.epochs_done)?;
    roll_forward(dir, state.epochs_done)?;
    trainer
        .restore(state.epochs_done, opt_tensors, state.steps, state.masks.clone())
        .map_err(|e| Error::Checkpoint { path: opt_path, message: e.to_string() })?;
    state.stopped = None;
    continue_run(dir, &model, trainer, state, metrics, &data, progress, on_epoch)
}

/// The first `epochs` records of `metrics.jsonl`; lines beyond them (a crash between the
/// append and `state.json`) are cut off.
fn read_metrics(dir: &Path, epochs: usize) -> Result<Vec<EpochMetrics>> {
    let path = dir.join(METRICS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut out = vec![];
    for (i, line) in text.lines().enumerate().take(epochs) {
        let m: EpochMetrics = serde_json::from_str(line)
            .map_err(|e| Error::Checkpoint { path: path.clone(), message: format!("line {}: {e}", i + 1) })?;
        out.push(m);
    }
    if out.len() < epochs {
        return Err(Error::Checkpoint {
            path,
            message: format!(
                "holds {} epochs, {STATE_FILE} says {epochs}: the run's files do not belong together",
                out.len()
            ),
        });
    }
    if text.lines().count() > epochs {
        let mut kept = String::new();
        for m in &out {
            kept.push_str(&serde_json::to_string(m).map_err(|e| json_error("epoch metrics", e))?);
            kept.push('\n');
        }
        atomic_write(&path, kept.as_bytes())?;
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn continue_run(
    dir: &Path,
    model: &Network,
    mut trainer: Trainer<'_, Network>,
    mut state: RunState,
    mut metrics: Vec<EpochMetrics>,
    data: &PreparedData,
    progress: &mut dyn FnMut(Progress),
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> Result<RunSummary> {
    let device = trainer.config().device.device()?;
    let train_t = TensorData::new(&data.train, DType::F32, &device)?;
    let val_t = TensorData::new(&data.test, DType::F32, &device)?;
    while !trainer.finished() {
        let m = match trainer.run_epoch(&train_t, &val_t, progress) {
            Ok(m) => m,
            Err(e) => {
                // The last good checkpoint stays; the state says why training stopped.
                if matches!(e, Error::NonFinite { .. }) {
                    state.stopped = Some(e.to_string());
                    atomic_write(&dir.join(STATE_FILE), &to_json(&state)?)?;
                }
                return Err(e);
            }
        };
        state.epochs_done = trainer.epochs_done();
        state.steps = trainer.optimizer().steps();
        state.masks = trainer.masks().cloned();
        save_checkpoint(dir, model, &trainer, &state, Some(&m))?;
        let flow = on_epoch(&m);
        metrics.push(m);
        if flow.is_break() {
            break;
        }
    }
    Ok(RunSummary { dir: dir.into(), metrics })
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| json_error("run state", e))
}

/// One epoch's checkpoint, crash-consistent: the tensors go to `*.next` files (atomically),
/// the metrics line is appended (synced), `state.json` commits the epoch (atomically), and
/// only then are the `*.next` files renamed over the previous epoch's. A crash before the
/// commit leaves the previous epoch intact (stale `*.next` files and metrics lines are
/// dropped on resume); a crash after it leaves the new epoch in the `*.next` files, which
/// [`settled`] finds and resume renames into place.
fn save_checkpoint(
    dir: &Path,
    model: &Network,
    trainer: &Trainer<'_, Network>,
    state: &RunState,
    metrics: Option<&EpochMetrics>,
) -> Result<()> {
    let meta = || {
        HashMap::from([
            (FORMAT_KEY.to_string(), CHECKPOINT_FORMAT.to_string()),
            (EPOCH_KEY.to_string(), state.epochs_done.to_string()),
        ])
    };
    save_tensors(&dir.join(MODEL_NEXT_FILE), &model.params()?.tensors(), meta())?;
    save_tensors(&dir.join(OPTIMIZER_NEXT_FILE), &trainer.optimizer().state_tensors(), meta())?;
    if let Some(m) = metrics {
        let path = dir.join(METRICS_FILE);
        let mut line = serde_json::to_string(m).map_err(|e| json_error("epoch metrics", e))?;
        line.push('\n');
        let mut f =
            std::fs::OpenOptions::new().append(true).create(true).open(&path).map_err(|e| Error::io(&path, e))?;
        f.write_all(line.as_bytes()).map_err(|e| Error::io(&path, e))?;
        f.sync_data().map_err(|e| Error::io(&path, e))?;
    }
    atomic_write(&dir.join(STATE_FILE), &to_json(state)?)?;
    for (next, file) in [(MODEL_NEXT_FILE, MODEL_FILE), (OPTIMIZER_NEXT_FILE, OPTIMIZER_FILE)] {
        std::fs::rename(dir.join(next), dir.join(file)).map_err(|e| Error::io(dir.join(file), e))?;
    }
    Ok(())
}

/// The epoch recorded in a tensor file's metadata (`None` if unreadable or absent). Reads only
/// the safetensors header (an 8-byte length, then JSON), not the tensors: resume and loading
/// ask this of up to four files before reading one of them whole.
fn file_epoch(path: &Path) -> Option<usize> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = usize::try_from(u64::from_le_bytes(len)).ok()?;
    // A header beyond the file (or absurdly large) is a corrupt file, not an allocation.
    if len > f.metadata().ok()?.len() as usize {
        return None;
    }
    let mut header = vec![0u8; len];
    f.read_exact(&mut header).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&header).ok()?;
    json.get("__metadata__")?.get(EPOCH_KEY)?.as_str()?.parse().ok()
}

/// The file that holds epoch `epoch`: `file`, or `next` when a crash came between the commit
/// of `state.json` and the rename (see [`save_checkpoint`]). Falls back to `file`, whose
/// check then reports the mismatch.
fn settled(dir: &Path, file: &str, next: &str, epoch: usize) -> Result<PathBuf> {
    let (f, n) = (dir.join(file), dir.join(next));
    if file_epoch(&f) != Some(epoch) && n.exists() && file_epoch(&n) == Some(epoch) {
        return Ok(n);
    }
    Ok(f)
}

/// Under the directory's exclusive lock: moves committed `*.next` files into place and removes
/// uncommitted ones.
fn roll_forward(dir: &Path, epoch: usize) -> Result<()> {
    for (next, file) in [(MODEL_NEXT_FILE, MODEL_FILE), (OPTIMIZER_NEXT_FILE, OPTIMIZER_FILE)] {
        let (n, f) = (dir.join(next), dir.join(file));
        if !n.exists() {
            continue;
        }
        if file_epoch(&n) == Some(epoch) && file_epoch(&f) != Some(epoch) {
            std::fs::rename(&n, &f).map_err(|e| Error::io(&f, e))?;
        } else {
            std::fs::remove_file(&n).map_err(|e| Error::io(&n, e))?;
        }
    }
    Ok(())
}

fn check_epoch(path: &Path, meta: &HashMap<String, String>, epoch: usize) -> Result<()> {
    if meta.get(FORMAT_KEY).map(String::as_str) != Some(CHECKPOINT_FORMAT) {
        return Err(Error::Checkpoint { path: path.into(), message: format!("not a {CHECKPOINT_FORMAT} file") });
    }
    let found = meta.get(EPOCH_KEY).and_then(|e| e.parse::<usize>().ok());
    if found != Some(epoch) {
        return Err(Error::Checkpoint {
            path: path.into(),
            message: match found {
                Some(f) => format!("holds epoch {f}, state.json says {epoch}: files of different epochs"),
                None => format!("has no epoch in its metadata, state.json says {epoch}"),
            },
        });
    }
    Ok(())
}

/// Loads a gated checkpoint into `model`'s variables; every tensor must exist with the
/// right shape and no unknown tensor may be present.
pub fn load_params<M: Model>(path: &Path, model: &M, epoch: usize) -> Result<()> {
    let (mut tensors, meta) = load_tensors(path, &crate::model::device_of(model)?)?;
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
    let path = dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    parse_config(&path, &bytes)
}

/// Parses and checks the bytes of a run's `config.json` (`path` names it in errors).
fn parse_config(path: &Path, bytes: &[u8]) -> Result<RunConfig> {
    let cfg: RunConfig =
        serde_json::from_slice(bytes).map_err(|e| Error::Checkpoint { path: path.into(), message: e.to_string() })?;
    if cfg.format != RUN_FORMAT {
        return Err(Error::Checkpoint { path: path.into(), message: format!("unknown format `{}`", cfg.format) });
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

/// Loads a trained run's model on the CPU (for evaluation and pruning), under the
/// directory's shared lock: [`load_run_model_on`] the CPU, wherever the run was trained.
pub fn load_run_model(dir: &Path) -> Result<(RunConfig, Network)> {
    load_run_model_on(dir, &Device::Cpu)
}

/// Loads a trained run's model on `device` (any device: a run trained on a GPU loads on the
/// CPU and the other way round), under the directory's shared lock. Refuses a run that has
/// not completed an epoch (nothing was trained; a run stopped by a non-finite loss in its
/// first epoch says so).
pub fn load_run_model_on(dir: &Path, device: &Device) -> Result<(RunConfig, Network)> {
    let _lock = DirLock::shared(dir)?;
    if !dir.join(STATE_FILE).exists() {
        let message = if dir.join(CONFIG_FILE).exists() {
            "holds a run that never completed its first checkpoint; start it with `dgating train --resume`".into()
        } else {
            format!("is not a training run (no {STATE_FILE})")
        };
        return Err(Error::RunDir { dir: dir.into(), message });
    }
    let (cfg, state, model) = load_checkpoint(dir, Some(device))?;
    if state.epochs_done == 0 {
        let why = state.stopped.map(|s| format!(" (it stopped: {s})")).unwrap_or_default();
        return Err(Error::RunDir {
            dir: dir.into(),
            message: format!("has not completed an epoch of training{why}; there is no trained model to use"),
        });
    }
    Ok((cfg, model))
}

/// Config, state and the model with the checkpoint's parameters, on `device` (`None`: the
/// run's own training device); refuses a `config.json` that changed since the state was
/// written.
fn load_checkpoint(dir: &Path, device: Option<&Device>) -> Result<(RunConfig, RunState, Network)> {
    let state: RunState = read_json(&dir.join(STATE_FILE))?;
    let path = dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    if let Some(expected) = &state.config_sha256
        && *expected != hex(&Sha256::digest(&bytes))
    {
        return Err(Error::Checkpoint {
            path,
            message: "changed since training started (its SHA-256 differs from the one in state.json); \
                      restore it or train a new run"
                .into(),
        });
    }
    let cfg = parse_config(&path, &bytes)?;
    let device = match device {
        Some(d) => d.clone(),
        None => cfg.train.device.device()?,
    };
    let model = build_model(&cfg, &device)?;
    load_params(&settled(dir, MODEL_FILE, MODEL_NEXT_FILE, state.epochs_done)?, &model, state.epochs_done)?;
    Ok((cfg, state, model))
}

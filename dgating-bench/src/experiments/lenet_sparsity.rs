//! LeNet-300-100 on the built-in MNIST subset: accuracy against hidden-neuron sparsity for
//! D-Gating over a grid of `λ`, against the dense model and magnitude pruning
//! (`cargo run --release -p dgating-bench --bin harness -- lenet-sparsity`).
//!
//! Every run trains into `out/runs/<name>`; the read-out then zeroes all neurons whose norm
//! is below `relative · max` and evaluates the *masked* model on the 2000 held-out images,
//! so each reported accuracy is that of a model with those neurons really removed.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use dgating_core::{GateConfig, Threshold};
use dgating_nn::Model;
use dgating_nn::train::engine::{TensorData, evaluate};
use dgating_nn::train::metrics::group_stats;
use dgating_nn::train::run::load_run_model;
use dgating_nn::train::{self, DataSpec, Mode, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LenetConfig {
    /// Gate depth.
    pub depth: usize,
    /// `λ` grid for D-Gating.
    pub lambdas: Vec<f64>,
    /// Magnitude-pruning targets (fraction of hidden neurons removed).
    pub magnitude_targets: Vec<f64>,
    /// Read-out thresholds relative to the largest neuron norm of each layer.
    pub relative_thresholds: Vec<f64>,
    /// Epochs per run (magnitude: dense phase; it then fine-tunes `finetune_epochs`).
    pub epochs: usize,
    /// Magnitude fine-tuning epochs.
    pub finetune_epochs: usize,
    /// Base learning rate (SGD momentum 0.9, cosine schedule).
    pub lr: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for LenetConfig {
    fn default() -> Self {
        Self {
            depth: 3,
            lambdas: vec![2e-3, 4e-3, 5e-3, 6e-3, 8e-3],
            magnitude_targets: vec![0.5, 0.75],
            relative_thresholds: vec![1e-3, 1e-2, 3e-2],
            epochs: 30,
            finetune_epochs: 5,
            lr: 0.05,
            seed: 0,
        }
    }
}

/// One read-out of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LenetRow {
    /// `dense`, `dgating` or `magnitude`.
    pub mode: String,
    /// `λ` (D-Gating) or target sparsity (magnitude); 0 for dense.
    pub setting: f64,
    /// Relative read-out threshold.
    pub relative_threshold: f64,
    /// Kept neurons per hidden layer.
    pub kept: Vec<usize>,
    /// Fraction of the 400 hidden neurons removed.
    pub removed_fraction: f64,
    /// Held-out accuracy of the masked model.
    pub accuracy: f64,
    /// Held-out accuracy before masking.
    pub unmasked_accuracy: f64,
}

/// The report (also written as `report.json` under `out`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LenetReport {
    /// The configuration.
    pub config: LenetConfig,
    /// All rows.
    pub rows: Vec<LenetRow>,
}

fn base_config(cfg: &LenetConfig, mode: Mode, lambda: f64) -> Result<TrainConfig> {
    let mut t = TrainConfig::new(mode, GateConfig::new(cfg.depth, lambda)?);
    t.epochs = cfg.epochs;
    t.lr = cfg.lr;
    t.seed = cfg.seed;
    t.finetune_epochs = cfg.finetune_epochs;
    Ok(t)
}

fn read_out(cfg: &LenetConfig, dir: &Path, mode: &str, setting: f64, test: &TensorData) -> Result<Vec<LenetRow>> {
    let (_, model) = load_run_model(dir).map_err(nn)?;
    let (_, unmasked) = evaluate(&model, test).map_err(nn)?;
    let unmasked = unmasked.unwrap_or(0.0);
    let mut rows = vec![];
    for &rel in &cfg.relative_thresholds {
        let (_, model) = load_run_model(dir).map_err(nn)?;
        let (sets, store) = (model.gate_sets(), model.params().map_err(nn)?);
        let stats = group_stats(&sets, &store, &Threshold::relative(rel)?, cfg.depth).map_err(nn)?;
        for (set, mask) in sets.iter().zip(&stats.masks) {
            set.drop_groups(&store, mask).map_err(nn)?;
        }
        let (_, acc) = evaluate(&model, test).map_err(nn)?;
        let kept: Vec<usize> = stats.masks.iter().map(|m| m.iter().filter(|&&k| k).count()).collect();
        let total: usize = stats.masks.iter().map(Vec::len).sum();
        rows.push(LenetRow {
            mode: mode.into(),
            setting,
            relative_threshold: rel,
            removed_fraction: 1.0 - kept.iter().sum::<usize>() as f64 / total as f64,
            kept,
            accuracy: acc.unwrap_or(0.0),
            unmasked_accuracy: unmasked,
        });
    }
    Ok(rows)
}

fn nn(e: dgating_nn::Error) -> Error {
    Error::InvalidConfig(e.to_string())
}

/// Runs every configuration (skipping runs whose directory already holds a finished run).
pub fn run(cfg: &LenetConfig, out: &Path, log: &mut dyn FnMut(&str)) -> Result<LenetReport> {
    let data = DataSpec::new("mnist-10k", None);
    let (_, test, _) = data.prepare(cfg.seed).map_err(nn)?;
    let test = TensorData::new(&test, DType::F32, &Device::Cpu).map_err(nn)?;
    let mut jobs: Vec<(String, String, f64, TrainConfig)> =
        vec![("dense".into(), "dense".into(), 0.0, base_config(cfg, Mode::Dense, 0.0)?)];
    for &l in &cfg.lambdas {
        jobs.push((
            format!("dgating-D{}-lambda{l:e}", cfg.depth),
            "dgating".into(),
            l,
            base_config(cfg, Mode::Dgating, l)?,
        ));
    }
    for &s in &cfg.magnitude_targets {
        let mut t = base_config(cfg, Mode::Magnitude, 0.0)?;
        t.target_sparsity = s;
        jobs.push((format!("magnitude-{s}"), "magnitude".into(), s, t));
    }
    let mut rows = vec![];
    for (name, mode, setting, tcfg) in jobs {
        let dir: PathBuf = out.join("runs").join(&name);
        if !dir.join("state.json").exists() {
            log(&format!("training {name}"));
            train::train("lenet-300-100", tcfg, data.clone(), &dir, &mut |_| {}, &mut |m| {
                log(&format!("  {name} epoch {} acc {:?} active {:?}", m.epoch, m.val_accuracy, m.active_per_layer));
                ControlFlow::Continue(())
            })
            .map_err(nn)?;
        }
        rows.extend(read_out(cfg, &dir, &mode, setting, &test)?);
    }
    let report = LenetReport { config: cfg.clone(), rows };
    let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::InvalidConfig(e.to_string()))?;
    dgating_nn::train::checkpoint::atomic_write(&out.join("report.json"), &json).map_err(nn)?;
    Ok(report)
}

/// The report as a markdown table.
pub fn markdown(report: &LenetReport) -> String {
    let mut s = String::from(
        "| mode | λ / target | read-out (rel.) | kept [h1, h2] | removed | accuracy (masked) | accuracy (unmasked) |\n|---|---|---|---|---|---|---|\n",
    );
    for r in &report.rows {
        s.push_str(&format!(
            "| {} | {} | {:e} | {:?} | {:.1}% | {:.2}% | {:.2}% |\n",
            r.mode,
            r.setting,
            r.relative_threshold,
            r.kept,
            100.0 * r.removed_fraction,
            100.0 * r.accuracy,
            100.0 * r.unmasked_accuracy
        ));
    }
    s
}

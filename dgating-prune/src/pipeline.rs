//! [`prune_run`]: the one entry point behind `dgating prune` — load a training run, plan,
//! compact, verify on the run's held-out split, export, report — and the measurements it
//! takes on the way (held-out check, latency).

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use dgating_core::ReadOut;
use dgating_nn::Model;
use dgating_nn::train::engine::{TensorData, score};
use dgating_nn::train::lock::{DirLock, LOCK_FILE};
use dgating_nn::train::run::{RunConfig, load_run_model_on};
use dgating_nn::train::{EpochMetrics, Mode};

use crate::compact::{Compacted, compact};
use crate::error::{Error, Result};
use crate::export::export;
use crate::format::{HeldOutSource, TrainingRecord};
use crate::plan::PrunePlan;
use crate::report::{Cost, Evaluation, Latency, PruneReport};
use crate::verify::{Verification, verify};

/// Rows per timed forward pass (held-out rows repeated to this size), at most.
pub const LATENCY_BATCH: usize = 1024;
/// FLOPs per timed forward pass of the unpruned model, at most: conv nets time fewer rows
/// than [`LATENCY_BATCH`] (`rows = clamp(budget / FLOPs per sample, 1, 1024)`), so that a prune
/// stays seconds, not minutes.
pub const LATENCY_FLOP_BUDGET: usize = 1 << 30;
/// Timed repetitions per model.
pub const LATENCY_REPETITIONS: usize = 20;
/// File name of the report written next to the compacted model.
pub const REPORT_FILE: &str = "report.json";

/// Prunes the run in `run_dir` with `read_out` (`ReadOut::default()`: the gap rule over the
/// documented floor; `ReadOut::from(threshold)`: a plain threshold) and writes the compacted
/// model to `out_dir` (`model.safetensors`, `config.json`, plus `report.json`). Refuses to
/// write into the run directory or any directory that holds a training run, and into a
/// non-empty directory unless `force` (then the three files are replaced, atomically each).
/// Holds `out_dir`'s lock while it works (and the run's shared lock while reading it), so
/// two processes never write one export.
///
/// The run's own `train.threshold` is not used: it only counts active groups in the
/// training metrics.
pub fn prune_run(run_dir: &Path, read_out: &ReadOut, out_dir: &Path, force: bool) -> Result<PruneReport> {
    prune_run_on(run_dir, read_out, out_dir, force, &Device::Cpu)
}

/// [`prune_run`] with the models (gated, dense and compacted) computing on `device` for the
/// held-out check and the latency measurement; the export is the same on every device.
pub fn prune_run_on(
    run_dir: &Path,
    read_out: &ReadOut,
    out_dir: &Path,
    force: bool,
    device: &Device,
) -> Result<PruneReport> {
    check_out_dir(run_dir, out_dir, force)?;
    let (cfg, model) = load_run_model_on(run_dir, device)?;
    let created = !out_dir.exists();
    let lock = DirLock::exclusive(out_dir)?;
    let result =
        check_out_dir(run_dir, out_dir, force).and_then(|()| prune_locked(run_dir, read_out, out_dir, &cfg, &model));
    drop(lock);
    if result.is_err() && created {
        // Leave no trace of a failed export: the directory did not exist before.
        let _ = std::fs::remove_dir_all(out_dir);
    }
    result
}

fn prune_locked<M: Model + ?Sized>(
    run_dir: &Path,
    read_out: &ReadOut,
    out_dir: &Path,
    cfg: &RunConfig,
    model: &M,
) -> Result<PruneReport> {
    let device = dgating_nn::device_of(model)?;
    let plan = PrunePlan::with_read_out(model, read_out)?;
    let mut compacted = compact(model, &plan)?;
    annotate(&mut compacted, cfg, last_metrics(run_dir)?)?;
    // The export is written from the CPU copy; checks and timings run where the gated model is.
    let on_device = if device.is_cpu() { compacted.clone() } else { compacted.to_device(&device)? };
    let dense = compact(model, &PrunePlan::keep_all(model)?)?.to_device(&device)?;

    let held_out = check_on_held_out(run_dir, cfg, model, &on_device)?;
    let before = Cost::of(&dgating_nn::architecture_of(model)?)?;
    let after = Cost::of(compacted.architecture())?;

    export(&compacted, out_dir)?;
    let x = &held_out.inputs;
    let rows = x.dim(0)?;
    let batch = (LATENCY_FLOP_BUDGET / before.flops_per_sample.max(1)).clamp(1, LATENCY_BATCH);
    let ids: Vec<u32> = (0..batch).map(|i| (i % rows) as u32).collect();
    let xb = x.index_select(&Tensor::from_vec(ids, batch, &Device::Cpu)?, 0)?.to_device(&device)?;
    let latency = measure_latency(model, &dense, &on_device, &xb, LATENCY_REPETITIONS)?;
    let report = PruneReport {
        run_dir: run_dir.into(),
        out_dir: out_dir.into(),
        read_out: *read_out,
        before,
        after,
        groups: plan.groups_removed(),
        verification: held_out.verification,
        gated_eval: held_out.gated,
        compact_eval: held_out.compacted,
        kept_input_names: compacted.config.kept_input_names(),
        latency,
    };
    let path = out_dir.join(REPORT_FILE);
    let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::format(&path, e.to_string()))?;
    dgating_nn::train::checkpoint::atomic_write(&path, &json)?;
    Ok(report)
}

/// Fills in what the run knows: feature names, standardizer, λ, mode, last epoch (the
/// read-out is recorded by [`compact`] from the plan).
pub fn annotate(model: &mut Compacted, cfg: &RunConfig, metrics: Option<EpochMetrics>) -> Result<()> {
    let c = &mut model.config;
    if cfg.feature_names.len() == c.input.features {
        c.input.names = Some(cfg.feature_names.clone());
    }
    c.input.standardizer = cfg.standardizer.clone();
    c.input.target = cfg.data.target.clone();
    c.input.task = cfg.task;
    c.input.class_names = cfg.class_names.clone();
    c.held_out =
        Some(HeldOutSource { data: cfg.data.clone(), seed: cfg.train.seed, data_sha256: cfg.data_sha256.clone() });
    let p = &mut c.provenance;
    p.mode =
        Some(serde_json::to_value(cfg.train.mode).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default());
    if cfg.train.mode == Mode::Dgating {
        p.depth = Some(cfg.train.gate.depth());
    }
    if matches!(cfg.train.mode, Mode::Dgating | Mode::Direct | Mode::Prox | Mode::Slimming) {
        p.lambda = Some(cfg.train.gate.lambda());
    }
    p.training =
        metrics.map(|m| TrainingRecord { epochs: m.epoch, val_loss: m.val_loss, val_accuracy: m.val_accuracy });
    Ok(())
}

/// A gated model and its compacted form on a run's held-out split.
#[derive(Debug, Clone)]
pub(crate) struct HeldOutCheck {
    /// The held-out features `[rows, features]` (standardized, as the models take them).
    pub inputs: Tensor,
    /// Output differences ([`verify`]).
    pub verification: Verification,
    /// Held-out loss/accuracy of the gated model.
    pub gated: Evaluation,
    /// Held-out loss/accuracy of the compacted model.
    pub compacted: Evaluation,
}

/// Verifies `compact` against `gated` and evaluates both on the held-out split of the run in
/// `run_dir` (configuration `cfg`); an empty split is an error naming the run's config.
pub(crate) fn check_on_held_out<M: Model + ?Sized>(
    run_dir: &Path,
    cfg: &RunConfig,
    gated: &M,
    compact: &Compacted,
) -> Result<HeldOutCheck> {
    let test = cfg.held_out()?;
    if test.is_empty() {
        return Err(Error::format(
            run_dir.join("config.json"),
            "the run's held-out split is empty: nothing to verify on",
        ));
    }
    let inputs = Tensor::from_slice(&test.features, (test.len(), test.num_features), &Device::Cpu)?;
    let verification = verify(gated, compact, &inputs)?;
    let data = TensorData::new(&test, DType::F32, &dgating_nn::device_of(gated)?)?;
    let gated_eval = score(gated, &data)?;
    let data = TensorData::new(&test, DType::F32, &compact.device()?)?;
    let compacted = score(&compact.model, &data.select_features(&compact.config.kept_input_indices())?)?;
    Ok(HeldOutCheck { inputs, verification, gated: gated_eval, compacted })
}

fn median_ms(reps: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    for _ in 0..2 {
        f()?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let y = f()?;
        // CPU ops are eager; a GPU queues kernels, so wait for them before reading the clock.
        y.device().synchronize()?;
        std::hint::black_box(&y);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Times `gated`, `dense` (the folded unpruned model) and `compact` on the full inputs `x`
/// (all on `x`'s device).
pub fn measure_latency<M: Model + ?Sized>(
    gated: &M,
    dense: &Compacted,
    compact: &Compacted,
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

/// The last line of `metrics.jsonl`; `None` if the file is absent or empty.
fn last_metrics(run_dir: &Path) -> Result<Option<EpochMetrics>> {
    let path = run_dir.join("metrics.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) else { return Ok(None) };
    serde_json::from_str(line).map(Some).map_err(|e| Error::format(&path, e.to_string()))
}

pub(crate) fn check_out_dir(run_dir: &Path, out_dir: &Path, force: bool) -> Result<()> {
    let refuse = |m: String| Err(Error::OutputDir { path: out_dir.into(), message: m });
    if let (Ok(a), Ok(b)) = (run_dir.canonicalize(), out_dir.canonicalize())
        && a == b
    {
        return refuse("is the run directory; its config.json and model.safetensors would be overwritten".into());
    }
    if out_dir.join("state.json").exists() || out_dir.join("optimizer.safetensors").exists() {
        return refuse("holds a training run".into());
    }
    if out_dir.exists() && !out_dir.is_dir() {
        return refuse("is not a directory".into());
    }
    if force || !out_dir.exists() {
        return Ok(());
    }
    let entries = std::fs::read_dir(out_dir).map_err(|e| Error::Io { path: out_dir.into(), source: e })?;
    let mut names = vec![];
    for e in entries {
        let name = e.map_err(|e| Error::Io { path: out_dir.into(), source: e })?.file_name();
        if name != LOCK_FILE {
            names.push(name.to_string_lossy().chars().filter(|c| !c.is_control()).collect::<String>());
        }
    }
    if !names.is_empty() {
        names.sort();
        return refuse(format!(
            "is not empty (it holds {}); choose a new directory, or pass --force to replace its model",
            names.iter().take(3).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                + if names.len() > 3 { ", ..." } else { "" }
        ));
    }
    Ok(())
}

//! [`prune_run`]: the one entry point behind `dgating prune` — load a training run, plan,
//! compact, verify on the run's held-out split, export, report.

use std::path::Path;

use candle_core::{Device, Tensor};
use dgating_core::ReadOut;
use dgating_nn::train::run::{RunConfig, load_run_model};
use dgating_nn::train::{EpochMetrics, Mode};

use crate::compact::{CompactMlp, compact};
use crate::error::{Error, Result};
use crate::export::export;
use crate::plan::PrunePlan;
use crate::report::{Cost, GroupsRemoved, PruneReport, measure_latency};
use crate::verify::check_on_held_out;

/// Rows per timed forward pass (held-out rows repeated to this size).
pub const LATENCY_BATCH: usize = 1024;
/// Timed repetitions per model.
pub const LATENCY_REPETITIONS: usize = 20;
/// File name of the report written next to the compacted model.
pub const REPORT_FILE: &str = "report.json";

/// Prunes the run in `run_dir` with `read_out` (`ReadOut::default()`: the gap rule over the
/// documented floor; `ReadOut::from(threshold)`: a plain threshold) and writes the compacted
/// model to `out_dir` (`model.safetensors`, `config.json`, plus `report.json`). Refuses to
/// write into the run directory or any directory that holds a training run.
///
/// The run's own `train.threshold` is not used: it only counts active groups in the
/// training metrics.
pub fn prune_run(run_dir: &Path, read_out: &ReadOut, out_dir: &Path) -> Result<PruneReport> {
    check_out_dir(run_dir, out_dir)?;
    let (cfg, model) = load_run_model(run_dir)?;
    let plan = PrunePlan::with_read_out(&model, read_out)?;
    let mut compacted = compact(&model, &plan)?;
    annotate(&mut compacted, &cfg, last_metrics(run_dir)?)?;
    let dense = compact(&model, &PrunePlan::keep_all(&model)?)?;

    let held_out = check_on_held_out(run_dir, &cfg, &model, &compacted)?;

    export(&compacted, out_dir)?;
    let x = &held_out.inputs;
    let rows = x.dim(0)?;
    let ids: Vec<u32> = (0..LATENCY_BATCH).map(|i| (i % rows) as u32).collect();
    let xb = x.index_select(&Tensor::from_vec(ids, LATENCY_BATCH, &Device::Cpu)?, 0)?;
    let latency = measure_latency(&model, &dense, &compacted, &xb, LATENCY_REPETITIONS)?;
    let report = PruneReport {
        run_dir: run_dir.into(),
        out_dir: out_dir.into(),
        read_out: *read_out,
        before: Cost::of_widths(&plan.widths_before()),
        after: Cost::of_widths(&plan.widths_after()),
        groups: GroupsRemoved::of_plan(&plan),
        verification: held_out.verification,
        gated_eval: held_out.gated,
        compact_eval: held_out.compacted,
        latency,
    };
    let path = out_dir.join(REPORT_FILE);
    let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::format(&path, e.to_string()))?;
    dgating_nn::train::checkpoint::atomic_write(&path, &json)?;
    Ok(report)
}

/// Fills in what the run knows: feature names, standardizer, λ, mode, metrics (the read-out
/// is recorded by [`compact`] from the plan).
pub fn annotate(model: &mut CompactMlp, cfg: &RunConfig, metrics: Option<EpochMetrics>) -> Result<()> {
    let c = &mut model.config;
    if cfg.feature_names.len() == c.input_dim_full {
        c.kept_input_names = Some(c.kept_input_indices().iter().map(|&i| cfg.feature_names[i].clone()).collect());
    }
    c.standardizer = cfg.standardizer.clone();
    let p = &mut c.provenance;
    p.mode =
        Some(serde_json::to_value(cfg.train.mode).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default());
    if cfg.train.mode == Mode::Dgating {
        p.depth = Some(cfg.train.gate.depth());
    }
    if matches!(cfg.train.mode, Mode::Dgating | Mode::Direct | Mode::Prox) {
        p.lambda = Some(cfg.train.gate.lambda());
    }
    p.metrics = metrics;
    Ok(())
}

/// The last line of `metrics.jsonl`; `None` if the file is absent or empty.
fn last_metrics(run_dir: &Path) -> Result<Option<EpochMetrics>> {
    let path = run_dir.join("metrics.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) else { return Ok(None) };
    serde_json::from_str(line).map(Some).map_err(|e| Error::format(&path, e.to_string()))
}

fn check_out_dir(run_dir: &Path, out_dir: &Path) -> Result<()> {
    let refuse = |m: &str| Err(Error::OutputDir { path: out_dir.into(), message: m.into() });
    if let (Ok(a), Ok(b)) = (run_dir.canonicalize(), out_dir.canonicalize())
        && a == b
    {
        return refuse("is the run directory; its config.json and model.safetensors would be overwritten");
    }
    if out_dir.join("state.json").exists() || out_dir.join("optimizer.safetensors").exists() {
        return refuse("holds a training run");
    }
    Ok(())
}

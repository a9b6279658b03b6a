//! Language models through the generic prune path: [`prune_lm_run`] (plan → compact →
//! verify on the run's validation text → export with its `tokenizer.json`) and [`load_lm`],
//! which reads a training run or a compacted export for scoring and generation.
//!
//! Nothing here is specific to one architecture: the run loader, scoring and generation come
//! from `dgating_nn::lm`, compaction is [`compact`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use dgating_core::ReadOut;
use dgating_nn::Architecture;
use dgating_nn::Model;
use dgating_nn::lm::run::{
    CONFIG_FILE as RUN_CONFIG, LM_RUN_KIND, TOKENIZER_FILE, detached, language_model, load_run, read_tokenizer,
    run_tokens,
};
use dgating_nn::lm::train::val_loss;
use dgating_nn::lm::{LmTokenizer, Sampling, generate};
use dgating_nn::train::lock::DirLock;
use serde::{Deserialize, Serialize};

use crate::compact::compact;
use crate::error::{Error, Result};
use crate::export::{export, import};
use crate::format::GroupsRemoved;
use crate::pipeline::check_out_dir;
use crate::plan::PrunePlan;
use crate::report::Cost;

/// Validation windows used to compare and score the models in [`prune_lm_run`].
pub const LM_VERIFY_WINDOWS: usize = 32;
/// Tokens generated per timing in [`prune_lm_run`].
pub const LM_TIMING_TOKENS: usize = 64;

/// What [`prune_lm_run`] did and measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmPruneReport {
    /// The run.
    pub run_dir: PathBuf,
    /// The export.
    pub out_dir: PathBuf,
    /// The read-out rule.
    pub read_out: ReadOut,
    /// Before.
    pub before: Cost,
    /// After.
    pub after: Cost,
    /// Per gate set: groups, removed, decision.
    pub groups: Vec<GroupsRemoved>,
    /// Validation windows compared and scored (`block_size` tokens each).
    pub windows: usize,
    /// Largest `|compacted − masked gated|` logit difference relative to the largest
    /// masked-gated logit.
    pub max_rel_diff: f64,
    /// Validation loss of the gated model as trained.
    pub val_loss_gated: f64,
    /// Validation loss of the gated model with the removed groups zeroed.
    pub val_loss_masked: f64,
    /// Validation loss of the compacted model (reloaded from the export).
    pub val_loss_compact: f64,
    /// Greedy tokens per second at batch 1 with a KV cache: the folded unpruned model.
    pub tokens_per_s_dense: f64,
    /// The same for the compacted model.
    pub tokens_per_s_compact: f64,
    /// Greedy generation of the masked gated and the compacted model gave the same tokens.
    pub same_greedy_tokens: bool,
}

fn max_rel(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let b = b.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    Ok(a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale)
}

/// Greedy tokens per second (batch 1, KV cache) and the tokens.
pub fn tokens_per_second(
    architecture: &Architecture,
    weights: &BTreeMap<String, Tensor>,
    prompt: &[u32],
    n: usize,
) -> Result<(f64, Vec<u32>)> {
    let config = language_model(architecture)?;
    generate(config, weights, prompt, 4, &Sampling::greedy())?;
    let t = Instant::now();
    let out = generate(config, weights, prompt, n, &Sampling::greedy())?;
    Ok((n as f64 / t.elapsed().as_secs_f64().max(1e-9), out))
}

/// Prunes the language-model run in `run_dir` with `read_out`, verifies the compacted model
/// against the masked gated one on the run's validation text, and writes `model.safetensors`,
/// `config.json` (dgating-compact-v2), `tokenizer.json` and `report.json` to `out_dir`.
pub fn prune_lm_run(run_dir: &Path, read_out: &ReadOut, out_dir: &Path, force: bool) -> Result<LmPruneReport> {
    prune_lm_run_on(run_dir, read_out, out_dir, force, &Device::Cpu)
}

/// [`prune_lm_run`] with the verification, scoring and timing on `device`; the files written
/// are the same on every device (the export is written from a CPU copy).
pub fn prune_lm_run_on(
    run_dir: &Path,
    read_out: &ReadOut,
    out_dir: &Path,
    force: bool,
    device: &Device,
) -> Result<LmPruneReport> {
    check_out_dir(run_dir, out_dir, force)?;
    let (cfg, model, tokenizer) = load_run(run_dir, device)?;
    let created = !out_dir.exists();
    let lock = DirLock::exclusive(out_dir)?;
    let result = check_out_dir(run_dir, out_dir, force).and_then(|()| {
        let tokens = run_tokens(&cfg, tokenizer.as_ref())?;
        let block = language_model(&cfg.architecture)?.block_size;
        let windows = LM_VERIFY_WINDOWS.min(tokens.val.len().saturating_sub(1) / block);
        let val_loss_gated = val_loss(&model, &tokens.val, block, windows, device)?;
        let plan = PrunePlan::with_read_out(&model, read_out)?;
        let compacted = compact(&model, &plan)?;
        let dense = compact(&model, &PrunePlan::keep_all(&model)?)?;
        // The masked gated model: removed groups zeroed in place (the run on disk is untouched).
        let store = model.params()?;
        for set in model.gate_sets() {
            if let Some(d) = plan.dim(set.dim()) {
                set.drop_groups(&store, &d.keep)?;
            }
        }
        let val_loss_masked = val_loss(&model, &tokens.val, block, windows, device)?;
        export(&compacted.to_device(&Device::Cpu)?, out_dir)?;
        if let Some(t) = &tokenizer {
            t.save(&out_dir.join(TOKENIZER_FILE))?;
        }
        let back = import(out_dir)?.to_device(device)?;
        let val_loss_compact = val_loss(&back.model, &tokens.val, block, windows, device)?;
        let n = block.min(tokens.val.len());
        let x = Tensor::from_vec(tokens.val[..n].to_vec(), (1, n), device)?;
        let max_rel_diff = max_rel(&back.model.forward(&x)?, &model.forward(&x)?)?;
        let prompt = &tokens.val[..n.min(8)];
        let steps = LM_TIMING_TOKENS.min(block);
        let (tokens_per_s_dense, _) = tokens_per_second(dense.architecture(), &dense.tensors()?, prompt, steps)?;
        let (tokens_per_s_compact, ours) = tokens_per_second(back.architecture(), &back.tensors()?, prompt, steps)?;
        let (_, masked) = tokens_per_second(&cfg.architecture, &detached(&model)?, prompt, steps)?;
        let report = LmPruneReport {
            run_dir: run_dir.into(),
            out_dir: out_dir.into(),
            read_out: *read_out,
            before: Cost::of(&cfg.architecture)?,
            after: Cost::of(back.architecture())?,
            groups: plan.groups_removed(),
            windows,
            max_rel_diff,
            val_loss_gated,
            val_loss_masked,
            val_loss_compact,
            tokens_per_s_dense,
            tokens_per_s_compact,
            same_greedy_tokens: ours == masked,
        };
        let path = out_dir.join(crate::pipeline::REPORT_FILE);
        let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::format(&path, e.to_string()))?;
        dgating_nn::train::checkpoint::atomic_write(&path, &json)?;
        Ok(report)
    });
    drop(lock);
    if result.is_err() && created {
        let _ = std::fs::remove_dir_all(out_dir);
    }
    result
}

/// A language model ready to score and generate: its architecture, effective weights
/// (detached, `f32` on the CPU), tokenizer, and — for a training run — its validation tokens.
#[derive(Debug, Clone)]
pub struct LoadedLm {
    /// The architecture at its (possibly compacted) sizes.
    pub architecture: Architecture,
    /// Effective weights by key.
    pub weights: BTreeMap<String, Tensor>,
    /// The tokenizer (`tokenizer.json` of the directory, if it has one).
    pub tokenizer: Option<LmTokenizer>,
    /// `run` (a training run) or `compact` (an export).
    pub kind: &'static str,
    /// A run's corpus (`None` for exports and imported models without one).
    pub corpus: Option<String>,
    /// A run's validation share (the end of its corpus).
    pub val_fraction: f64,
    /// An export's kept groups: original indices by dim name (empty for a run, which keeps
    /// every group).
    pub kept: BTreeMap<String, Vec<usize>>,
}

/// Loads a language-model training run or a compacted export from `dir`, on the CPU.
pub fn load_lm(dir: &Path) -> Result<LoadedLm> {
    load_lm_on(dir, &Device::Cpu)
}

/// [`load_lm`] with the weights on `device` (generation and scoring run where the weights are).
pub fn load_lm_on(dir: &Path, device: &Device) -> Result<LoadedLm> {
    let path = dir.join(RUN_CONFIG);
    let bytes = std::fs::read(&path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| Error::format(&path, format!("not valid JSON: {e}")))?;
    if value.get("kind").and_then(|k| k.as_str()) == Some(LM_RUN_KIND) {
        let (cfg, model, tokenizer) = load_run(dir, device)?;
        return Ok(LoadedLm {
            weights: detached(&model)?,
            architecture: cfg.architecture,
            tokenizer,
            kind: "run",
            corpus: cfg.text.corpus,
            val_fraction: cfg.text.val_fraction,
            kept: BTreeMap::new(),
        });
    }
    let c = import(dir)?.to_device(device)?;
    language_model(c.architecture())?;
    let tokenizer = read_tokenizer(dir, c.architecture().input_dim())?;
    let kept = c.config.dims.iter().map(|d| (d.name.clone(), d.kept.clone())).collect();
    Ok(LoadedLm {
        weights: c.tensors()?,
        architecture: c.config.architecture,
        tokenizer,
        kind: "compact",
        corpus: None,
        val_fraction: 0.1,
        kept,
    })
}

//! The language-model training loop and the head-collapse recipe.
//!
//! # The recipe (`GateOptim::Recipe`, the default)
//!
//! * The ordinary weights (embeddings, LayerNorms, biases outside the groups) and every
//!   group's primary factor `ω` take Adam steps on the loss gradient (learning rate `lr`,
//!   linear warm-up then cosine to `0.1·lr`). `ω`'s share of the penalty, `(λ/D)||ω||²`, is
//!   applied *outside* Adam's preconditioner: `ω ← ω·(1 − η·2λ/D)` (decoupled, as AdamW).
//! * The scalar gates `γ` take plain SGD with heavy-ball momentum (`gate_lr`, default 0.1,
//!   *constant*, momentum 0.9) with the penalty in the gradient: `g ← ∂L/∂γ + (2λ/D)·γ`.
//! * Gates start balanced (`|γ| = ||ω_j||`), `D = 3`, `λ = 0.01`.
//!
//! Why: Adam normalizes each coordinate's step to about `η`, so a gate the loss does not need
//! is pushed to ±η around 0 instead of decaying geometrically; with SGD the penalty's pull
//! `η·(2λ/D)·γ` is proportional to `γ`, and a constant rate does not cap `Σηₜ` the way a
//! cosine schedule does, so unneeded gates keep shrinking (docs/METHOD.md,
//! docs/EXPERIMENTS.md).
//!
//! `GateOptim::Adam` puts everything, gates included, in AdamW (the comparison).

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layers::GateInit;
use crate::model::{Gpt, Model};
use crate::optim::{Optimizer, OptimizerKind};
use crate::params::{ParamRole, ParamStore};

/// How the gate factors are optimized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GateOptim {
    /// Adam (+ decoupled decay) for weights and `ω`, SGD + momentum at a constant rate for `γ`.
    #[default]
    Recipe,
    /// AdamW for everything (gates included), decoupled decay `2λ/D` on the factors.
    Adam,
}

/// Training settings of a language model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmTrainConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Adam learning rate (weights and `ω`).
    pub lr: f64,
    /// Warm-up steps of the Adam rate.
    pub warmup: usize,
    /// Dropout on embeddings and block outputs (training only).
    pub dropout: f64,
    /// `D` (`None`: dense, no gates).
    pub depth: Option<usize>,
    /// `λ`.
    pub lambda: f64,
    /// How the gate factors are optimized.
    pub gate_optim: GateOptim,
    /// SGD rate of the gates `γ` (constant).
    pub gate_lr: f64,
    /// SGD momentum of the gates.
    pub gate_momentum: f64,
    /// Share of the steps after which the gates' rate leaves `gate_lr` and follows a cosine to
    /// 0 at the last step (`1`: constant throughout, the recipe as first measured). A constant
    /// rate lets unneeded groups keep collapsing; decaying it at the end lets the kept gates
    /// settle instead of ending training at full SGD noise.
    #[serde(default = "constant_gate_rate")]
    pub gate_decay_from: f64,
    /// Initial gates.
    pub gate_init: GateInit,
    /// Seed (initialization, batches).
    pub seed: u64,
    /// Evaluate every this many steps (and at the end).
    pub eval_every: usize,
    /// Validation windows per evaluation (`block_size` tokens each, the first ones of the
    /// validation text).
    pub eval_windows: usize,
    /// Steps of the schedule already done before this call: a model cut out of a gated one
    /// mid-training continues the schedule where the gated run left it. The rates continue from
    /// there, Adam's fresh moments warm up again over `warmup` steps, and the batches continue
    /// the same stream (the first `schedule_offset` steps' windows are drawn and skipped).
    #[serde(default)]
    pub schedule_offset: usize,
    /// Length of the rate schedules (`None`: `schedule_offset + steps`). A gated run that is
    /// cut at step K of N runs `steps = K` with `schedule_steps = Some(N)`.
    #[serde(default)]
    pub schedule_steps: Option<usize>,
    /// Schedule step at which the gates start to move (`0`: from the start). Before it the
    /// gates stay as initialized and nothing is penalized: with gates initialized to 1 the
    /// model trains exactly as the dense one. Gating a partly trained model for a short window
    /// is what met the head-pruning target (docs/EXPERIMENTS.md, "Gating a partly trained
    /// model"); gating from the first step costs about 2.4% of validation loss on its own.
    #[serde(default)]
    pub gate_from: usize,
    /// Schedule step at which training cuts (`None`: never): every group whose norm is at most
    /// `cut_threshold` times the largest group of its kind (`heads` or `mlp`, over all blocks)
    /// is zeroed for good, the kept groups' gates are folded into their weights, the gates stop
    /// moving and the penalty stops. The rest trains as the smaller dense model would (whose
    /// exact zeros `dgating lm prune` cuts out).
    #[serde(default)]
    pub cut_at: Option<usize>,
    /// Relative threshold of the cut (see `cut_at`).
    #[serde(default = "default_cut_threshold")]
    pub cut_threshold: f64,
}

fn default_cut_threshold() -> f64 {
    dgating_core::ReadOut::DEFAULT_RELATIVE
}

/// What a training step does with the gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before `gate_from`: gates fixed, no penalty.
    Frozen,
    /// Gates trained, penalty on.
    Gated,
    /// After `cut_at`: removed groups zero, gates fixed at 1 / 0, no penalty.
    Cut,
}

impl Default for LmTrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 16,
            lr: 1e-3,
            warmup: 50,
            dropout: 0.0,
            depth: Some(3),
            lambda: 0.01,
            gate_optim: GateOptim::Recipe,
            gate_lr: 0.1,
            gate_momentum: 0.9,
            gate_decay_from: 1.0,
            gate_init: GateInit::Balanced,
            seed: 0,
            eval_every: 100,
            eval_windows: 64,
            schedule_offset: 0,
            schedule_steps: None,
            gate_from: 0,
            cut_at: None,
            cut_threshold: default_cut_threshold(),
        }
    }
}

fn constant_gate_rate() -> f64 {
    1.0
}

impl LmTrainConfig {
    /// Rejects values out of range.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.batch_size == 0 || self.eval_every == 0 || self.eval_windows == 0 {
            return bad("batch size, eval_every and eval_windows must be >= 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite() && self.gate_lr > 0.0 && self.gate_lr.is_finite()) {
            return bad(format!("learning rates must be finite and > 0, got {} and {}", self.lr, self.gate_lr));
        }
        if !(0.0..1.0).contains(&self.dropout) || !(0.0..1.0).contains(&self.gate_momentum) {
            return bad(format!(
                "dropout and momentum must be in [0, 1), got {} and {}",
                self.dropout, self.gate_momentum
            ));
        }
        if !(self.gate_decay_from > 0.0 && self.gate_decay_from <= 1.0) {
            return bad(format!("gate_decay_from must be in (0, 1], got {}", self.gate_decay_from));
        }
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return bad(format!("lambda must be finite and >= 0, got {}", self.lambda));
        }
        if let Some(d) = self.depth {
            dgating_core::config::check_depth(d)?;
        }
        if self.schedule_offset + self.steps > self.schedule_len() {
            return bad(format!(
                "the schedule of {} steps ends before step {} ({} done + {} more)",
                self.schedule_len(),
                self.schedule_offset + self.steps,
                self.schedule_offset,
                self.steps
            ));
        }
        if self.cut_at.is_some_and(|c| c < self.gate_from) || self.gate_from > self.schedule_len() {
            return bad(format!(
                "gate_from ({}) must be at most cut_at ({:?}) and the schedule's length ({})",
                self.gate_from,
                self.cut_at,
                self.schedule_len()
            ));
        }
        if self.depth.is_none() && (self.cut_at.is_some() || self.gate_from > 0) {
            return bad("gate_from and cut_at need gates (depth); a dense run has none".into());
        }
        if !(0.0..1.0).contains(&self.cut_threshold) {
            return bad(format!("cut_threshold must be in [0, 1), got {}", self.cut_threshold));
        }
        Ok(())
    }

    fn phase(&self, schedule_step: usize) -> Phase {
        if self.cut_at.is_some_and(|c| schedule_step >= c) {
            Phase::Cut
        } else if schedule_step >= self.gate_from {
            Phase::Gated
        } else {
            Phase::Frozen
        }
    }

    /// Where the Adam moments in use at `schedule_step` started: the call's start, `gate_from`
    /// or `cut_at` (each starts them afresh).
    fn restart(&self, schedule_step: usize) -> usize {
        let marks = [Some(self.gate_from), self.cut_at];
        marks
            .into_iter()
            .flatten()
            .filter(|&m| m > self.schedule_offset && m <= schedule_step)
            .max()
            .unwrap_or(self.schedule_offset)
    }

    /// Length of the rate schedules.
    pub fn schedule_len(&self) -> usize {
        self.schedule_steps.unwrap_or(self.schedule_offset + self.steps)
    }

    /// The Adam rate at this call's 0-based `step`: the schedule's rate at
    /// `schedule_offset + step`, warmed up again over `warmup` steps when continuing.
    /// Adam's moments also start afresh at `gate_from` and `cut_at`, and warm up the same way.
    pub fn lr_at_call_step(&self, step: usize) -> f64 {
        let s = self.schedule_offset + step;
        let lr = self.lr_at(s, self.schedule_len());
        let restart = self.restart(s);
        if restart > 0 && s - restart < self.warmup {
            return lr * (s - restart + 1) as f64 / self.warmup as f64;
        }
        lr
    }

    /// Weight decay of the gate factors, `2λ/D` (0 without gates).
    pub fn factor_decay(&self) -> f64 {
        self.depth.map_or(0.0, |d| 2.0 * self.lambda / d as f64)
    }

    /// The Adam rate at 0-based `step`: linear warm-up, then cosine to `0.1·lr` at `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = total.saturating_sub(self.warmup).max(1) as f64;
        let t = ((step - self.warmup) as f64 / span).min(1.0);
        self.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
    }

    /// The gates' SGD rate at 0-based `step` of `total`: `gate_lr` until the share
    /// `gate_decay_from` of the steps, then a cosine to 0 at the last step.
    pub fn gate_lr_at(&self, step: usize, total: usize) -> f64 {
        let t = step as f64 / total.saturating_sub(1).max(1) as f64;
        if t <= self.gate_decay_from || self.gate_decay_from >= 1.0 {
            return self.gate_lr;
        }
        let u = ((t - self.gate_decay_from) / (1.0 - self.gate_decay_from)).min(1.0);
        self.gate_lr * 0.5 * (1.0 + (std::f64::consts::PI * u).cos())
    }
}

/// One evaluation during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmMetrics {
    /// Steps done.
    pub step: usize,
    /// Training tokens seen.
    pub tokens_seen: usize,
    /// Mean training loss since the last evaluation.
    pub train_loss: f64,
    /// Validation loss (mean NLL per token).
    pub val_loss: f64,
    /// Adam rate of the last step.
    pub lr: f64,
    /// Seconds since the start of this training call.
    pub elapsed_s: f64,
    /// Per gate set (`blocks.{l}.heads`, `blocks.{l}.mlp`): group norms relative to the set's
    /// largest.
    pub relative_norms: Vec<(String, Vec<f64>)>,
}

impl LmMetrics {
    /// Groups per set with relative norm above `rel`.
    pub fn active(&self, rel: f64) -> Vec<(String, usize)> {
        self.relative_norms.iter().map(|(d, n)| (d.clone(), n.iter().filter(|&&v| v > rel).count())).collect()
    }
}

/// Mean cross-entropy of logits `[B, T, V]` against targets `[B, T]` (differentiable).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let logits = logits.reshape((b * t, v))?;
    let lse = logits.log_sum_exp(D::Minus1)?;
    let picked = logits.gather(&targets.reshape((b * t, 1))?, 1)?.squeeze(1)?;
    Ok((lse - picked)?.mean_all()?)
}

/// Random training windows: `(x, y)` of `[batch, block]` with `y` shifted by one.
pub fn sample_batch(
    tokens: &[u32],
    batch: usize,
    block: usize,
    rng: &mut StdRng,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    if tokens.len() <= block + 1 {
        return Err(Error::Config(format!(
            "{} training tokens are too few for windows of {block} (block_size) + 1",
            tokens.len()
        )));
    }
    let mut x = Vec::with_capacity(batch * block);
    let mut y = Vec::with_capacity(batch * block);
    for _ in 0..batch {
        let s = window_start(tokens.len(), block, rng);
        x.extend_from_slice(&tokens[s..s + block]);
        y.extend_from_slice(&tokens[s + 1..s + block + 1]);
    }
    Ok((Tensor::from_vec(x, (batch, block), device)?, Tensor::from_vec(y, (batch, block), device)?))
}

/// The random stream [`train_lm`] draws its batches from: seeded by `cfg.seed`, past the
/// `cfg.schedule_offset` steps' windows a continued run has already seen.
pub fn batch_rng(cfg: &LmTrainConfig, train: &[u32], block: usize) -> StdRng {
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x5eed_ba7c);
    if train.len() > block + 1 {
        for _ in 0..cfg.schedule_offset * cfg.batch_size {
            window_start(train.len(), block, &mut rng);
        }
    }
    rng
}

/// One training window's first token, the one draw [`sample_batch`] makes per sequence (and
/// [`batch_rng`] skips); `n_tokens > block + 1`.
fn window_start(n_tokens: usize, block: usize, rng: &mut StdRng) -> usize {
    rng.random_range(0..n_tokens - block - 1)
}

/// Mean validation NLL of `model` on the first `windows` consecutive windows of `tokens`.
pub fn val_loss<M: Model + ?Sized>(
    model: &M,
    tokens: &[u32],
    block: usize,
    windows: usize,
    device: &Device,
) -> Result<f64> {
    let n = windows.min((tokens.len().saturating_sub(1)) / block);
    if n == 0 {
        return Err(Error::Config(format!("{} validation tokens are too few for one window of {block}", tokens.len())));
    }
    let mut total = 0.0;
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let mut x = vec![];
        let mut y = vec![];
        for &w in chunk {
            x.extend_from_slice(&tokens[w * block..(w + 1) * block]);
            y.extend_from_slice(&tokens[w * block + 1..(w + 1) * block + 1]);
        }
        let x = Tensor::from_vec(x, (chunk.len(), block), device)?;
        let y = Tensor::from_vec(y, (chunk.len(), block), device)?;
        total += crate::lm::score::nll_sum(&model.forward(&x)?, &y)?;
    }
    Ok(total / (n * block) as f64)
}

/// Group norms (of the effective weights) of every gate set.
pub fn group_norms<M: Model + ?Sized>(model: &M) -> Result<Vec<(String, Vec<f64>)>> {
    let store = model.params()?;
    model.gate_sets().iter().map(|s| Ok((s.dim().to_string(), s.group_norms(&store)?))).collect()
}

/// Relative group norms of every gate set: each group's norm over its set's largest.
pub fn relative_norms<M: Model + ?Sized>(model: &M) -> Result<Vec<(String, Vec<f64>)>> {
    Ok(group_norms(model)?
        .into_iter()
        .map(|(dim, n)| {
            let max = n.iter().copied().fold(0.0, f64::max).max(f64::MIN_POSITIVE);
            (dim, n.iter().map(|v| v / max).collect())
        })
        .collect())
}

/// The optimizers of a phase, with fresh moments: Adam for the weights (and `ω`), SGD for the
/// gates while they train; the penalty only while they train.
fn optimizers(cfg: &LmTrainConfig, store: &ParamStore, phase: Phase) -> Result<(Optimizer, Option<Optimizer>)> {
    let adam = OptimizerKind::AdamW { beta1: 0.9, beta2: 0.95, eps: 1e-8 };
    let not_gates = || sub_store(store, |r| r != ParamRole::Gate);
    if phase != Phase::Gated {
        return Ok((Optimizer::new(adam, &not_gates()?, 0.0, 0.0)?, None));
    }
    let wd = cfg.factor_decay();
    Ok(match cfg.gate_optim {
        GateOptim::Recipe => (
            Optimizer::new(adam, &not_gates()?, wd, 0.0)?,
            Some(Optimizer::new(
                OptimizerKind::Sgd { momentum: cfg.gate_momentum },
                &sub_store(store, |r| r == ParamRole::Gate)?,
                wd,
                0.0,
            )?),
        ),
        GateOptim::Adam => (Optimizer::new(adam, store, wd, 0.0)?, None),
    })
}

/// Keep-masks of the cut of [`LmTrainConfig::cut_at`], one per gate set: a group is kept iff
/// its norm is above `threshold` times the largest group of its kind (the part of the set's
/// name after its last `.`: `heads` or `mlp`, over all blocks) or NaN. Changes nothing.
pub fn cut_masks<M: Model + ?Sized>(model: &M, threshold: f64) -> Result<Vec<(String, Vec<bool>)>> {
    let norms = group_norms(model)?;
    let kind = |dim: &str| dim.rsplit('.').next().unwrap_or(dim).to_string();
    let mut largest: BTreeMap<String, f64> = BTreeMap::new();
    for (dim, n) in &norms {
        let m = largest.entry(kind(dim)).or_insert(0.0);
        *m = n.iter().copied().fold(*m, f64::max);
    }
    Ok(norms
        .into_iter()
        .map(|(dim, n)| {
            let cutoff = threshold * largest[&kind(&dim)];
            let keep = n.iter().map(|&v| v > cutoff || v.is_nan()).collect();
            (dim, keep)
        })
        .collect())
}

/// The cut of [`LmTrainConfig::cut_at`]: zeroes the groups [`cut_masks`] removes, folds the
/// gates of every set into its weights and sets the kept groups' gates to 1. Returns the masks.
pub fn cut_groups<M: Model + ?Sized>(model: &M, threshold: f64) -> Result<Vec<(String, Vec<bool>)>> {
    let masks = cut_masks(model, threshold)?;
    let store = model.params()?;
    for (set, (_, keep)) in model.gate_sets().iter().zip(&masks) {
        if let Some(g) = set.gates_var() {
            set.set_omega(&store, set.effective_buffers(&store)?)?;
            g.set(&g.as_tensor().ones_like()?)?;
        }
        set.drop_groups(&store, keep)?;
    }
    Ok(masks)
}

fn sub_store(store: &ParamStore, keep: impl Fn(ParamRole) -> bool) -> Result<ParamStore> {
    let mut out = ParamStore::new();
    for p in store.iter().filter(|p| keep(p.role)) {
        out.push(p.name.clone(), p.var.clone(), p.role)?;
    }
    Ok(out)
}

/// Trains `model` for `cfg.steps` steps on `train` tokens, evaluating on `val`; `on_eval`
/// sees every evaluation (progress, metrics files) and may stop training by returning
/// `false`. Returns the evaluations.
pub fn train_lm(
    model: &Gpt,
    cfg: &LmTrainConfig,
    train: &[u32],
    val: &[u32],
    mut on_eval: impl FnMut(&LmMetrics) -> Result<bool>,
) -> Result<Vec<LmMetrics>> {
    cfg.check()?;
    let block = model.config().block_size;
    let device = model.device().clone();
    let store = model.params()?;
    let mut phase = cfg.phase(cfg.schedule_offset);
    if phase == Phase::Cut {
        cut_groups(model, cfg.cut_threshold)?;
    }
    let (mut main, mut gates) = optimizers(cfg, &store, phase)?;
    let mut rng = batch_rng(cfg, train, block);
    let start = Instant::now();
    let mut history = vec![];
    let (mut loss_sum, mut loss_n) = (0.0, 0usize);
    for step in 0..cfg.steps {
        let now = cfg.phase(cfg.schedule_offset + step);
        if phase != now {
            if now == Phase::Cut {
                cut_groups(model, cfg.cut_threshold)?;
            }
            (main, gates) = optimizers(cfg, &store, now)?;
            phase = now;
        }
        let (x, y) = sample_batch(train, cfg.batch_size, block, &mut rng, &device)?;
        let loss = cross_entropy(&model.forward_train(&x, cfg.dropout)?, &y)?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() {
            return Err(Error::NonFinite { what: "training loss".into(), epoch: 1, step: step + 1 });
        }
        let grads = loss.backward()?;
        let lr = cfg.lr_at_call_step(step);
        main.step(&grads, lr)?;
        if let Some(g) = &mut gates {
            g.step(&grads, cfg.gate_lr_at(cfg.schedule_offset + step, cfg.schedule_len()))?;
        }
        loss_sum += value;
        loss_n += 1;
        let done = step + 1;
        if (cfg.schedule_offset + done).is_multiple_of(cfg.eval_every) || done == cfg.steps {
            let m = LmMetrics {
                step: cfg.schedule_offset + done,
                tokens_seen: (cfg.schedule_offset + done) * cfg.batch_size * block,
                train_loss: loss_sum / loss_n as f64,
                val_loss: val_loss(model, val, block, cfg.eval_windows, &device)?,
                lr,
                elapsed_s: start.elapsed().as_secs_f64(),
                relative_norms: relative_norms(model)?,
            };
            (loss_sum, loss_n) = (0.0, 0);
            let go_on = on_eval(&m)?;
            history.push(m);
            if !go_on {
                break;
            }
        }
    }
    Ok(history)
}

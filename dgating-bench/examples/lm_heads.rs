//! Attention heads removed from a character-level GPT on Moby Dick: D-Gating (the recipe of
//! `dgating lm train`) against magnitude (head-norm) pruning of the dense model, both
//! fine-tuned for the same number of steps after the cut. One JSON line per result on stdout
//! (progress on stderr); docs/EXPERIMENTS.md ("Language models") has the commands and results.
//!
//! ```sh
//! cargo build --release -p dgating-bench --example lm_heads
//! nice -n 5 target/release/examples/lm_heads --steps 600 --ft-steps 100 --lambdas 0.01,0.03 > heads.jsonl
//! ```
//!
//! What it does, all on the built-in Moby Dick, character-level, last 10% held out:
//!
//! 1. trains the dense model (`--steps`, Adam, the same schedule and seed as the gated runs);
//! 2. for each `λ` in `--lambdas` (and `D` in `--depths`): trains the gated model with the
//!    recipe, reads the heads out with the default read-out (MLP neurons are kept, so that
//!    both methods differ only in heads), cuts them out ([`dgating_prune::compact`]), and
//!    fine-tunes the compacted dense model for `--ft-steps` (`λ = 0`);
//! 3. magnitude baseline: removes the same number of heads from the dense model — those with
//!    the smallest norm relative to their block's largest head (q, k, v rows and biases,
//!    output-projection columns) — and fine-tunes it for the same `--ft-steps`; also at
//!    `--magnitude-k` heads; then trains the dense model `--ft-steps` more at the fine-tune
//!    rate (`dense_ft`), the reference at the pruned models' total number of steps.
//!
//! Validation losses are on the first `--eval-windows` windows of `block_size` tokens of the
//! validation text. Other arguments: `--n-layer 4 --n-head 8 --n-embd 256 --block 128
//! --batch 16 --lr 1e-3 --warmup 50 --ft-lr 3e-4 --seed 0 --gate-optim recipe|adam --gate-mlp 1|0` (`0`: only heads
//! are gated, the MLP is an ordinary dense layer without a penalty) `--gate-init balanced|ones`
//! `--gate-decay-from F` (the gates' rate is constant for the share `F` of the steps, then a
//! cosine to 0; `1`: constant throughout) `--gate-lr R` (the gates' SGD rate, 0.1).
//!
//! `--cut-at K` cuts early: the gated model trains only the first `K` steps of the `--steps`
//! schedule, its heads are read out and cut there, and the smaller dense model continues the
//! same schedule (same rates, same batch stream; Adam's fresh moments re-warmed over
//! `--warmup` steps) to `--steps`, then the fine-tune steps. The magnitude baseline cuts the
//! dense model's step-`K` snapshot by head norm and continues identically, and the dense
//! reference itself is interrupted at `K` (fresh Adam moments) the same way, so all three see
//! the same schedule, data and optimizer restart. `--scratch-heads 4,5,5,5` also trains a
//! dense model of that many heads per block from scratch for the whole budget (the same
//! structure without any pruning). `--magnitude-kept 5,5,5,4` also cuts the dense model (at
//! `--cut-at`) to that many heads per block, its largest; `--dgating-kept 5,5,5,4` cuts the
//! gated models the same way by their gated head norms instead of the read-out.
//!
//! `--head-group output` gates the gated models' heads on their output path only (v rows and
//! output-projection columns; [`HeadGroup::Output`]) instead of all their weights.
//! `--read-out-global R` removes every head below `R` times the largest head of the whole model
//! (the default read-out is relative to each block's largest, so it cannot see a block whose
//! heads all shrank together). `--gate-from K0` trains the model dense for its first `K0`
//! steps (the dense reference's own first steps) and gates it from there, without changing its
//! function, until `--cut-at`: D-Gating as a pruning stage of a model already partly trained.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Device};
use dgating_core::ReadOut;
use dgating_nn::layers::GateInit;
use dgating_nn::lm::run::tokenize;
use dgating_nn::lm::train::{cut_masks, group_norms, relative_norms, val_loss};
use dgating_nn::lm::{Corpus, GateOptim, LmMetrics, LmTokenizer, LmTrainConfig, MOBY_DICK, TokenizerSpec, train_lm};
use dgating_nn::model::{Gpt, GptConfig, HeadGroup};
use dgating_nn::{Architecture, Model};
use dgating_prune::{PrunePlan, compact};
use serde_json::json;

struct Args {
    n_layer: usize,
    n_head: usize,
    n_embd: usize,
    block: usize,
    batch: usize,
    steps: usize,
    ft_steps: usize,
    lr: f64,
    ft_lr: f64,
    warmup: usize,
    lambdas: Vec<f64>,
    depths: Vec<usize>,
    magnitude_k: Vec<usize>,
    magnitude_kept: Vec<usize>,
    dgating_kept: Vec<usize>,
    eval_windows: usize,
    eval_every: usize,
    seed: u64,
    gate_optim: GateOptim,
    skip_dense: bool,
    gate_mlp: bool,
    gate_init: GateInit,
    gate_decay_from: f64,
    gate_lr: f64,
    cut_at: usize,
    scratch_heads: Vec<usize>,
    head_group: HeadGroup,
    global_rel: Option<f64>,
    gate_from: usize,
}

const USAGE: &str = "usage: lm_heads [--steps N] [--ft-steps N] [--lambdas a,b] [--depths 3,4] [--magnitude-k 13] \
                     [--n-layer 4] [--n-head 8] [--n-embd 256] [--block 128] [--batch 16] [--lr 1e-3] [--ft-lr 3e-4] \
                     [--warmup 50] [--eval-windows 200] [--eval-every N] [--seed 0] [--gate-optim recipe|adam] \
                     [--skip-dense 0|1] [--gate-mlp 1|0] [--gate-init balanced|ones] [--gate-decay-from 1.0] \
                     [--cut-at K] [--scratch-heads 4,5,5,5] [--head-group whole|output] [--read-out-global R] [--gate-from K0] [--magnitude-kept 5,5,5,4] [--dgating-kept 5,5,5,4]";

fn list<T: std::str::FromStr>(v: &str) -> Result<Vec<T>, String>
where
    T::Err: std::fmt::Display,
{
    v.split(',').filter(|s| !s.is_empty()).map(|s| s.trim().parse::<T>().map_err(|e| format!("{s}: {e}"))).collect()
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        n_layer: 4,
        n_head: 8,
        n_embd: 256,
        block: 128,
        batch: 16,
        steps: 600,
        ft_steps: 100,
        lr: 1e-3,
        ft_lr: 3e-4,
        warmup: 50,
        lambdas: vec![0.01],
        depths: vec![3],
        magnitude_k: vec![],
        magnitude_kept: vec![],
        dgating_kept: vec![],
        eval_windows: 200,
        eval_every: 0,
        seed: 0,
        gate_optim: GateOptim::Recipe,
        skip_dense: false,
        gate_mlp: true,
        gate_init: GateInit::Balanced,
        gate_decay_from: 1.0,
        gate_lr: LmTrainConfig::default().gate_lr,
        cut_at: 0,
        scratch_heads: vec![],
        head_group: HeadGroup::Whole,
        global_rel: None,
        gate_from: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let n = || v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        let f = || v.parse::<f64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--n-layer" => a.n_layer = n()?,
            "--n-head" => a.n_head = n()?,
            "--n-embd" => a.n_embd = n()?,
            "--block" => a.block = n()?,
            "--batch" => a.batch = n()?,
            "--steps" => a.steps = n()?,
            "--ft-steps" => a.ft_steps = n()?,
            "--lr" => a.lr = f()?,
            "--ft-lr" => a.ft_lr = f()?,
            "--warmup" => a.warmup = n()?,
            "--lambdas" => a.lambdas = list(&v)?,
            "--depths" => a.depths = list(&v)?,
            "--magnitude-k" => a.magnitude_k = list(&v)?,
            "--magnitude-kept" => a.magnitude_kept = list(&v)?,
            "--dgating-kept" => a.dgating_kept = list(&v)?,
            "--eval-windows" => a.eval_windows = n()?,
            "--eval-every" => a.eval_every = n()?,
            "--seed" => a.seed = n()? as u64,
            "--skip-dense" => a.skip_dense = n()? != 0,
            "--gate-mlp" => a.gate_mlp = n()? != 0,
            "--gate-decay-from" => a.gate_decay_from = f()?,
            "--gate-lr" => a.gate_lr = f()?,
            "--cut-at" => a.cut_at = n()?,
            "--scratch-heads" => a.scratch_heads = list(&v)?,
            "--read-out-global" => {
                let r = f()?;
                if !(0.0..1.0).contains(&r) {
                    return Err(format!("--read-out-global {r}: a share of the largest head in [0, 1)"));
                }
                a.global_rel = Some(r);
            }
            "--gate-from" => a.gate_from = n()?,
            "--head-group" => {
                a.head_group = match v.as_str() {
                    "whole" => HeadGroup::Whole,
                    "output" => HeadGroup::Output,
                    o => return Err(format!("--head-group {o}: whole or output")),
                }
            }
            "--gate-init" => {
                a.gate_init = match v.as_str() {
                    "balanced" => GateInit::Balanced,
                    "ones" => GateInit::Ones,
                    o => return Err(format!("--gate-init {o}: balanced or ones")),
                }
            }
            "--gate-optim" => {
                a.gate_optim = match v.as_str() {
                    "recipe" => GateOptim::Recipe,
                    "adam" => GateOptim::Adam,
                    o => return Err(format!("--gate-optim {o}: recipe or adam")),
                }
            }
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if a.steps == 0 || a.batch == 0 || a.eval_windows == 0 {
        return Err("--steps, --batch and --eval-windows must be >= 1".into());
    }
    if a.gate_from > 0 && a.gate_from >= a.cut_at {
        return Err(format!("--gate-from {} must be below --cut-at {}", a.gate_from, a.cut_at));
    }
    if a.cut_at >= a.steps {
        return Err(format!("--cut-at {} must be below --steps {}", a.cut_at, a.steps));
    }
    let counts = [
        ("--scratch-heads", &a.scratch_heads),
        ("--magnitude-kept", &a.magnitude_kept),
        ("--dgating-kept", &a.dgating_kept),
    ];
    for (flag, l) in counts {
        if !l.is_empty() && (l.len() != a.n_layer || l.iter().any(|&h| h > a.n_head)) {
            return Err(format!("{flag} needs {} head counts of at most {}, one per block", a.n_layer, a.n_head));
        }
    }
    Ok(a)
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Ctx {
    args: Args,
    train: Vec<u32>,
    val: Vec<u32>,
    config: GptConfig,
    started: Instant,
}

impl Ctx {
    fn train_cfg(&self, depth: Option<usize>, lambda: f64) -> LmTrainConfig {
        let a = &self.args;
        LmTrainConfig {
            steps: a.steps,
            batch_size: a.batch,
            lr: a.lr,
            warmup: a.warmup,
            depth,
            lambda,
            gate_optim: a.gate_optim,
            gate_init: a.gate_init,
            gate_decay_from: a.gate_decay_from,
            gate_lr: a.gate_lr,
            seed: a.seed,
            eval_every: if a.eval_every == 0 { a.steps } else { a.eval_every },
            eval_windows: a.eval_windows.min(64),
            ..LmTrainConfig::default()
        }
    }

    /// The first call of a run cut at `--cut-at`: its first `K` steps of the whole schedule.
    fn until_cut(&self, cfg: LmTrainConfig) -> LmTrainConfig {
        let a = &self.args;
        if a.cut_at == 0 { cfg } else { LmTrainConfig { steps: a.cut_at, schedule_steps: Some(a.steps), ..cfg } }
    }

    /// The rest of the schedule after the cut (dense: no gates, no penalty).
    fn after_cut(&self) -> LmTrainConfig {
        let a = &self.args;
        LmTrainConfig {
            steps: a.steps - a.cut_at,
            schedule_offset: a.cut_at,
            schedule_steps: Some(a.steps),
            ..self.train_cfg(None, 0.0)
        }
    }

    /// The fine-tune steps every cut model (and the dense reference) gets: dense, no penalty,
    /// `--ft-lr` without warm-up.
    fn finetune_cfg(&self) -> LmTrainConfig {
        LmTrainConfig { steps: self.args.ft_steps, lr: self.args.ft_lr, warmup: 0, ..self.train_cfg(None, 0.0) }
    }

    fn val(&self, m: &Gpt) -> Res<f64> {
        Ok(val_loss(m, &self.val, self.args.block, self.args.eval_windows, &Device::Cpu)?)
    }

    fn train(&self, m: &Gpt, cfg: &LmTrainConfig, what: &str) -> Res<Vec<LmMetrics>> {
        let t = Instant::now();
        let h = train_lm(m, cfg, &self.train, &self.val, |e| {
            let active = e.active(ReadOut::DEFAULT_RELATIVE);
            eprintln!(
                "[{:6.0}s] {what} step {} train {:.4} val(64) {:.4} active {:?}",
                self.started.elapsed().as_secs_f64(),
                e.step,
                e.train_loss,
                e.val_loss,
                active.iter().map(|(_, n)| *n).collect::<Vec<_>>()
            );
            Ok(true)
        })?;
        eprintln!("{what}: {} steps in {:.0} s", cfg.steps, t.elapsed().as_secs_f64());
        Ok(h)
    }

    /// Cuts `masks` (one keep-mask per gate set) out of `m`, fine-tunes the smaller dense
    /// model, and returns (heads per block, val before, val after, seconds).
    fn cut_and_tune(&self, m: &Gpt, masks: Vec<Vec<bool>>, what: &str) -> Res<serde_json::Value> {
        // Absolute head norms (effective weights) of the model being cut: the scale the
        // continued training starts from.
        let abs: BTreeMap<_, _> = group_norms(m)?.into_iter().filter(|(d, _)| d.ends_with(".heads")).collect();
        eprintln!("{what}: absolute head norms at the cut {abs:?}");
        let plan = PrunePlan::from_set_masks(m, masks)?;
        let c = compact(m, &plan)?;
        let Architecture::Gpt(cfg) = c.architecture().clone() else { return Err("not a GPT".into()) };
        let small = Gpt::from_tensors(cfg.clone(), &c.tensors()?)?;
        let before = self.val(&small)?;
        let mut continued = None;
        if self.args.cut_at > 0 {
            self.train(&small, &self.after_cut(), &format!("{what} after the cut"))?;
            continued = Some(self.val(&small)?);
        }
        let mut after = continued.unwrap_or(before);
        let t = Instant::now();
        if self.args.ft_steps > 0 {
            let ft = self.finetune_cfg();
            self.train(&small, &ft, &format!("{what} fine-tune"))?;
            after = self.val(&small)?;
        }
        Ok(json!({
            "heads": cfg.heads, "mlp": cfg.mlp, "params": c.num_params()?,
            "val_cut": before, "head_norms_abs_at_cut": abs, "cut_at": self.args.cut_at, "val_continued": continued, "val_ft": after, "ft_seconds": t.elapsed().as_secs_f64(),
        }))
    }

    /// Keep-masks removing the `k` heads with the smallest norm relative to their block's
    /// largest head (MLP neurons kept).
    fn magnitude_masks(&self, m: &Gpt, k: usize) -> Res<Vec<Vec<bool>>> {
        let rel = relative_norms(m)?;
        let mut heads: Vec<(f64, usize, usize)> = vec![];
        for (s, (dim, n)) in rel.iter().enumerate() {
            if dim.ends_with(".heads") {
                heads.extend(n.iter().enumerate().map(|(i, &v)| (v, s, i)));
            }
        }
        heads.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut masks: Vec<Vec<bool>> = rel.iter().map(|(_, n)| vec![true; n.len()]).collect();
        for &(_, s, i) in heads.iter().take(k) {
            masks[s][i] = false;
        }
        Ok(masks)
    }
}

/// Keep-masks keeping, in each block, the `kept[b]` heads of largest norm (MLP neurons kept):
/// magnitude pruning with the per-block head counts fixed in advance.
fn per_block_masks(m: &Gpt, kept: &[usize]) -> Res<Vec<Vec<bool>>> {
    let mut block = 0;
    relative_norms(m)?
        .iter()
        .map(|(dim, n)| {
            if !dim.ends_with(".heads") {
                return Ok(vec![true; n.len()]);
            }
            let mut order: Vec<usize> = (0..n.len()).collect();
            order.sort_by(|&a, &b| n[b].total_cmp(&n[a]));
            let mut keep = vec![false; n.len()];
            for &i in order.iter().take(kept[block]) {
                keep[i] = true;
            }
            block += 1;
            Ok(keep)
        })
        .collect()
}

fn emit(v: serde_json::Value) {
    println!("{v}");
}

fn main() -> Res<()> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    // SAFETY: before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let corpus = Corpus::load(MOBY_DICK)?;
    let tok = LmTokenizer::build(&TokenizerSpec::Char, &corpus.text)?;
    let tokens = tokenize(&tok, &corpus, 0.1)?;
    let mut config = GptConfig::nano(tok.vocab_size(), args.block, args.n_layer, args.n_head, args.n_embd)?;
    config.group_mlp = args.gate_mlp;
    let ctx = Ctx { train: tokens.train, val: tokens.val, config, started: Instant::now(), args };
    let a = &ctx.args;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_default();
    emit(json!({
        "kind": "setup", "n_layer": a.n_layer, "n_head": a.n_head, "n_embd": a.n_embd, "block": a.block,
        "batch": a.batch, "steps": a.steps, "ft_steps": a.ft_steps, "lr": a.lr, "ft_lr": a.ft_lr,
        "tokens_seen": a.steps * a.batch * a.block, "ft_tokens": a.ft_steps * a.batch * a.block,
        "eval_windows": a.eval_windows, "val_tokens_scored": a.eval_windows * a.block, "seed": a.seed,
        "vocab": ctx.config.vocab_size, "threads": threads, "gate_mlp": a.gate_mlp,
        "gate_init": format!("{:?}", a.gate_init), "head_group": a.head_group, "read_out_global": a.global_rel, "gate_from": a.gate_from, "gate_lr": a.gate_lr, "gate_decay_from": a.gate_decay_from,
    }));
    let total_heads = a.n_layer * a.n_head;

    let mut ks: Vec<usize> = a.magnitude_k.clone();
    let dense = (!a.skip_dense)
        .then(|| -> Res<(Gpt, Gpt)> {
            let m = Gpt::new(ctx.config.clone(), None, GateInit::Balanced, a.seed, DType::F32, &Device::Cpu)?;
            let t = Instant::now();
            ctx.train(&m, &ctx.until_cut(ctx.train_cfg(None, 0.0)), "dense")?;
            // The model magnitude pruning cuts: the dense one where the gated ones are cut.
            let at_cut = Gpt::from_tensors(
                ctx.config.clone(),
                &m.effective()?.into_iter().map(|(k, v)| Ok((k, v.copy()?))).collect::<Res<BTreeMap<_, _>>>()?,
            )?;
            if a.cut_at > 0 {
                ctx.train(&m, &ctx.after_cut(), "dense after the cut step")?;
            }
            let secs = t.elapsed().as_secs_f64();
            emit(json!({"kind": "dense", "val": ctx.val(&m)?, "train_seconds": secs, "cut_at": a.cut_at,
                        "head_norms": relative_norms(&m)?.into_iter().filter(|(d, _)| d.ends_with(".heads")).collect::<BTreeMap<_, _>>()}));
            Ok((m, at_cut))
        })
        .transpose()?;

    for &depth in &a.depths {
        for &lambda in &a.lambdas {
            let what = format!("D={depth} lambda={lambda}");
            let config = GptConfig { head_group: a.head_group, ..ctx.config.clone() };
            let t = Instant::now();
            let gated_cfg = ctx.until_cut(ctx.train_cfg(Some(depth), lambda));
            let (m, history) = if a.gate_from == 0 {
                let m = Gpt::new(config, Some(depth), a.gate_init, a.seed, DType::F32, &Device::Cpu)?;
                let h = ctx.train(&m, &gated_cfg, &what)?;
                (m, h)
            } else {
                // Dense for the first K0 steps (the dense reference's own first K0 steps), then
                // gated from there without changing the function, to the cut.
                let dense = Gpt::new(ctx.config.clone(), None, GateInit::Balanced, a.seed, DType::F32, &Device::Cpu)?;
                let first =
                    LmTrainConfig { steps: a.gate_from, schedule_steps: Some(a.steps), ..ctx.train_cfg(None, 0.0) };
                ctx.train(&dense, &first, &format!("{what}: dense until step {}", a.gate_from))?;
                let m = Gpt::gated_from_tensors(config, &dense.effective()?, Some(depth), a.gate_init)?;
                let rest = LmTrainConfig { steps: a.cut_at - a.gate_from, schedule_offset: a.gate_from, ..gated_cfg };
                let h = ctx.train(&m, &rest, &what)?;
                (m, h)
            };
            let secs = t.elapsed().as_secs_f64();
            let val_gated = ctx.val(&m)?;
            let masks: Vec<Vec<bool>> = if !a.dgating_kept.is_empty() {
                // The gated norms as the ranking, under a per-block budget instead of the read-out.
                per_block_masks(&m, &a.dgating_kept)?
            } else {
                // The default read-out is relative to each block's largest head and so cannot
                // see a block whose heads all shrank together; --read-out-global R cuts every
                // head at most R times the largest head of the whole model instead (the cut of
                // `lm train`).
                let keeps: Vec<Vec<bool>> = match a.global_rel {
                    None => {
                        let read = PrunePlan::with_read_out(&m, &ReadOut::default())?;
                        m.gate_sets()
                            .iter()
                            .map(|s| read.dim(s.dim()).map(|d| d.keep.clone()).unwrap_or_default())
                            .collect()
                    }
                    Some(r) => cut_masks(&m, r)?.into_iter().map(|(_, keep)| keep).collect(),
                };
                // MLP neurons are kept, so that the methods differ only in heads.
                m.gate_sets()
                    .iter()
                    .zip(keeps)
                    .map(|(s, keep)| if s.dim().ends_with(".heads") { keep } else { vec![true; keep.len()] })
                    .collect()
            };
            let removed: usize = masks.iter().map(|k| k.iter().filter(|&&b| !b).count()).sum();
            let rel = relative_norms(&m)?;
            let cut = ctx.cut_and_tune(&m, masks, &what)?;
            emit(json!({
                "kind": "dgating", "cut_at": a.cut_at, "kept_per_block": a.dgating_kept, "depth": depth, "lambda": lambda, "gate_optim": a.gate_optim,
                "val_gated": val_gated, "train_seconds": secs, "heads_removed": removed,
                "heads_removed_pct": 100.0 * removed as f64 / total_heads as f64,
                "cut": cut,
                "head_norms": rel.into_iter().filter(|(d, _)| d.ends_with(".heads")).collect::<BTreeMap<_, _>>(),
                "history": history.iter().map(|h| json!({"step": h.step, "val": h.val_loss,
                    "active_heads": h.active(ReadOut::DEFAULT_RELATIVE).iter().filter(|(d, _)| d.ends_with(".heads")).map(|(_, n)| *n).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            }));
            if removed > 0 && !ks.contains(&removed) {
                ks.push(removed);
            }
        }
    }

    if !a.scratch_heads.is_empty() {
        let config = GptConfig { heads: a.scratch_heads.clone(), ..ctx.config.clone() };
        let m = Gpt::new(config, None, GateInit::Balanced, a.seed, DType::F32, &Device::Cpu)?;
        let what = format!("scratch {:?}", a.scratch_heads);
        ctx.train(&m, &ctx.train_cfg(None, 0.0), &what)?;
        let val = ctx.val(&m)?;
        if a.ft_steps > 0 {
            ctx.train(&m, &ctx.finetune_cfg(), &format!("{what} + fine-tune steps"))?;
        }
        let removed = total_heads - a.scratch_heads.iter().sum::<usize>();
        emit(json!({"kind": "scratch", "heads": a.scratch_heads, "heads_removed": removed,
                    "heads_removed_pct": 100.0 * removed as f64 / total_heads as f64,
                    "params": m.effective()?.values().map(|t| t.elem_count()).sum::<usize>(), "val": val, "val_ft": ctx.val(&m)?}));
    }

    if let Some((m, at_cut)) = &dense {
        ks.sort_unstable();
        for k in ks.into_iter().filter(|&k| k > 0 && k <= total_heads) {
            let cut = ctx.cut_and_tune(at_cut, ctx.magnitude_masks(at_cut, k)?, &format!("magnitude k={k}"))?;
            emit(json!({"kind": "magnitude", "cut_at": a.cut_at, "heads_removed": k,
                        "heads_removed_pct": 100.0 * k as f64 / total_heads as f64, "cut": cut}));
        }
        if !a.magnitude_kept.is_empty() {
            let masks = per_block_masks(at_cut, &a.magnitude_kept)?;
            let cut = ctx.cut_and_tune(at_cut, masks, &format!("magnitude kept {:?}", a.magnitude_kept))?;
            let k = total_heads - a.magnitude_kept.iter().sum::<usize>();
            emit(json!({"kind": "magnitude_per_block", "cut_at": a.cut_at, "heads_removed": k,
                        "heads_removed_pct": 100.0 * k as f64 / total_heads as f64, "cut": cut}));
        }
        // The reference at the pruned models' total budget: the dense model trained for the
        // same fine-tune steps at the fine-tune rate.
        if a.ft_steps > 0 {
            ctx.train(m, &ctx.finetune_cfg(), "dense + fine-tune steps")?;
            emit(json!({"kind": "dense_ft", "val": ctx.val(m)?, "steps": a.steps + a.ft_steps}));
        }
    }
    eprintln!("total {:.0} s", ctx.started.elapsed().as_secs_f64());
    Ok(())
}

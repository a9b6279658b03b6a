//! The language part of `dgating demo`: a small gated GPT trained on the built-in Moby Dick
//! (character-level) with the default recipe, pruned with the default read-out through the
//! generic path, exported, reloaded, compared and sampled. Library calls only
//! (`dgating_nn::lm::run::train_run`, `dgating_prune::prune_lm_run`, `load_lm`).

use std::path::Path;

use candle_core::Device;
use dgating_core::ReadOut;
use dgating_nn::lm::run::{NewRun, TextSpec, language_model, train_run};
use dgating_nn::lm::{LmTrainConfig, MOBY_DICK, Sampling, TokenizerSpec, generate};
use dgating_nn::model::HeadGroup;
use dgating_prune::{LmPruneReport, load_lm, prune_lm_run};

/// The subdirectories this part writes under the demo's `--out`.
pub const SUBDIRS: [&str; 2] = ["lm-gated", "lm-compact"];

/// Settings, measured on this project's shared 2-core machine (docs/EXPERIMENTS.md,
/// "Language models"): about a minute of training.
const N_LAYER: usize = 2;
const N_HEAD: usize = 4;
const N_EMBD: usize = 64;
const BLOCK: usize = 64;
/// Training steps (the demo's hidden `--lm-steps` changes it for tests).
pub const STEPS: usize = 800;
const BATCH: usize = 16;
const LR: f64 = 3e-3;
const PROMPT: &str = "Call me Ishmael. ";

pub fn run(out: &Path, steps: usize, json: bool) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let (gated, compact) = (out.join(SUBDIRS[0]), out.join(SUBDIRS[1]));
    let new = NewRun {
        n_layer: N_LAYER,
        n_head: N_HEAD,
        n_embd: N_EMBD,
        block_size: BLOCK,
        gate_heads: true,
        gate_mlp: true,
        head_group: HeadGroup::Whole,
        text: TextSpec { corpus: Some(MOBY_DICK.into()), tokenizer: TokenizerSpec::Char, val_fraction: 0.1 },
    };
    let cfg = LmTrainConfig {
        steps,
        batch_size: BATCH,
        lr: LR,
        warmup: 30,
        eval_every: steps,
        eval_windows: 32,
        ..LmTrainConfig::default()
    };
    let t = std::time::Instant::now();
    let (_, history) = train_run(&gated, Some(&new), &cfg, &Device::Cpu, |_| Ok(true))?;
    let train_s = t.elapsed().as_secs_f64();
    let report = prune_lm_run(&gated, &ReadOut::default(), &compact, false)?;
    let lm = load_lm(&compact)?;
    let tok = lm.tokenizer.as_ref().ok_or("the export has no tokenizer")?;
    let s = Sampling { temperature: 0.8, top_k: Some(20), seed: 0 };
    let ids = generate(language_model(&lm.architecture)?, &lm.weights, &tok.encode(PROMPT)?, 160, &s)?;
    let sample = format!("{PROMPT}{}", tok.decode(&ids)?);
    if !json {
        print(&report, train_s, history.last().map_or(f64::NAN, |m| m.val_loss), &sample, &cfg);
    }
    Ok(serde_json::json!({"train_seconds": train_s, "prune": report, "sample": sample}))
}

fn heads(sizes: &std::collections::BTreeMap<String, usize>) -> Vec<usize> {
    (0..N_LAYER).map(|l| sizes.get(&format!("blocks.{l}.heads")).copied().unwrap_or(0)).collect()
}

fn mlp(sizes: &std::collections::BTreeMap<String, usize>) -> Vec<usize> {
    (0..N_LAYER).map(|l| sizes.get(&format!("blocks.{l}.mlp")).copied().unwrap_or(0)).collect()
}

fn print(r: &LmPruneReport, train_s: f64, val: f64, sample: &str, cfg: &LmTrainConfig) {
    println!();
    println!(
        "3. language model: gated GPT ({N_LAYER} blocks x {N_HEAD} heads, n_embd {N_EMBD}, context {BLOCK}) on Moby Dick, \
         character-level, last 10% held out"
    );
    println!(
        "trained {} steps x {BATCH} x {BLOCK} tokens in {train_s:.0} s (D = {}, lambda = {}, Adam + SGD gates at {}): val loss {val:.4}",
        cfg.steps,
        cfg.depth.unwrap_or(0),
        cfg.lambda,
        cfg.gate_lr
    );
    println!("read-out: {}", r.read_out);
    for g in &r.groups {
        let why = g.decision.map(|d| crate::prune::describe(&d, r.read_out.gap)).unwrap_or_default();
        println!("  {}: removed {} of {}{why}", g.dim, g.removed, g.groups);
    }
    println!(
        "heads per block {:?} -> {:?}; MLP width per block {:?} -> {:?}",
        heads(&r.before.sizes),
        heads(&r.after.sizes),
        mlp(&r.before.sizes),
        mlp(&r.after.sizes)
    );
    println!(
        "parameters {} -> {} ({:.1}%), exported to {} and reloaded",
        r.before.params,
        r.after.params,
        100.0 * r.after.params as f64 / r.before.params as f64,
        r.out_dir.display()
    );
    println!(
        "val loss ({} windows): gated {:.4}, compacted {:.4}; logits vs masked gated max rel diff {:.2e}; greedy tokens identical: {}",
        r.windows, r.val_loss_gated, r.val_loss_compact, r.max_rel_diff, r.same_greedy_tokens
    );
    println!(
        "generation (batch 1, KV cache): dense {:.0} tokens/s, compacted {:.0} tokens/s",
        r.tokens_per_s_dense, r.tokens_per_s_compact
    );
    println!("sample (temperature 0.8, top-k 20): {sample:?}");
}

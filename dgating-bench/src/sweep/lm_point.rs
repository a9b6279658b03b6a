//! One point of a language task ([`LmTaskSpec`]): a character-level GPT trained for the
//! task's steps — dense, or D-gated with the collapse recipe of `dgating lm train` — then
//! pruned (D-Gating: the default read-out through `dgating_prune::prune_lm_run_on`, which also
//! checks the compacted model against the masked gated one; magnitude: each gate set's
//! smallest groups of the dense model by norm), scored on the held-out windows, fine-tuned for
//! the common number of steps and scored again. The metric is `neg_val_loss` (the negative
//! mean next-token NLL, so that higher is better as for accuracy).

use std::path::Path;
use std::time::Instant;

use dgating_core::ReadOut;
use dgating_nn::lm::run::{NewRun, TextSpec, Tokens, load_run, run_tokens, train_run};
use dgating_nn::lm::train::val_loss;
use dgating_nn::lm::{LmTrainConfig, TokenizerSpec, train_lm};
use dgating_nn::model::{Architecture, Gpt, HeadGroup};
use dgating_prune::{Compacted, Cost, PrunePlan, compact, prune_lm_run_on, set_norms};

use crate::error::{Error, Result};
use crate::sweep::point::Point;
use crate::sweep::record::PointRecord;
use crate::sweep::spec::{LmGroups, LmTaskSpec, Method, SweepSpec, TaskSpec};

/// The name of a language task's metric.
pub const LM_METRIC: &str = "neg_val_loss";

fn train_config(task: &TaskSpec, lm: &LmTaskSpec, p: &Point) -> LmTrainConfig {
    LmTrainConfig {
        steps: lm.steps,
        batch_size: task.batch_size,
        lr: task.lr,
        warmup: lm.steps / 20,
        depth: if p.method == Method::Dgating { p.depth } else { None },
        lambda: p.lambda.unwrap_or(0.0),
        seed: p.seed,
        eval_every: lm.steps,
        eval_windows: lm.eval_windows.min(64),
        ..LmTrainConfig::default()
    }
}

/// The compacted model as an ordinary (ungated) GPT with its own copy of the weights.
fn dense_gpt(c: &Compacted) -> Result<Gpt> {
    let Architecture::Gpt(cfg) = c.architecture().clone() else {
        return Err(Error::InvalidConfig("a language task's model is not a GPT".into()));
    };
    Ok(Gpt::from_tensors(cfg, &c.tensors()?)?)
}

/// Trains, prunes, scores and fine-tunes one point of a language task in `dir` (which the
/// caller has cleared).
pub fn run_lm_point(spec: &SweepSpec, task: &TaskSpec, lm: &LmTaskSpec, p: &Point, dir: &Path) -> Result<PointRecord> {
    let device = spec.device.device()?;
    let run_dir = dir.join("run");
    let new = NewRun {
        n_layer: lm.n_layer,
        n_head: lm.n_head,
        n_embd: lm.n_embd,
        block_size: lm.block_size,
        gate_heads: true,
        gate_mlp: lm.groups == LmGroups::All,
        head_group: HeadGroup::Whole,
        text: TextSpec { corpus: Some(task.data.clone()), tokenizer: TokenizerSpec::Char, val_fraction: 0.1 },
    };
    let t0 = Instant::now();
    train_run(&run_dir, Some(&new), &train_config(task, lm, p), &device, |_| Ok(true))?;
    let train_seconds = t0.elapsed().as_secs_f64();
    let (cfg, model, tokenizer) = load_run(&run_dir, &device)?;
    let tokens = run_tokens(&cfg, tokenizer.as_ref())?;
    let before = Cost::of(&cfg.architecture)?;
    let (compacted, groups, kept, gap_found): (Compacted, Vec<usize>, Vec<usize>, Vec<bool>) = match p.method {
        Method::Dgating => {
            let report = prune_lm_run_on(&run_dir, &ReadOut::default(), &dir.join("compact"), false, &device)?;
            let compacted = dgating_prune::import(&dir.join("compact"))?.to_device(&device)?;
            let groups = report.groups.iter().map(|g| g.groups).collect();
            let kept = report.groups.iter().map(|g| g.groups - g.removed).collect();
            let gaps = report.groups.iter().map(|g| g.decision.is_some_and(|d| d.gap.is_some())).collect();
            (compacted, groups, kept, gaps)
        }
        Method::Dense | Method::Magnitude => {
            let norms = set_norms(&model)?;
            let masks: Vec<Vec<bool>> = match p.sparsity {
                Some(s) => norms.iter().map(|(_, n)| dgating_core::keep_largest(n, s)).collect(),
                None => norms.iter().map(|(_, n)| vec![true; n.len()]).collect(),
            };
            let groups = masks.iter().map(Vec::len).collect();
            let kept = masks.iter().map(|m| m.iter().filter(|k| **k).count()).collect();
            let gaps = vec![false; masks.len()];
            (compact(&model, &PrunePlan::from_set_masks(&model, masks)?)?, groups, kept, gaps)
        }
        m => return Err(Error::InvalidConfig(format!("`{}` does not apply to a language task", m.name()))),
    };
    let small = dense_gpt(&compacted)?;
    let score =
        |m: &Gpt, t: &Tokens| -> Result<f64> { Ok(-val_loss(m, &t.val, lm.block_size, lm.eval_windows, &device)?) };
    let metric = score(&small, &tokens)?;
    let t1 = Instant::now();
    let metric_finetuned = if lm.finetune_steps > 0 {
        let ft = LmTrainConfig {
            steps: lm.finetune_steps,
            lr: spec.finetune.lr,
            warmup: 0,
            depth: None,
            lambda: 0.0,
            eval_every: lm.finetune_steps,
            ..train_config(task, lm, p)
        };
        train_lm(&small, &ft, &tokens.train, &tokens.val, |_| Ok(true))?;
        Some(score(&small, &tokens)?)
    } else {
        None
    };
    let finetune_seconds = t1.elapsed().as_secs_f64();
    let total: usize = groups.iter().sum::<usize>();
    let removed = total - kept.iter().sum::<usize>();
    Ok(PointRecord {
        point: p.clone(),
        id: p.id(),
        groups,
        kept,
        removed_fraction: if total == 0 { 0.0 } else { removed as f64 / total as f64 },
        params: compacted.num_params()?,
        params_before: before.params,
        flops: Cost::of(compacted.architecture())?.flops_per_sample,
        flops_before: before.flops_per_sample,
        metric_name: LM_METRIC.into(),
        metric,
        metric_finetuned,
        gap_found,
        support_exact: None,
        coef_error: None,
        train_seconds,
        finetune_seconds,
    })
}

//! `dgating demo`: the project end to end on built-in data, in seconds, with no download.
//!
//! 1. The synthetic support-recovery experiment of `dgating-bench` (D = 2, 3, 4).
//! 2. The main job on `breast-cancer`: train a dense and a D-gated MLP (input features as
//!    groups), prune the gated run with the default read-out, export the compacted model,
//!    reload it from disk and check it against the gated model on the held-out split.
//!
//! Every step is a library call (`dgating_nn::train::train`, `dgating_prune::prune_run`,
//! `dgating_prune::check_export`); this file only chooses the settings and prints.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use clap::Args;
use dgating_bench::experiments::synthetic_recovery::{self, RecoveryConfig, RecoveryReport};
use dgating_core::{GateConfig, ReadOut};
use dgating_nn::train::{self, DataSpec, Mode, TrainConfig};
use dgating_prune::{ExportCheck, PruneReport, check_export, prune_run};

use crate::output::sizes;

/// Arguments of `dgating demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 2025)]
    seed: u64,
    /// Noise standard deviation of the synthetic targets.
    #[arg(long, default_value_t = 0.5)]
    noise: f64,
    /// Directory for the demo's runs and compacted model (`dense/`, `gated/`, `compact/`).
    /// Re-running replaces those three; a directory holding anything else is refused.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Print the full reports as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Training steps of the language model (fewer for quick tests).
    #[arg(long, default_value_t = crate::demo_lm::STEPS, hide = true)]
    lm_steps: usize,
}

/// The main job's settings: measured on this project's 2-core machine, ~1 s of training, and
/// a clean read-out (docs/EXPERIMENTS.md, "Read-out threshold": the collapsed features end
/// >= 1e4x below the kept ones).
const DATA: &str = "breast-cancer";
const MODEL: &str = "mlp";
const DEPTH: usize = 3;
const LAMBDA: f64 = 0.02;
const EPOCHS: usize = 200;
const BATCH: usize = 32;

/// The subdirectories the demo writes, and the only entries it replaces.
const SUBDIRS: [&str; 3] = ["dense", "gated", "compact"];

pub fn run(args: &DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    // First, so that a refused --out costs nothing.
    prepare_out(&args.out)?;
    let mut config = RecoveryConfig::default();
    config.data.seed = args.seed;
    config.data.noise_std = args.noise;
    let synthetic = synthetic_recovery::run(&config)?;
    if !args.json {
        print_synthetic(&config, &synthetic);
    }

    let (dense_dir, gated_dir, compact_dir) =
        (args.out.join(SUBDIRS[0]), args.out.join(SUBDIRS[1]), args.out.join(SUBDIRS[2]));
    let dense = train_one(Mode::Dense, 0.0, &dense_dir)?;
    train_one(Mode::Dgating, LAMBDA, &gated_dir)?;
    let report = prune_run(&gated_dir, &ReadOut::default(), &compact_dir, false)?;
    let reloaded = check_export(&gated_dir, &compact_dir)?;

    if args.json {
        let all = serde_json::json!({
            "synthetic": synthetic,
            "dense_accuracy": dense,
            "prune": report,
            "reloaded": reloaded,
            "language": crate::demo_lm::run(&args.out, args.lm_steps, true)?,
        });
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    print_main_job(dense, &report, &reloaded, &compact_dir);
    crate::demo_lm::run(&args.out, args.lm_steps, false)?;
    Ok(())
}

/// Creates `out`, or clears the demo's own subdirectories of an earlier demo. Refuses a
/// directory that holds anything else: the demo never deletes what it did not write.
fn prepare_out(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    if out.exists() {
        for entry in std::fs::read_dir(out).map_err(|e| format!("{}: {e}", out.display()))? {
            let name = entry?.file_name();
            if !SUBDIRS.iter().chain(&crate::demo_lm::SUBDIRS).any(|s| name == *s) {
                return Err(format!(
                    "{} holds `{}`, which the demo did not write; choose another --out",
                    out.display(),
                    name.to_string_lossy()
                )
                .into());
            }
        }
        for s in SUBDIRS.iter().chain(&crate::demo_lm::SUBDIRS) {
            let dir = out.join(s);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
        }
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(())
}

/// Trains the demo MLP into `dir`; returns the held-out accuracy of the last epoch.
fn train_one(mode: Mode, lambda: f64, dir: &Path) -> Result<Option<f64>, Box<dyn std::error::Error>> {
    let mut cfg = TrainConfig::new(mode, GateConfig::new(DEPTH, lambda)?);
    cfg.epochs = EPOCHS;
    cfg.batch_size = BATCH;
    let summary =
        train::train(MODEL, cfg, DataSpec::new(DATA, None), dir, &mut |_| {}, &mut |_| ControlFlow::Continue(()))?;
    Ok(summary.metrics.last().and_then(|m| m.val_accuracy))
}

fn print_synthetic(config: &RecoveryConfig, report: &RecoveryReport) {
    let d = &config.data;
    println!(
        "1. synthetic group-sparse regression: n={} samples, {} groups of {}, {} active, noise std {}, seed {}",
        d.samples, d.groups, d.group_size, d.active_groups, d.noise_std, d.seed
    );
    println!("true support: {:?}   lambda_max = {:.4}", report.true_support, report.lambda_max);
    println!(
        "{:>2}  {:>9}  {:<24} {:>6}  {:>10}  {:>10}",
        "D", "lambda", "recovered support", "exact", "coef error", "iterations"
    );
    for r in &report.rows {
        let conv = if r.converged { "" } else { " (not converged)" };
        println!(
            "{:>2}  {:>9.5}  {:<24} {:>6}  {:>10.4}  {:>10}{conv}",
            r.depth,
            r.lambda,
            format!("{:?}", r.recovered),
            if r.exact { "yes" } else { "no" },
            r.coef_rel_error,
            r.iterations
        );
    }
    println!("coef error = ||beta_hat - beta|| / ||beta||; support = groups with ||w_j|| above the threshold");
    println!();
}

fn print_main_job(dense: Option<f64>, r: &PruneReport, c: &ExportCheck, compact_dir: &Path) {
    let pct = |a: Option<f64>| a.map(|a| format!("{:.2}%", 100.0 * a)).unwrap_or_else(|| "-".into());
    let inputs = r.before.sizes.get("inputs").copied().unwrap_or(0);
    println!(
        "2. {DATA}: MLP ({}), input features as groups; {} held-out rows",
        sizes(&r.before.sizes),
        c.verification.samples
    );
    println!("dense     held-out acc {}  ({inputs} features)", pct(dense));
    println!("D-Gating  held-out acc {}  (D = {DEPTH}, lambda = {LAMBDA}, {EPOCHS} epochs)", pct(c.gated.accuracy));
    println!("read-out: {}", r.read_out);
    for g in &r.groups {
        let why = g.decision.map(|d| crate::prune::describe(&d, r.read_out.gap)).unwrap_or_default();
        println!("  {}: removed {} of {}{why}", g.dim, g.removed, g.groups);
    }
    if let Some(names) = &c.kept_input_names {
        println!("kept features: {}", names.join(", "));
    }
    let size = std::fs::metadata(compact_dir.join(dgating_prune::MODEL_FILE)).map(|m| m.len()).unwrap_or(0);
    println!(
        "compacted ({}) -> ({}): {} -> {} parameters ({:.1}%), {size} bytes of weights, exported to {}",
        sizes(&r.before.sizes),
        sizes(&c.sizes),
        r.before.params,
        c.params,
        100.0 * c.params as f64 / r.before.params as f64,
        compact_dir.display()
    );
    let v = &c.verification;
    println!(
        "reloaded from disk: outputs vs the gated model with the removed groups zeroed: max abs diff {:.2e}; \
         vs the unpruned gated model: {:.2e}",
        v.max_abs, v.unmasked_max_abs
    );
    println!("held-out acc: gated {}, compacted {}", pct(c.gated.accuracy), pct(c.compacted.accuracy));
}

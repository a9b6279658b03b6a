//! `dgating prune` and `dgating eval`: thin wrappers over `dgating-prune`.

use std::path::PathBuf;

use clap::Args;
use dgating_core::Threshold;
use dgating_prune::{PruneReport, evaluate_dir, prune_run};

/// Arguments of `dgating prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Training run directory (from `dgating train`).
    run_dir: PathBuf,
    /// Absolute group-norm threshold (default: the run's own).
    #[arg(long)]
    threshold_abs: Option<f64>,
    /// Threshold relative to the largest group norm of each layer (default: the run's own).
    #[arg(long)]
    threshold_rel: Option<f64>,
    /// Output directory of the compacted model.
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `dgating eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A training run or a compacted model directory.
    model_dir: PathBuf,
    /// Data to evaluate on (default for a run: its held-out split).
    #[arg(long)]
    data: Option<String>,
    /// Target column of a CSV file.
    #[arg(long)]
    target: Option<String>,
}

fn print_report(r: &PruneReport) {
    println!("pruned {} -> {}", r.run_dir.display(), r.out_dir.display());
    println!("threshold: absolute {:e}, relative {:e}", r.threshold.absolute_part(), r.threshold.relative_part());
    for g in &r.groups {
        println!("  layer {} ({:?} groups): removed {} of {}", g.layer, g.site, g.removed, g.groups);
    }
    println!(
        "widths {:?} -> {:?}; parameters {} -> {} ({:.1}%); FLOPs/sample {} -> {} ({:.1}%)",
        r.before.widths,
        r.after.widths,
        r.before.params,
        r.after.params,
        100.0 * r.after.params as f64 / r.before.params as f64,
        r.before.flops_per_sample,
        r.after.flops_per_sample,
        100.0 * r.after.flops_per_sample as f64 / r.before.flops_per_sample as f64
    );
    println!(
        "verification on {} held-out rows: compacted vs masked gated max abs {:.2e}, max rel {:.2e}; \
         the threshold itself changed outputs by at most {:.2e}",
        r.verification.samples, r.verification.max_abs, r.verification.max_rel, r.verification.unmasked_max_abs
    );
    let acc = |a: Option<f64>| a.map(|a| format!("{:.2}%", 100.0 * a)).unwrap_or_else(|| "-".into());
    println!(
        "held-out: gated loss {:.4} acc {}; compacted loss {:.4} acc {}",
        r.gated_eval.loss,
        acc(r.gated_eval.accuracy),
        r.compact_eval.loss,
        acc(r.compact_eval.accuracy)
    );
    let l = &r.latency;
    println!(
        "latency (batch {}, median of {}): gated {:.3} ms, dense {:.3} ms, compacted {:.3} ms ({:.2}x vs dense)",
        l.batch, l.repetitions, l.gated_ms, l.dense_ms, l.compact_ms, l.speedup
    );
}

pub fn run_prune(args: &PruneArgs) -> Result<(), Box<dyn std::error::Error>> {
    let threshold = match (args.threshold_abs, args.threshold_rel) {
        (None, None) => None,
        (a, r) => Some(Threshold::new(a.unwrap_or(0.0), r.unwrap_or(0.0))?),
    };
    let report = prune_run(&args.run_dir, threshold, &args.out)?;
    print_report(&report);
    Ok(())
}

pub fn run_eval(args: &EvalArgs) -> Result<(), Box<dyn std::error::Error>> {
    let e = evaluate_dir(&args.model_dir, args.data.as_deref(), args.target.as_deref())?;
    let acc = e.evaluation.accuracy.map(|a| format!(" accuracy {:.2}%", 100.0 * a)).unwrap_or_default();
    println!("{} on {} rows: loss {:.4}{acc}", e.kind, e.samples, e.evaluation.loss);
    Ok(())
}

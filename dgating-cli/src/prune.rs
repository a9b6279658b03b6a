//! `dgating prune` and `dgating eval`: thin wrappers over `dgating-prune`.

use std::path::PathBuf;

use clap::Args;
use dgating_core::{CutBy, Decision, GapRule, ReadOut, Threshold};
use dgating_prune::{Evaluation, PruneReport, evaluate_dir_on, prune_run_on};

use crate::device::DeviceArg;
use crate::output::{json_line, pct, sizes};

/// Arguments of `dgating prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Training run directory (from `dgating train`).
    run_dir: PathBuf,
    /// Absolute group-norm threshold. Given alone (or with --threshold-rel) it replaces the
    /// default read-out: a plain threshold, no gap rule, unset parts 0.
    #[arg(long)]
    threshold_abs: Option<f64>,
    /// Threshold relative to the largest group norm of each layer (see --threshold-abs).
    #[arg(long)]
    threshold_rel: Option<f64>,
    /// Gap factor of the gap rule (> 1): in each layer, drop every group below the highest
    /// ratio >= FACTOR between consecutive sorted norms. Default read-out: 10, over the floor
    /// 1e-3 absolute / 3e-2 relative; with --threshold-* it adds the gap rule to that floor.
    #[arg(long)]
    gap_factor: Option<f64>,
    /// Output directory of the compacted model: new or empty.
    #[arg(long)]
    out: PathBuf,
    /// Replace the model in a non-empty --out directory.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    device: DeviceArg,
    /// Print the report as one JSON object (the keys of `report.json`) instead of text.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
}

/// Arguments of `dgating eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A training run or a compacted model directory.
    model_dir: PathBuf,
    /// Data to evaluate on (built-in name, table or IDX directory; columns matched to the
    /// model's by name). Default: the held-out rows of the run the model comes from.
    #[arg(long)]
    data: Option<String>,
    /// Target column of a table (default: the one the model was trained on).
    #[arg(long)]
    target: Option<String>,
    /// Print the scores as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
}

fn print_report(r: &PruneReport) {
    println!("pruned {} -> {}", r.run_dir.display(), r.out_dir.display());
    println!("read-out: {}", r.read_out);
    for g in &r.groups {
        let why = g.decision.map(|d| describe(&d, r.read_out.gap)).unwrap_or_default();
        println!("  {}: removed {} of {} groups{why}", g.dim, g.removed, g.groups);
    }
    if let Some(names) = &r.kept_input_names {
        if r.after.sizes.get("inputs") == r.before.sizes.get("inputs") && names.len() > 50 {
            println!("kept features: all {}", names.len());
        } else {
            println!("kept features ({}): {}", names.len(), names.join(", "));
        }
    }
    println!(
        "sizes [{}] -> [{}]; parameters {} -> {} ({:.1}%); FLOPs/sample {} -> {} ({:.1}%)",
        sizes(&r.before.sizes),
        sizes(&r.after.sizes),
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
    println!("held-out: gated {}; compacted {}", scores(&r.gated_eval), scores(&r.compact_eval));
    let l = &r.latency;
    println!(
        "latency (batch {}, median of {}): gated {:.3} ms, dense {:.3} ms, compacted {:.3} ms ({:.2}x vs dense)",
        l.batch, l.repetitions, l.gated_ms, l.dense_ms, l.compact_ms, l.speedup
    );
}

/// `loss 0.1234 (cross-entropy), accuracy 95.00%` or `loss ... (1/2 MSE), RMSE .., MAE .., R2 ..`.
pub(crate) fn scores(e: &Evaluation) -> String {
    match e.accuracy {
        Some(a) => format!("loss {:.4} (cross-entropy), accuracy {}", e.loss, pct(Some(a))),
        None => {
            let f = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
            format!("loss {:.4} (1/2 MSE), RMSE {}, MAE {}, R2 {}", e.loss, f(e.rmse), f(e.mae), f(e.r2))
        }
    }
}

/// `; cut 3.60e-2 (floor); largest gap 1.6x (1.35e0 -> 2.16e0), none >= 10x`.
pub(crate) fn describe(d: &Decision, rule: Option<GapRule>) -> String {
    let by = match (d.by, rule) {
        (CutBy::Floor, None) => "threshold",
        (CutBy::Floor, Some(_)) => "floor",
        (CutBy::Gap, _) => "gap",
    };
    let gap = |g: &dgating_core::Gap| {
        let r = g.ratio();
        let r = if r < 1e3 { format!("{r:.1}") } else { format!("{r:.1e}") };
        format!("{r}x ({:.2e} -> {:.2e})", g.lower, g.upper)
    };
    let seen = match (rule, d.gap, d.largest_gap) {
        (Some(_), Some(g), _) => format!("gap {}", gap(&g)),
        (Some(r), None, Some(l)) => format!("largest gap {}, none >= {}x", gap(&l), r.factor()),
        (None, _, Some(l)) => format!("largest gap {}", gap(&l)),
        (_, _, None) => "no gap (fewer than 2 non-zero norms)".into(),
    };
    format!("; cut {:.2e} ({by}); {seen}", d.cutoff)
}

/// The read-out the flags ask for: the default, or a threshold floor with or without the gap
/// rule.
fn read_out(args: &PruneArgs) -> Result<ReadOut, Box<dyn std::error::Error>> {
    read_out_from(args.threshold_abs, args.threshold_rel, args.gap_factor)
}

/// The read-out of `--threshold-abs`, `--threshold-rel` and `--gap-factor`.
pub(crate) fn read_out_from(
    abs: Option<f64>,
    rel: Option<f64>,
    gap_factor: Option<f64>,
) -> Result<ReadOut, Box<dyn std::error::Error>> {
    let gap = gap_factor.map(GapRule::new).transpose()?;
    Ok(match (abs, rel) {
        (None, None) => ReadOut::new(ReadOut::default_floor(), Some(gap.unwrap_or_default())),
        (a, r) => ReadOut::new(Threshold::new(a.unwrap_or(0.0), r.unwrap_or(0.0))?, gap),
    })
}

pub fn run_prune(args: &PruneArgs) -> Result<(), Box<dyn std::error::Error>> {
    let report = prune_run_on(&args.run_dir, &read_out(args)?, &args.out, args.force, &args.device.device()?)?;
    if args.json {
        json_line(&serde_json::to_value(&report)?);
    } else if !args.quiet {
        print_report(&report);
    }
    Ok(())
}

pub fn run_eval(args: &EvalArgs) -> Result<(), Box<dyn std::error::Error>> {
    let e = evaluate_dir_on(&args.model_dir, args.data.as_deref(), args.target.as_deref(), &args.device.device()?)?;
    if args.json {
        json_line(&serde_json::to_value(&e)?);
    } else {
        println!("{} on {} rows of {}: {}", e.kind, e.samples, e.data, scores(&e.evaluation));
    }
    Ok(())
}

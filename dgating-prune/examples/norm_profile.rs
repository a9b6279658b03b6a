//! Per-gate-set profile of the effective group norms `||ω_j ⊙ Πγ_j||` of trained runs: the data
//! behind the default read-out (docs/EXPERIMENTS.md, "Read-out threshold").
//!
//! ```sh
//! cargo run --release -p dgating-prune --example norm_profile -- RUN_DIR... [--markdown] [--sorted] [--sweep]
//! ```
//!
//! For each gate set (named by its dim): groups, exact zeros, the largest norm, the *largest* ratio between
//! consecutive sorted positive norms (`k` = groups below it, the norms either side), the
//! *highest* ratio of at least `GapRule::DEFAULT_FACTOR` (what the gap rule cuts at), how many
//! groups sit in `[1e-3, 1e-1]`, what `ReadOut::default()` removes and which part decided, and
//! a histogram of `log10 ||w_j||` per decade `[1e-6, 1e1)` (the ends collect the rest).
//! `--markdown` prints the table rows of docs/EXPERIMENTS.md instead, `--sorted` every sorted
//! norm, and `--sweep` what removing every group with `||w_j|| <= r · max_k ||w_k||` costs on
//! the run's held-out split for a grid of `r`: `max |Δy| / max |y|` against the unmasked
//! gated model, and the accuracy.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use dgating_core::{CutBy, Gap, GapRule, ReadOut, Threshold, largest_gap};
use dgating_nn::Model;
use dgating_nn::train::engine::{TensorData, evaluate};
use dgating_prune::{PrunePlan, compact, set_norms};

/// Relative cut-offs of `--sweep`.
const SWEEP: &[f64] = &[1e-3, 3e-3, 1e-2, 2e-2, 3e-2, 5e-2, 1e-1, 2e-1, 3e-1];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut markdown, mut sorted, mut sweep) = (false, false, false);
    let mut dirs = vec![];
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--markdown" => markdown = true,
            "--sorted" => sorted = true,
            "--sweep" => sweep = true,
            _ => dirs.push(PathBuf::from(a)),
        }
    }
    if dirs.is_empty() {
        return Err("usage: norm_profile RUN_DIR... [--markdown] [--sorted] [--sweep]".into());
    }
    if markdown {
        println!(
            "| run | layer | groups | max norm | largest ratio (k below: lower → upper) | highest ratio ≥ 10× | \
             in [1e-3, 1e-1] | default read-out removes |"
        );
        println!("|---|---|---|---|---|---|---|---|");
    }
    for dir in &dirs {
        let (cfg, model) = dgating_nn::train::run::load_run_model(dir)?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for (dim, norms) in set_norms(&model)? {
            profile(&name, &dim, &norms, markdown, sorted);
        }
        if sweep {
            sweep_run(&name, &cfg.data.prepare(cfg.train.seed)?.1, &model)?;
        }
    }
    Ok(())
}

fn fmt_gap(g: Option<Gap>) -> String {
    g.map(|g| {
        let r = g.ratio();
        let r = if r < 1e3 { format!("{r:.1}×") } else { format!("{r:.0e}×") };
        format!("{r} ({}: {:.2e} → {:.2e})", g.below, g.lower, g.upper)
    })
    .unwrap_or_else(|| "—".into())
}

fn profile(name: &str, layer: &str, norms: &[f64], markdown: bool, sorted: bool) {
    let zeros = norms.iter().filter(|&&n| n == 0.0).count();
    let max = norms.iter().copied().fold(0.0, f64::max);
    let mid = norms.iter().filter(|&&n| (1e-3..=1e-1).contains(&n)).count();
    let d = ReadOut::default().decide(norms);
    let removed = norms.len() - d.keep_mask(norms).iter().filter(|&&k| k).count();
    let by = if d.by == CutBy::Gap { "gap" } else { "floor" };
    let (largest, highest) = (fmt_gap(largest_gap(norms)), fmt_gap(GapRule::default().find(norms)));
    if markdown {
        let zeros = if zeros > 0 { format!(" ({zeros} exact zeros)") } else { String::new() };
        println!(
            "| {name} | {layer} | {}{zeros} | {max:.2e} | {largest} | {highest} | {mid} | {removed} ({by}) |",
            norms.len()
        );
    } else {
        let mut hist = [0usize; 7];
        for &n in norms.iter().filter(|&&n| n > 0.0) {
            hist[(n.log10().floor() as i64 + 6).clamp(0, 6) as usize] += 1;
        }
        println!(
            "{name} {layer}: {} groups, {zeros} zeros, max {max:.2e}; largest ratio {largest}; \
             highest >= 10x {highest}; {mid} in [1e-3, 1e-1]; default read-out removes {removed} ({by}); \
             decades 1e-6..1e1 {hist:?}",
            norms.len()
        );
    }
    if sorted {
        let mut s: Vec<f64> = norms.to_vec();
        s.sort_by(f64::total_cmp);
        println!("  sorted: {}", s.iter().map(|n| format!("{n:.2e}")).collect::<Vec<_>>().join(" "));
    }
}

/// What removing the groups below `r · max` of each layer does on the held-out split.
fn sweep_run(
    name: &str,
    test: &dgating_nn::data::Dataset,
    model: &dyn Model,
) -> Result<(), Box<dyn std::error::Error>> {
    let x = Tensor::from_slice(&test.features, (test.len(), test.num_features), &Device::Cpu)?;
    let data = TensorData::new(test, DType::F32, &Device::Cpu)?;
    let y = model.forward(&x)?.to_dtype(DType::F64)?;
    let scale = y.abs()?.max_all()?.to_scalar::<f64>()?.max(f64::MIN_POSITIVE);
    let (_, acc) = evaluate(model, &data)?;
    let pct = |a: Option<f64>| a.map(|a| format!("{:.2}%", 100.0 * a)).unwrap_or_else(|| "-".into());
    println!("  sweep {name}: {} held-out rows, gated acc {}, max |y| {scale:.3}", test.len(), pct(acc));
    for &r in SWEEP {
        let plan = match PrunePlan::new(model, &Threshold::relative(r)?) {
            Ok(p) => p,
            Err(e) => {
                println!("    rel {r:>6.0e}: {e}");
                break;
            }
        };
        let small = compact(model, &plan)?;
        let dy = (small.forward_full(&x)?.to_dtype(DType::F64)? - &y)?.abs()?.max_all()?.to_scalar::<f64>()?;
        let (_, acc_s) = evaluate(&small.model, &data.select_features(&small.config.kept_input_indices())?)?;
        let removed: Vec<usize> = plan.dims.iter().filter(|d| d.grouped).map(|d| d.removed()).collect();
        println!(
            "    rel {r:>6.0e}: removed {removed:?} sizes {:?}  max|dy|/max|y| {:.2e}  acc {}",
            plan.sizes_after(),
            dy / scale,
            pct(acc_s)
        );
    }
    Ok(())
}

//! The sweep's report: every record merged (whatever shards wrote), means and spreads over
//! seeds, the Pareto front per method, a plain-words verdict per task, CSV / JSON lines,
//! plots and a markdown page.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sweep::plot;
use crate::sweep::record::{CSV_HEADER, FailedPoint, PointRecord};
use crate::sweep::spec::{Method, PRESETS, SweepSpec};

/// Directory of the per-point records inside a sweep directory.
pub const RECORDS_DIR: &str = "records";
/// Directory of the report inside a sweep directory.
pub const REPORT_DIR: &str = "report";
/// The spec a sweep directory was started with.
pub const SPEC_FILE: &str = "spec.toml";

/// Mean and standard deviation over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 with one seed).
    pub std: f64,
}

impl Spread {
    fn of(v: &[f64]) -> Self {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
        Self { mean, std: var.sqrt() }
    }
}

/// A setting (a point without its seed) over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// Task.
    pub task: String,
    /// Method.
    pub method: Method,
    /// The setting's id.
    pub setting: String,
    /// Seeds measured.
    pub seeds: usize,
    /// Fraction of groups kept.
    pub kept_fraction: Spread,
    /// Parameters of the compacted model.
    pub params: Spread,
    /// FLOPs per sample of the compacted model.
    pub flops: Spread,
    /// Held-out metric without fine-tuning.
    pub metric: Spread,
    /// Held-out metric after fine-tuning.
    pub metric_finetuned: Option<Spread>,
    /// Seeds where every gate set's read-out found a gap.
    pub gap_seeds: usize,
    /// Metric name.
    pub metric_name: String,
}

/// Reads every record of `dir/records` (shards write there); an unreadable record is an error
/// naming it.
pub fn load_records(dir: &Path) -> Result<Vec<PointRecord>> {
    let rdir = dir.join(RECORDS_DIR);
    let mut out = vec![];
    let entries = std::fs::read_dir(&rdir).map_err(|e| Error::io(&rdir, e))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.to_string_lossy().ends_with(".failed.json"))
    {
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let r: PointRecord = serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidConfig(format!("{}: not a point record: {e}", path.display())))?;
        out.push(r);
    }
    Ok(out)
}

/// The failed points of `dir/records`.
pub fn load_failures(dir: &Path) -> Result<Vec<FailedPoint>> {
    let rdir = dir.join(RECORDS_DIR);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&rdir)
        .map_err(|e| Error::io(&rdir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".failed.json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            serde_json::from_slice(&bytes)
                .map_err(|e| Error::InvalidConfig(format!("{}: not a failed-point record: {e}", path.display())))
        })
        .collect()
}

/// Means and spreads per setting, in a stable order.
pub fn settings(records: &[PointRecord]) -> Vec<Setting> {
    let mut groups: BTreeMap<(String, Method, String), Vec<&PointRecord>> = BTreeMap::new();
    for r in records {
        groups.entry((r.point.task.clone(), r.point.method, r.point.setting())).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((task, method, setting), rs)| {
            let f = |g: &dyn Fn(&PointRecord) -> f64| Spread::of(&rs.iter().map(|r| g(r)).collect::<Vec<_>>());
            let ft: Vec<f64> = rs.iter().filter_map(|r| r.metric_finetuned).collect();
            Setting {
                task,
                method,
                setting,
                seeds: rs.len(),
                kept_fraction: f(&|r| 1.0 - r.removed_fraction),
                params: f(&|r| r.params as f64),
                flops: f(&|r| r.flops as f64),
                metric: f(&|r| r.metric),
                metric_finetuned: (ft.len() == rs.len()).then(|| Spread::of(&ft)),
                gap_seeds: rs.iter().filter(|r| !r.gap_found.is_empty() && r.gap_found.iter().all(|g| *g)).count(),
                metric_name: rs[0].metric_name.clone(),
            }
        })
        .collect()
}

/// The settings of one task and method that no other setting of it beats in both kept
/// fraction (lower) and metric (higher), by kept fraction.
pub fn pareto<'a>(settings: &[&'a Setting], finetuned: bool) -> Vec<&'a Setting> {
    let y = |s: &Setting| if finetuned { s.metric_finetuned.map_or(f64::NAN, |m| m.mean) } else { s.metric.mean };
    let mut front: Vec<&Setting> = settings
        .iter()
        .copied()
        .filter(|s| y(s).is_finite())
        .filter(|s| {
            !settings.iter().any(|o| {
                o.kept_fraction.mean <= s.kept_fraction.mean
                    && y(o) >= y(s)
                    && (o.kept_fraction.mean < s.kept_fraction.mean || y(o) > y(s))
            })
        })
        .collect();
    front.sort_by(|a, b| a.kept_fraction.mean.total_cmp(&b.kept_fraction.mean));
    front
}

/// One line of the verdict: at a sparsity level, D-Gating against the best baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Task.
    pub task: String,
    /// `no fine-tuning` or `fine-tuned`.
    pub budget: String,
    /// At least this fraction of groups removed.
    pub removed_at_least: f64,
    /// `wins`, `ties`, `loses`, or why there is no comparison.
    pub outcome: String,
    /// D-Gating's best mean metric there and its spread.
    pub dgating: Option<Spread>,
    /// The best baseline there (method and its spread).
    pub baseline: Option<(Method, Spread)>,
}

/// Compares D-Gating with the best of direct, prox, magnitude, l1-filter and slimming (those
/// the sweep ran) at removal levels 25%, 50%, 75% and 90%: the best mean metric among each
/// method's settings that remove at least that fraction. D-Gating wins (loses) if its mean is
/// above (below) the baseline's by more than the larger of the two seed spreads, and ties
/// otherwise.
pub fn verdicts(settings: &[Setting]) -> Vec<Verdict> {
    let mut out = vec![];
    let tasks: Vec<String> =
        settings.iter().map(|s| s.task.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    for task in tasks {
        for finetuned in [false, true] {
            for level in [0.25, 0.5, 0.75, 0.9] {
                let best = |m: Method| -> Option<Spread> {
                    settings
                        .iter()
                        .filter(|s| s.task == task && s.method == m && 1.0 - s.kept_fraction.mean >= level - 1e-9)
                        .filter_map(|s| if finetuned { s.metric_finetuned } else { Some(s.metric) })
                        .max_by(|a, b| a.mean.total_cmp(&b.mean))
                };
                let dg = best(Method::Dgating);
                let base = [Method::Direct, Method::Prox, Method::Magnitude, Method::L1Filter, Method::Slimming]
                    .into_iter()
                    .filter_map(|m| best(m).map(|s| (m, s)))
                    .max_by(|a, b| a.1.mean.total_cmp(&b.1.mean));
                let outcome = match (dg, base) {
                    (None, _) => "no D-Gating setting removes this much".to_string(),
                    (Some(_), None) => "no baseline setting removes this much".to_string(),
                    (Some(d), Some((_, b))) => {
                        let margin = d.std.max(b.std);
                        if d.mean - b.mean > margin {
                            "wins".into()
                        } else if b.mean - d.mean > margin {
                            "loses".into()
                        } else {
                            "ties".into()
                        }
                    }
                };
                out.push(Verdict {
                    task: task.clone(),
                    budget: if finetuned { "fine-tuned" } else { "no fine-tuning" }.into(),
                    removed_at_least: level,
                    outcome,
                    dgating: dg,
                    baseline: base,
                });
            }
        }
    }
    out
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    /// The markdown report.
    pub markdown: PathBuf,
    /// Every plot (SVG and PNG).
    pub plots: Vec<PathBuf>,
    /// Points merged.
    pub points: usize,
    /// Points the spec has (when the directory has its spec).
    pub expected: Option<usize>,
}

/// Merges the records in `dir` and writes `dir/report/`: `points.csv`, `points.jsonl`,
/// `settings.csv`, `pareto.csv`, `verdicts.json`, plots and `report.md`.
pub fn write_report(dir: &Path) -> Result<ReportFiles> {
    let records = load_records(dir)?;
    let failures = load_failures(dir)?;
    if records.is_empty() {
        return Err(Error::InvalidConfig(format!("{}: no finished points to report", dir.display())));
    }
    let spec = std::fs::read_to_string(dir.join(SPEC_FILE)).ok().and_then(|t| SweepSpec::from_toml(&t).ok());
    let expected = spec.as_ref().and_then(|s| crate::sweep::point::points(s).ok()).map(|p| p.len());
    let out = dir.join(REPORT_DIR);
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let write = |name: &str, text: &str| -> Result<()> {
        let path = out.join(name);
        dgating_nn::train::checkpoint::atomic_write(&path, text.as_bytes()).map_err(Error::from)
    };
    let mut csv = format!("{CSV_HEADER}\n");
    let mut jsonl = String::new();
    for r in &records {
        csv.push_str(&r.csv_row());
        csv.push('\n');
        jsonl.push_str(&serde_json::to_string(r).map_err(|e| Error::InvalidConfig(e.to_string()))?);
        jsonl.push('\n');
    }
    write("points.csv", &csv)?;
    write("points.jsonl", &jsonl)?;
    let settings = settings(&records);
    let mut scsv = String::from(
        "task,method,setting,seeds,kept_fraction,kept_fraction_std,params,flops,metric,metric_std,metric_finetuned,metric_finetuned_std,gap_seeds,pareto,pareto_finetuned\n",
    );
    let mut fronts: BTreeMap<(String, Method), (Vec<String>, Vec<String>)> = BTreeMap::new();
    for s in &settings {
        let same: Vec<&Setting> = settings.iter().filter(|o| o.task == s.task && o.method == s.method).collect();
        let e = fronts.entry((s.task.clone(), s.method)).or_insert_with(|| {
            (
                pareto(&same, false).iter().map(|p| p.setting.clone()).collect(),
                pareto(&same, true).iter().map(|p| p.setting.clone()).collect(),
            )
        });
        let (on, on_ft) = (e.0.contains(&s.setting), e.1.contains(&s.setting));
        let ft = s.metric_finetuned.map(|m| (format!("{:.6}", m.mean), format!("{:.6}", m.std))).unwrap_or_default();
        writeln!(
            scsv,
            "{},{},{},{},{:.6},{:.6},{:.0},{:.0},{:.6},{:.6},{},{},{},{},{}",
            s.task,
            s.method.name(),
            s.setting,
            s.seeds,
            s.kept_fraction.mean,
            s.kept_fraction.std,
            s.params.mean,
            s.flops.mean,
            s.metric.mean,
            s.metric.std,
            ft.0,
            ft.1,
            s.gap_seeds,
            on,
            on_ft
        )
        .ok();
    }
    write("settings.csv", &scsv)?;
    let mut pcsv = String::from("task,method,budget,setting,kept_fraction,metric\n");
    for ((task, method), (front, front_ft)) in &fronts {
        for (budget, ids) in [("none", front), ("finetuned", front_ft)] {
            for id in ids {
                let s = settings.iter().find(|s| &s.setting == id).expect("front entries are settings");
                let m = if budget == "none" { Some(s.metric.mean) } else { s.metric_finetuned.map(|m| m.mean) };
                writeln!(
                    pcsv,
                    "{task},{},{budget},{id},{:.6},{:.6}",
                    method.name(),
                    s.kept_fraction.mean,
                    m.unwrap_or(f64::NAN)
                )
                .ok();
            }
        }
    }
    write("pareto.csv", &pcsv)?;
    let verdicts = verdicts(&settings);
    write("verdicts.json", &serde_json::to_string_pretty(&verdicts).map_err(|e| Error::InvalidConfig(e.to_string()))?)?;
    let plots = plot::plot_all(&settings, &out)?;
    let mut md = markdown(dir, spec.as_ref(), &records, &settings, &verdicts, &plots, expected);
    if !failures.is_empty() {
        writeln!(md, "\n## Points without a model\n").ok();
        writeln!(md, "{} points ended without a model to score and are not in the averages (a method that removes every group of a layer at that λ, or a diverged run):\n", failures.len()).ok();
        writeln!(md, "| point | what happened |\n|---|---|").ok();
        for f in &failures {
            writeln!(md, "| {} | {} |", f.id, f.error.replace('|', "/")).ok();
        }
    }
    write("report.md", &md)?;
    Ok(ReportFiles { markdown: out.join("report.md"), plots, points: records.len() + failures.len(), expected })
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cpu}, {cores} cores available")
}

fn markdown(
    dir: &Path,
    spec: Option<&SweepSpec>,
    records: &[PointRecord],
    settings: &[Setting],
    verdicts: &[Verdict],
    plots: &[PathBuf],
    expected: Option<usize>,
) -> String {
    let mut md = String::new();
    let name = spec.map(|s| s.name.as_str()).unwrap_or("sweep");
    writeln!(md, "# Sweep `{name}`\n").ok();
    let done = match expected {
        Some(e) => format!("{} of {e} points", records.len()),
        None => format!("{} points", records.len()),
    };
    writeln!(md, "{done}; machine: {}.\n", machine()).ok();
    writeln!(
        md,
        "Regenerate: `dgating sweep {} --out {}` (skips finished points), then `dgating sweep report {}`.\n",
        // A preset's name regenerates it; any other spec is the copy the sweep keeps.
        spec.map(|s| if PRESETS.contains(&s.name.as_str()) {
            format!("--preset {}", s.name)
        } else {
            dir.join(SPEC_FILE).display().to_string()
        })
        .unwrap_or_else(|| "SPEC.toml".into()),
        dir.display(),
        dir.display()
    )
    .ok();
    if let Some(s) = spec {
        writeln!(md, "## Budgets\n").ok();
        writeln!(md, "Every method trains with the same epochs, batch size and learning rate per task (SGD momentum 0.9, cosine schedule, 5% warm-up); magnitude and L1-filter pruning train dense with that budget and remove the smallest groups (by group norm; by filter L1 norm per layer), network slimming trains with its L1 penalty on batch-norm scales and removes the smallest scales globally. Each point is pruned with the default read-out (gap rule over the 1e-3 absolute / 3e-2 relative floor), compacted and scored on held-out data; then every compacted model is fine-tuned for {} epochs at learning rate {} (no penalty) and scored again.\n", s.finetune.epochs, s.finetune.lr).ok();
        writeln!(md, "| task | data | model | epochs | batch | lr | λ grid | depths | seeds |\n|---|---|---|---|---|---|---|---|---|").ok();
        for t in &s.tasks {
            let l = t
                .lambdas
                .values()
                .map(|v| v.iter().map(|x| format!("{x:.3e}")).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            let (model, budget) = match &t.lm {
                Some(lm) => (
                    format!("gpt {}×{}, n_embd {}, context {}", lm.n_layer, lm.n_head, lm.n_embd, lm.block_size),
                    format!("{} steps", lm.steps),
                ),
                None => (t.model.clone(), t.epochs.to_string()),
            };
            writeln!(
                md,
                "| {} | {} | {model} | {budget} | {} | {} | {l} | {:?} | {:?} |",
                t.name, t.data, t.batch_size, t.lr, s.depths, s.seeds
            )
            .ok();
        }
        writeln!(md).ok();
        for t in s.tasks.iter().filter(|t| t.lm.is_some()) {
            let lm = t.lm.as_ref().expect("filtered");
            writeln!(md, "Language task `{}`: a character-level GPT on `{}` (the last 10% held out), {} steps of {} sequences, Adam at lr {} (cosine, 5% warm-up); D-Gating trains with the collapse recipe of `dgating lm train` (gates by SGD + momentum at a constant rate 0.1, balanced initialization) with {} gated, magnitude removes each block's smallest groups of the dense model. The metric `neg_val_loss` is minus the mean next-token NLL (nats/token) on the first {} held-out windows; every compacted model is fine-tuned for {} steps at lr {} (Adam, no penalty) instead of the epochs above.\n", t.name, t.data, lm.steps, t.batch_size, t.lr, match lm.groups { crate::sweep::spec::LmGroups::Heads => "only the heads", crate::sweep::spec::LmGroups::All => "heads and MLP neurons" }, lm.eval_windows, lm.finetune_steps, s.finetune.lr).ok();
        }
    }
    writeln!(md, "## Verdict\n").ok();
    writeln!(md, "D-Gating against the best of the baselines the sweep ran (direct, prox, magnitude, l1-filter, slimming) at each removal level: the best mean held-out metric among the settings that remove at least that share of groups; a win or loss needs a difference larger than the seed spread (sample std).\n").ok();
    let tasks: std::collections::BTreeSet<&str> = verdicts.iter().map(|v| v.task.as_str()).collect();
    for task in tasks {
        writeln!(md, "### {task}\n").ok();
        writeln!(md, "| budget | removed ≥ | outcome | D-Gating | best baseline |\n|---|---|---|---|---|").ok();
        for v in verdicts.iter().filter(|v| v.task == task) {
            let d = v.dgating.map(|s| format!("{:.4} ± {:.4}", s.mean, s.std)).unwrap_or_else(|| "-".into());
            let b = v
                .baseline
                .map(|(m, s)| format!("{} {:.4} ± {:.4}", m.name(), s.mean, s.std))
                .unwrap_or_else(|| "-".into());
            writeln!(md, "| {} | {} | {} | {d} | {b} |", v.budget, pct(v.removed_at_least), v.outcome).ok();
        }
        let wins = verdicts.iter().filter(|v| v.task == task && v.outcome == "wins").count();
        let losses = verdicts.iter().filter(|v| v.task == task && v.outcome == "loses").count();
        let ties = verdicts.iter().filter(|v| v.task == task && v.outcome == "ties").count();
        writeln!(
            md,
            "\nIn words: D-Gating wins {wins}, ties {ties} and loses {losses} of the comparisons on {task}.\n"
        )
        .ok();
        for p in plots.iter().filter(|p| {
            p.extension().is_some_and(|e| e == "png")
                && p.file_name().is_some_and(|f| f.to_string_lossy().starts_with(&format!("{task}-")))
        }) {
            let f = p.file_name().unwrap_or_default().to_string_lossy();
            writeln!(md, "![{f}]({f})\n").ok();
        }
    }
    writeln!(md, "## Settings\n").ok();
    writeln!(md, "| task | setting | seeds | kept groups | params | metric | fine-tuned | gap |\n|---|---|---|---|---|---|---|---|").ok();
    for s in settings {
        let ft = s.metric_finetuned.map(|m| format!("{:.4} ± {:.4}", m.mean, m.std)).unwrap_or_else(|| "-".into());
        writeln!(
            md,
            "| {} | {} | {} | {} ± {} | {:.0} | {:.4} ± {:.4} | {ft} | {}/{} |",
            s.task,
            s.setting,
            s.seeds,
            pct(s.kept_fraction.mean),
            pct(s.kept_fraction.std),
            s.params.mean,
            s.metric.mean,
            s.metric.std,
            s.gap_seeds,
            s.seeds
        )
        .ok();
    }
    md
}

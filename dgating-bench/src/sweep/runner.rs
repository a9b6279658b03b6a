//! Running a sweep: every point of the grid (or of one shard) trained, pruned with the default
//! read-out, compacted, scored on held-out data, fine-tuned with the common budget and scored
//! again. Finished points (a record exists) are skipped, so a killed sweep continues where it
//! stopped; a point interrupted half-way is rerun from scratch (runs are deterministic per
//! seed, so the result is the same).
//!
//! One call runs its points one after another; concurrency comes from several shard processes
//! ([`crate::sweep::jobs`] on one machine, a scheduler's array job across machines).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use dgating_core::{GateConfig, ReadOut};
use dgating_nn::Network;
use dgating_nn::data::Dataset;
use dgating_nn::optim::{Schedule, Warmup};
use dgating_nn::train::engine::{TensorData, Trainer, score};
use dgating_nn::train::run::{RunConfig, load_run_model_on};
use dgating_nn::train::{self, DataSpec, Mode, Scores, TrainConfig};
use dgating_prune::{Compacted, PrunePlan, compact, prune_run_on, set_norms};

use crate::error::{Error, Result};
use crate::sweep::point::{Point, Shard, points};
use crate::sweep::record::{FailedPoint, PointRecord};
use crate::sweep::report::{RECORDS_DIR, SPEC_FILE};
use crate::sweep::spec::{Method, SweepSpec, TaskSpec};

/// Directory of the per-point runs inside a sweep directory.
pub const POINTS_DIR: &str = "points";

/// What the runner reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum SweepProgress {
    /// A point was skipped: its record exists.
    Skipped(String),
    /// A point ended without a model to score (recorded as failed).
    Failed {
        /// 1-based position among this shard's points.
        position: usize,
        /// This shard's points.
        of: usize,
        /// What happened.
        failure: Box<FailedPoint>,
    },
    /// A point finished.
    Done {
        /// 1-based position among this shard's points.
        position: usize,
        /// This shard's points.
        of: usize,
        /// The record.
        record: Box<PointRecord>,
    },
}

/// Runs the points of `spec` that belong to `shard` (all without one) into `dir`, skipping
/// finished ones. `dir/spec.toml` records the spec; a directory started with another spec is
/// refused, so shards on several machines cannot mix grids.
pub fn run_sweep(
    spec: &SweepSpec,
    dir: &Path,
    shard: Option<Shard>,
    progress: &mut dyn FnMut(&SweepProgress),
) -> Result<Vec<PointRecord>> {
    let all = points(spec)?;
    std::fs::create_dir_all(dir.join(RECORDS_DIR)).map_err(|e| Error::io(dir, e))?;
    let spec_path = dir.join(SPEC_FILE);
    let toml = spec.to_toml()?;
    match std::fs::read_to_string(&spec_path) {
        Ok(existing) => {
            if SweepSpec::from_toml(&existing)? != *spec {
                return Err(Error::InvalidConfig(format!(
                    "{} holds a sweep with another spec ({}); use another --out",
                    dir.display(),
                    spec_path.display()
                )));
            }
        }
        Err(_) => dgating_nn::train::checkpoint::atomic_write(&spec_path, toml.as_bytes())?,
    }
    let mine: Vec<&Point> =
        all.iter().enumerate().filter(|(i, _)| shard.is_none_or(|s| s.owns(*i))).map(|(_, p)| p).collect();
    let mut out = vec![];
    for (i, p) in mine.iter().enumerate() {
        let id = p.id();
        let record_path = dir.join(RECORDS_DIR).join(format!("{id}.json"));
        let failed_path = dir.join(RECORDS_DIR).join(format!("{id}.failed.json"));
        if record_path.exists() || failed_path.exists() {
            progress(&SweepProgress::Skipped(id));
            continue;
        }
        let task = spec.tasks.iter().find(|t| t.name == p.task).expect("points come from the spec's tasks");
        let record = match run_point(spec, task, p, &dir.join(POINTS_DIR).join(&id)) {
            Ok(r) => r,
            Err(e) if outcome_of_training(&e) => {
                let failure = FailedPoint { point: (*p).clone(), id: id.clone(), error: e.to_string() };
                let json = serde_json::to_vec_pretty(&failure).map_err(|e| Error::InvalidConfig(e.to_string()))?;
                dgating_nn::train::checkpoint::atomic_write(&failed_path, &json)?;
                progress(&SweepProgress::Failed { position: i + 1, of: mine.len(), failure: Box::new(failure) });
                continue;
            }
            Err(e) => return Err(e),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        dgating_nn::train::checkpoint::atomic_write(&record_path, &json)?;
        progress(&SweepProgress::Done { position: i + 1, of: mine.len(), record: Box::new(record.clone()) });
        out.push(record);
    }
    Ok(out)
}

/// Errors that are a result of the point (the method collapsed every group of a layer, or
/// training diverged), not a fault of the sweep: recorded, and the sweep goes on.
fn outcome_of_training(e: &Error) -> bool {
    matches!(
        e,
        Error::Prune(dgating_prune::Error::EmptyDim { .. })
            | Error::Nn(dgating_nn::Error::NonFinite { .. })
            | Error::Prune(dgating_prune::Error::Nn(dgating_nn::Error::NonFinite { .. }))
    )
}

fn train_config(spec: &SweepSpec, task: &TaskSpec, p: &Point) -> Result<TrainConfig> {
    // Magnitude and L1-filter pruning train dense with the same budget, slimming trains with
    // its penalty for that budget; the sweep removes the groups and fine-tunes like every point.
    let mode = match p.method {
        Method::Magnitude | Method::L1Filter => Mode::Dense,
        m => m,
    };
    let gate = GateConfig::new(p.depth.unwrap_or(2), p.lambda.unwrap_or(0.0))?;
    let mut cfg = TrainConfig::new(mode, gate);
    cfg.finetune_epochs = 0;
    cfg.epochs = task.epochs;
    cfg.batch_size = task.batch_size;
    cfg.lr = task.lr;
    cfg.seed = p.seed;
    cfg.warmup = Some(Warmup::Fraction(0.05));
    cfg.device = spec.device;
    Ok(cfg)
}

/// Trains, prunes, scores and fine-tunes one point in `dir` (replaced if it exists).
pub fn run_point(spec: &SweepSpec, task: &TaskSpec, p: &Point, dir: &Path) -> Result<PointRecord> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    if let Some(lm) = &task.lm {
        return crate::sweep::lm_point::run_lm_point(spec, task, lm, p, dir);
    }
    let run_dir = dir.join("run");
    let t0 = Instant::now();
    let data = DataSpec::new(task.data.clone(), task.target.clone());
    train::train(&task.model, train_config(spec, task, p)?, data, &run_dir, &mut |_| {}, &mut |_| {
        ControlFlow::Continue(())
    })?;
    let train_seconds = t0.elapsed().as_secs_f64();
    let device = spec.device.device()?;
    let (cfg, model) = load_run_model_on(&run_dir, &device)?;
    let prepared = cfg.load_data()?;
    let (compacted, groups, kept, gap_found, before) = match p.method {
        Method::Magnitude | Method::L1Filter | Method::Slimming => {
            let sparsity = p.sparsity.unwrap_or(0.0);
            let masks = match p.method {
                Method::Magnitude => {
                    set_norms(&model)?.iter().map(|(_, n)| dgating_core::keep_largest(n, sparsity)).collect()
                }
                Method::L1Filter => dgating_nn::train::baselines::l1_filter_masks(&model, sparsity)?,
                _ => dgating_nn::train::baselines::slimming_masks(&model, sparsity)?,
            };
            prune_once(&model, masks, &device)?
        }
        _ => {
            let report = prune_run_on(&run_dir, &ReadOut::default(), &dir.join("compact"), false, &device)?;
            let compacted = dgating_prune::import(&dir.join("compact"))?.to_device(&device)?;
            let groups: Vec<usize> = report.groups.iter().map(|g| g.groups).collect();
            let kept = report.groups.iter().map(|g| g.groups - g.removed).collect();
            let gaps = report.groups.iter().map(|g| g.decision.is_some_and(|d| d.gap.is_some())).collect();
            (compacted, groups, kept, gaps, (report.before.params, report.before.flops_per_sample))
        }
    };
    let kept_inputs = compacted.config.kept_input_indices();
    let held_out = score(&compacted.model, &tensors(&prepared.test, &device)?.select_features(&kept_inputs)?)?;
    let t1 = Instant::now();
    let finetuned = if spec.finetune.epochs > 0 {
        Some(finetune(&cfg, &compacted, &prepared.train, &prepared.test, spec, task, p.seed)?)
    } else {
        None
    };
    let finetune_seconds = t1.elapsed().as_secs_f64();
    let (metric_name, metric) = headline(&held_out);
    let total: usize = groups.iter().sum();
    let removed = total - kept.iter().sum::<usize>();
    let support_exact = (task.data == "synthetic").then(|| {
        let (_, support) = dgating_nn::data::builtin::synthetic(&dgating_nn::data::builtin::SYNTHETIC_SPEC)
            .expect("the built-in synthetic data generates");
        let kept_inputs = compacted.config.kept_input_indices();
        let truth: Vec<usize> = support.iter().enumerate().filter(|(_, s)| **s).map(|(i, _)| i).collect();
        kept_inputs == truth
    });
    let coef_error = if task.data == "synthetic" && task.model == "linear" {
        Some(coefficient_error(&cfg, &compacted)?)
    } else {
        None
    };
    Ok(PointRecord {
        coef_error,
        point: p.clone(),
        id: p.id(),
        groups,
        kept,
        removed_fraction: if total == 0 { 0.0 } else { removed as f64 / total as f64 },
        params: compacted.num_params()?,
        params_before: before.0,
        flops: dgating_prune::Cost::of(compacted.architecture())?.flops_per_sample,
        flops_before: before.1,
        metric_name: metric_name.into(),
        metric,
        metric_finetuned: finetuned.map(|s| headline(&s).1),
        gap_found,
        support_exact,
        train_seconds,
        finetune_seconds,
    })
}

/// `||β̂ − β|| / ||β||` of a linear model on the built-in synthetic data: the compacted weights
/// mapped back to raw features (`β̂_k = w_k / σ_k` for kept feature `k`, 0 for removed ones),
/// against the generator's true coefficients.
fn coefficient_error(cfg: &RunConfig, compacted: &dgating_prune::Compacted) -> Result<f64> {
    let truth = dgating_nn::data::builtin::SYNTHETIC_SPEC.generate()?.coef;
    let tensors = compacted.tensors()?;
    let w = tensors
        .get("layers.0.weight")
        .ok_or_else(|| Error::InvalidConfig("the linear model has no `layers.0.weight`".into()))?;
    let w = dgating_nn::tensor_util::to_f64_vec(w)?;
    let kept = compacted.config.kept_input_indices();
    let mut beta = vec![0.0; truth.len()];
    for (&k, &wk) in kept.iter().zip(&w) {
        let sd = cfg.standardizer.as_ref().map_or(1.0, |s| f64::from(s.std[k]));
        beta[k] = wk / sd;
    }
    let num: f64 = beta.iter().zip(&truth).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
    let den: f64 = truth.iter().map(|b| b * b).sum::<f64>().sqrt();
    Ok(num / den)
}

/// Accuracy for classification, R² for regression (higher is better for both).
fn headline(s: &Scores) -> (&'static str, f64) {
    match s.accuracy {
        Some(a) => ("accuracy", a),
        None => ("r2", s.r2.unwrap_or(f64::NAN)),
    }
}

fn tensors(d: &Dataset, device: &Device) -> Result<TensorData> {
    Ok(TensorData::new(d, DType::F32, device)?)
}

/// Pruning once by `masks` (one per gate set; magnitude, L1-filter and slimming pruning):
/// the masked groups removed, the rest compacted.
#[allow(clippy::type_complexity)]
fn prune_once(
    model: &Network,
    masks: Vec<Vec<bool>>,
    device: &Device,
) -> Result<(Compacted, Vec<usize>, Vec<usize>, Vec<bool>, (usize, usize))> {
    let groups = masks.iter().map(Vec::len).collect();
    let kept = masks.iter().map(|m| m.iter().filter(|k| **k).count()).collect();
    let gaps = vec![false; masks.len()];
    let before = dgating_prune::Cost::of(&dgating_nn::architecture_of(model)?)?;
    let plan = PrunePlan::from_set_masks(model, masks)?;
    Ok((compact(model, &plan)?.to_device(device)?, groups, kept, gaps, (before.params, before.flops_per_sample)))
}

/// Fine-tunes the compacted model as a dense network (no penalty) on the training rows for
/// the sweep's budget, and scores it on the held-out rows.
fn finetune(
    cfg: &RunConfig,
    compacted: &Compacted,
    train_set: &Dataset,
    test_set: &Dataset,
    spec: &SweepSpec,
    task: &TaskSpec,
    seed: u64,
) -> Result<Scores> {
    let budget =
        FinetuneBudget { epochs: spec.finetune.epochs, lr: spec.finetune.lr, batch_size: task.batch_size, seed };
    finetune_compacted(cfg, compacted, train_set, test_set, budget, None)
}

/// What a compacted model is fine-tuned with: plain SGD + momentum, no penalty, cosine from
/// `lr` to 0 over `epochs`.
#[derive(Debug, Clone, Copy)]
pub struct FinetuneBudget {
    /// Epochs over the training rows.
    pub epochs: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// Batch size.
    pub batch_size: usize,
    /// Seed of the batch order.
    pub seed: u64,
}

/// Called with an epoch (0: before training) and the held-out scores after it.
pub type AfterEpoch<'a> = &'a mut dyn FnMut(usize, &Scores);

/// Fine-tunes a copy of `compacted` (rebuilt from its tensors, so the export is untouched) as a
/// dense network on `train_set` — the columns of `cfg`'s features the model kept — and returns
/// its scores on `test_set`: the fine-tune of every sweep point. `after_epoch`, if given, gets
/// the held-out scores before training (epoch 0) and after each epoch.
pub fn finetune_compacted(
    cfg: &RunConfig,
    compacted: &Compacted,
    train_set: &Dataset,
    test_set: &Dataset,
    budget: FinetuneBudget,
    mut after_epoch: Option<AfterEpoch<'_>>,
) -> Result<Scores> {
    // The compacted architecture as a plain dense model with its own copy of the weights.
    let model = compacted.architecture().from_tensors(&compacted.tensors()?)?;
    let kept: Vec<String> =
        compacted.config.kept_input_indices().iter().map(|&i| cfg.feature_names[i].clone()).collect();
    let device = compacted.device()?;
    let (train_t, test_t) =
        (tensors(&train_set.select_features(&kept)?, &device)?, tensors(&test_set.select_features(&kept)?, &device)?);
    let mut tc = TrainConfig::new(Mode::Dense, GateConfig::new(2, 0.0)?);
    tc.epochs = budget.epochs;
    tc.lr = budget.lr;
    tc.batch_size = budget.batch_size;
    tc.seed = budget.seed;
    tc.schedule = Schedule::Cosine { warmup: 0 };
    if let Some(f) = after_epoch.as_mut() {
        f(0, &score(&model, &test_t)?);
    }
    let mut trainer = Trainer::new(&model, tc)?;
    let mut epoch = 0;
    while !trainer.finished() {
        trainer.train_epoch(&train_t, &mut |_| {})?;
        epoch += 1;
        if let Some(f) = after_epoch.as_mut() {
            f(epoch, &score(&model, &test_t)?);
        }
    }
    Ok(score(&model, &test_t)?)
}

/// The runs of a sweep directory (for tests and reports).
pub fn point_dir(dir: &Path, id: &str) -> PathBuf {
    dir.join(POINTS_DIR).join(id)
}

//! `dgating train`: one training run of `dgating-nn` into a run directory, or the
//! continuation of one.

use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use clap::Args;
use dgating_core::{GateConfig, Threshold};
use dgating_nn::GateInit;
use dgating_nn::data::Task;
use dgating_nn::optim::{OptimizerKind, Schedule, Warmup};
use dgating_nn::train::{self, DataSpec, EpochMetrics, Mode, Progress, ResumeOptions, TrainConfig};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::output::{join, json_line, pct};

/// Arguments of `dgating train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Model preset: lenet-300-100, mlp, linear, residual-mlp; conv nets for 28x28 / 32x32
    /// images with 1 or 3 channels: lenet5, vgg11, vgg16, resnet20, resnet56.
    #[arg(long, default_value = "mlp", conflicts_with = "resume")]
    model: String,
    /// Conv nets: channel-width multiplier (e.g. 0.25 for a quarter of every channel count).
    #[arg(long, conflicts_with = "resume")]
    width: Option<f64>,
    /// Conv nets: random crop after zero padding by this many pixels (0: none).
    #[arg(long, default_value_t = 0, conflicts_with = "resume")]
    crop_padding: usize,
    /// Conv nets: random horizontal flips.
    #[arg(long, conflicts_with = "resume")]
    hflip: bool,
    /// Images: normalize each channel by its training mean and standard deviation (stored in
    /// the run's config and applied to new data).
    #[arg(long, conflicts_with = "resume")]
    normalize: bool,
    /// Built-in data set (wine, breast-cancer, mnist-10k, fashion-mnist-10k, synthetic),
    /// `fashion-mnist` (the full set from Debian's dataset-fashion-mnist), a .csv/.tsv file
    /// (optionally .gz), an IDX directory (its t10k-* files, if present, are the held-out set) or a
    /// CIFAR-10/100 binary directory.
    #[arg(long, default_value = "wine", conflicts_with = "resume")]
    data: String,
    /// Target column of a table.
    #[arg(long, conflicts_with = "resume")]
    target: Option<String>,
    /// What to predict: auto (text labels and up to 20 distinct integers are classes, other
    /// numbers a regression target; the choice is printed), classification or regression.
    #[arg(long, default_value = "auto", conflicts_with = "resume")]
    task: String,
    /// Share of the rows held out for validation (when the data has no test set of its own).
    #[arg(long, default_value_t = 0.2, conflicts_with = "resume")]
    test_fraction: f64,
    /// A separate held-out file instead of a split (same columns, by name).
    #[arg(long, conflicts_with = "resume")]
    val_data: Option<String>,
    /// Training mode: dense, dgating, direct, prox, magnitude; for conv nets also l1-filter
    /// (Li et al. 2017) and slimming (Liu et al. 2017: lambda is the L1 strength on BN scales).
    #[arg(long, default_value = "dgating", conflicts_with = "resume")]
    mode: String,
    /// Gate depth D >= 2 (also the exponent 2/D of the direct and prox penalties).
    #[arg(long, default_value_t = 3, conflicts_with = "resume")]
    depth: usize,
    /// Penalty strength lambda >= 0 (gate factors get weight decay 2*lambda/D).
    #[arg(long, default_value_t = 1e-3, conflicts_with = "resume")]
    lambda: f64,
    /// Epochs (for magnitude: the dense phase); default 20. With --resume: the new total, to
    /// extend a run.
    #[arg(long)]
    epochs: Option<usize>,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128, conflicts_with = "resume")]
    batch_size: usize,
    /// Base learning rate (cosine schedule with warm-up).
    #[arg(long, default_value_t = 0.05, conflicts_with = "resume")]
    lr: f64,
    /// Warm-up of the cosine schedule: steps (`100`), epochs (`2ep`) or a share of all steps
    /// (`5%`).
    #[arg(long, default_value = "5%", conflicts_with = "resume")]
    warmup: String,
    /// Learning-rate floor: the cosine schedule decays to FLOOR x lr instead of 0 (lets the
    /// collapse of unneeded groups go further; docs/EXPERIMENTS.md).
    #[arg(long, default_value_t = 0.0, conflicts_with = "resume")]
    lr_floor: f64,
    /// Share of the run spent at the floor at the end (constant tail), in [0, 1).
    #[arg(long, default_value_t = 0.0, conflicts_with = "resume")]
    lr_tail: f64,
    /// Optimizer: sgd (momentum, coupled weight decay) or adamw (decoupled).
    #[arg(long, default_value = "sgd", conflicts_with = "resume")]
    optimizer: String,
    /// SGD momentum, in [0, 1).
    #[arg(long, default_value_t = 0.9, conflicts_with = "resume")]
    momentum: f64,
    /// Absolute group-norm threshold for counting active groups in the metrics.
    #[arg(long, default_value_t = 1e-3, conflicts_with = "resume")]
    threshold_abs: f64,
    /// Threshold relative to the largest group norm of each layer (the default floor of
    /// `dgating prune`).
    #[arg(long, default_value_t = 3e-2, conflicts_with = "resume")]
    threshold_rel: f64,
    /// magnitude, l1-filter, slimming: fraction of groups (channels) to remove, in [0, 1).
    #[arg(long, default_value_t = 0.5, conflicts_with = "resume")]
    target_sparsity: f64,
    /// magnitude, l1-filter, slimming: fine-tuning epochs.
    #[arg(long, default_value_t = 5, conflicts_with = "resume")]
    finetune_epochs: usize,
    /// Gate initialization: ones (omega = W, gates 1) or balanced (|gamma| = ||omega_j||).
    #[arg(long, default_value = "ones", conflicts_with = "resume")]
    gate_init: String,
    /// Seed of initialization, split and batch order.
    #[arg(long, default_value_t = 0, conflicts_with = "resume")]
    seed: u64,
    /// Where to train: cpu, cuda, cuda:N or auto (a GPU when the build has CUDA support and one
    /// is present, else the CPU).
    #[arg(long, default_value = "cpu", conflicts_with = "resume")]
    device: String,
    /// Output run directory: new, or empty (default: a new `runs/DATA-MODEL-MODE-N`).
    #[arg(long, conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this directory exactly where it stopped (only --epochs may be given
    /// with it: a new total).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Print one JSON object per line (`start`, one `epoch` per epoch, `summary`) instead of text.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
}

impl TrainArgs {
    fn config(&self) -> Result<TrainConfig, Box<dyn std::error::Error>> {
        let mode = Mode::parse(&self.mode)?;
        let mut cfg = TrainConfig::new(mode, GateConfig::new(self.depth, self.lambda)?);
        cfg.epochs = self.epochs.unwrap_or(20);
        cfg.batch_size = self.batch_size;
        cfg.lr = self.lr;
        cfg.warmup = Some(Warmup::parse(&self.warmup)?);
        cfg.schedule = if self.lr_floor > 0.0 || self.lr_tail > 0.0 {
            Schedule::CosineFloor { warmup: 0, floor: self.lr_floor, tail: self.lr_tail }
        } else {
            Schedule::Cosine { warmup: 0 }
        };
        cfg.optimizer = match self.optimizer.as_str() {
            "sgd" if (0.0..1.0).contains(&self.momentum) => OptimizerKind::Sgd { momentum: self.momentum },
            "sgd" => return Err(format!("momentum must be in [0, 1), got {}", self.momentum).into()),
            "adamw" => OptimizerKind::adamw(),
            other => return Err(format!("unknown optimizer `{other}` (known: sgd, adamw)").into()),
        };
        cfg.threshold = Threshold::new(self.threshold_abs, self.threshold_rel)?;
        cfg.target_sparsity = self.target_sparsity;
        cfg.finetune_epochs = self.finetune_epochs;
        cfg.seed = self.seed;
        cfg.gate_init = match self.gate_init.as_str() {
            "ones" => GateInit::Ones,
            "balanced" => GateInit::Balanced,
            other => return Err(format!("unknown gate init `{other}` (known: ones, balanced)").into()),
        };
        if self.crop_padding > 0 || self.hflip {
            cfg.augment = Some(dgating_nn::data::Augment { crop_padding: self.crop_padding, hflip: self.hflip });
        }
        cfg.device = dgating_nn::train::DeviceSpec::parse(&self.device)?;
        cfg.device.device()?;
        cfg.check()?;
        Ok(cfg)
    }

    fn data(&self) -> Result<DataSpec, Box<dyn std::error::Error>> {
        let mut spec = DataSpec::new(&self.data, self.target.clone());
        spec.task = Task::parse(&self.task)?;
        spec.test_fraction = self.test_fraction;
        spec.val_source = self.val_data.clone();
        if self.normalize {
            (spec.standardize, spec.per_channel) = (true, true);
        }
        Ok(spec)
    }

    /// The model spec: the preset, with `@WIDTH` for a width multiplier.
    fn model(&self) -> String {
        match self.width {
            Some(w) => format!("{}@{w}", self.model),
            None => self.model.clone(),
        }
    }
}

/// The first free `runs/DATA-MODEL-MODE-N`, claimed by creating it (so two processes never
/// pick the same one).
fn default_out(args: &TrainArgs) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let stem = Path::new(&args.data).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let stem: String =
        stem.split('.').next().unwrap_or("data").chars().filter(|c| c.is_alphanumeric() || *c == '-').collect();
    let base = Path::new("runs");
    std::fs::create_dir_all(base).map_err(|e| format!("{}: {e}", base.display()))?;
    for n in 1..10_000 {
        let dir = base.join(format!("{stem}-{}-{}-{n}", args.model, args.mode));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("{}: {e}", dir.display()).into()),
        }
    }
    Err("no free run directory under runs/; pass --out".into())
}

fn describe(m: &EpochMetrics, total: usize) -> String {
    let quality = match (m.val_accuracy, m.val_rmse) {
        (Some(a), _) => format!("val acc {}", pct(Some(a))),
        (None, Some(r)) => {
            let r2 = m.val_r2.map(|r2| format!(" R2 {r2:.3}")).unwrap_or_default();
            format!("val RMSE {r:.4}{r2}")
        }
        _ => String::new(),
    };
    let imb = m.max_imbalance.map(|i| format!(" imbalance {i:.1e}")).unwrap_or_default();
    format!(
        "epoch {:>3}/{total}: loss {:.4} val loss {:.4} {quality} active groups {}/{} (per layer {}){imb}",
        m.epoch,
        m.train_loss,
        m.val_loss,
        m.active_groups,
        m.total_groups,
        join(&m.active_per_layer)
    )
}

fn progress_bar(args: &TrainArgs) -> Result<ProgressBar, Box<dyn std::error::Error>> {
    if args.quiet || args.json || !std::io::stderr().is_terminal() {
        return Ok(ProgressBar::hidden());
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg} eta {eta}")?.progress_chars("=> "),
    );
    Ok(bar)
}

pub fn run(args: &TrainArgs) -> Result<(), Box<dyn std::error::Error>> {
    let bar = progress_bar(args)?;
    let total_epochs = std::cell::Cell::new(0);
    let mut progress = |p: Progress| {
        let total = (p.total_epochs * p.steps_per_epoch) as u64;
        if bar.length() != Some(total) {
            bar.set_length(total);
            bar.reset_eta();
        }
        total_epochs.set(p.total_epochs);
        bar.set_prefix(format!("epoch {}/{}", p.epoch, p.total_epochs));
        bar.set_position(((p.epoch - 1) * p.steps_per_epoch + p.step) as u64);
        bar.set_message(format!("loss {:.4}", p.loss));
    };
    let text = !args.quiet && !args.json;
    let mut on_epoch = |m: &EpochMetrics| {
        if args.json {
            json_line(&json!({ "event": "epoch", "metrics": m }));
        } else if text {
            // Above the bar on a terminal; a plain line in logs.
            let line = describe(m, total_epochs.get().max(m.epoch));
            bar.suspend(|| println!("{line}"));
        }
        ControlFlow::Continue(())
    };
    let summary = match &args.resume {
        Some(dir) => {
            if text {
                println!("resuming {}", dir.display());
            }
            train::resume(dir, ResumeOptions { epochs: args.epochs }, &mut progress, &mut on_epoch)?
        }
        None => {
            let plan = train::plan(&args.model(), args.config()?, args.data()?)?;
            let out = match &args.out {
                Some(o) => o.clone(),
                None => default_out(args)?,
            };
            let d = plan.data();
            if args.json {
                json_line(&json!({
                    "event": "start",
                    "dir": out,
                    "task": d.task.task,
                    "task_reason": d.task.reason,
                    "train_rows": d.train.len(),
                    "held_out_rows": d.test.len(),
                    "held_out": d.held_out,
                    "classes": plan.config().class_names,
                }));
            } else if text {
                println!("task: {}", d.task.reason);
                println!(
                    "data: {} training rows, {} held-out rows ({}); run directory {}",
                    d.train.len(),
                    d.test.len(),
                    d.held_out,
                    out.display()
                );
            }
            plan.train(&out, &mut progress, &mut on_epoch)?
        }
    };
    bar.finish_and_clear();
    let last = summary.metrics.last();
    if args.json {
        json_line(&json!({
            "event": "summary",
            "dir": summary.dir,
            "epochs_done": summary.metrics.len(),
            "final": last,
        }));
    } else if text {
        let quality = last
            .map(|m| match (m.val_accuracy, m.val_rmse) {
                (Some(a), _) => format!("; held-out accuracy {}", pct(Some(a))),
                (None, Some(r)) => format!("; held-out RMSE {r:.4}"),
                _ => String::new(),
            })
            .unwrap_or_default();
        println!("trained {} epochs{quality}; run in {}", summary.metrics.len(), summary.dir.display());
    }
    Ok(())
}

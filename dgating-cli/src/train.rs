//! `dgating train`: one training run of `dgating-nn` into a run directory.

use std::ops::ControlFlow;
use std::path::PathBuf;

use clap::Args;
use dgating_core::{GateConfig, Threshold};
use dgating_nn::GateInit;
use dgating_nn::optim::{OptimizerKind, Schedule};
use dgating_nn::train::{self, DataSpec, EpochMetrics, Mode, Progress, TrainConfig};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `dgating train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Model preset: lenet-300-100, mlp, linear.
    #[arg(long, default_value = "mlp")]
    model: String,
    /// Built-in data set (wine, breast-cancer, mnist-10k, synthetic), a CSV file or an IDX directory.
    #[arg(long, default_value = "wine")]
    data: String,
    /// Target column of a CSV file.
    #[arg(long)]
    target: Option<String>,
    /// Training mode: dense, dgating, direct, prox, magnitude.
    #[arg(long, default_value = "dgating")]
    mode: String,
    /// Gate depth D >= 2 (also the exponent 2/D of the direct and prox penalties).
    #[arg(long, default_value_t = 3)]
    depth: usize,
    /// Penalty strength lambda >= 0 (gate factors get weight decay 2*lambda/D).
    #[arg(long, default_value_t = 1e-3)]
    lambda: f64,
    /// Epochs (for magnitude: the dense phase).
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Base learning rate (cosine schedule with warm-up).
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Warm-up steps of the cosine schedule.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// Optimizer: sgd (momentum 0.9, coupled weight decay) or adamw (decoupled).
    #[arg(long, default_value = "sgd")]
    optimizer: String,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Absolute group-norm threshold for counting active groups.
    #[arg(long, default_value_t = 1e-3)]
    threshold_abs: f64,
    /// Threshold relative to the largest group norm of each layer (the default floor of
    /// `dgating prune`).
    #[arg(long, default_value_t = 3e-2)]
    threshold_rel: f64,
    /// magnitude: fraction of groups to remove.
    #[arg(long, default_value_t = 0.5)]
    target_sparsity: f64,
    /// magnitude: fine-tuning epochs.
    #[arg(long, default_value_t = 5)]
    finetune_epochs: usize,
    /// Gate initialization: ones (omega = W, gates 1) or balanced (|gamma| = ||omega_j||).
    #[arg(long, default_value = "ones")]
    gate_init: String,
    /// Seed of initialization, split and batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output run directory (must not hold a run yet).
    #[arg(long, default_value = "runs/latest", conflicts_with = "resume")]
    out: PathBuf,
    /// Continue the run in this directory exactly where it stopped.
    #[arg(long)]
    resume: Option<PathBuf>,
}

impl TrainArgs {
    fn config(&self) -> Result<TrainConfig, Box<dyn std::error::Error>> {
        let mode = Mode::parse(&self.mode)?;
        let mut cfg = TrainConfig::new(mode, GateConfig::new(self.depth, self.lambda)?);
        cfg.epochs = self.epochs;
        cfg.batch_size = self.batch_size;
        cfg.lr = self.lr;
        cfg.schedule = Schedule::Cosine { warmup: self.warmup };
        cfg.optimizer = match self.optimizer.as_str() {
            "sgd" => OptimizerKind::Sgd { momentum: self.momentum },
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
        cfg.check()?;
        Ok(cfg)
    }
}

fn describe(m: &EpochMetrics) -> String {
    let acc = m.val_accuracy.map(|a| format!("val acc {:.2}%", 100.0 * a)).unwrap_or_default();
    let imb = m.max_imbalance.map(|i| format!(" imbalance {i:.1e}")).unwrap_or_default();
    format!(
        "epoch {:>3}: loss {:.4} val loss {:.4} {acc} active {}/{} {:?}{imb}",
        m.epoch, m.train_loss, m.val_loss, m.active_groups, m.total_groups, m.active_per_layer
    )
}

pub fn run(args: &TrainArgs) -> Result<(), Box<dyn std::error::Error>> {
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")?.progress_chars("=> "));
    let mut progress = |p: Progress| {
        if bar.length() != Some(p.steps_per_epoch as u64) {
            bar.set_length(p.steps_per_epoch as u64);
        }
        bar.set_prefix(format!("epoch {}", p.epoch));
        bar.set_position(p.step as u64);
        bar.set_message(format!("loss {:.4}", p.loss));
    };
    let mut on_epoch = |m: &EpochMetrics| {
        bar.println(describe(m));
        ControlFlow::Continue(())
    };
    let summary = match &args.resume {
        Some(dir) => train::resume(dir, &mut progress, &mut on_epoch)?,
        None => {
            let cfg = args.config()?;
            let data = DataSpec::new(&args.data, args.target.clone());
            train::train(&args.model, cfg, data, &args.out, &mut progress, &mut on_epoch)?
        }
    };
    bar.finish_and_clear();
    if let Some(last) = summary.metrics.last() {
        println!("{}", describe(last));
    }
    println!("run written to {}", summary.dir.display());
    Ok(())
}

//! Fine-tunes a compacted export exactly as a sweep point does
//! ([`dgating_bench::sweep::finetune_compacted`]: dense, no penalty, SGD + momentum 0.9, cosine
//! from `LR` to 0, batch 64, seed 0) and prints the held-out accuracy before and after each
//! epoch: the probe behind "why the fine-tune epoch hurts" in docs/EXPERIMENTS.md (ResNet-20 on
//! Fashion-MNIST).
//!
//! ```sh
//! cargo build --release -p dgating-bench --example finetune_probe
//! P=rn/points/resnet20-dgating-D3-l1.000e-2-s0
//! target/release/examples/finetune_probe $P/run $P/compact 0.01 1
//! ```
//! `RUN` is the training run (for its data and split), `EXPORT` the compacted model.

use std::path::Path;

use dgating_bench::sweep::{FinetuneBudget, finetune_compacted};
use dgating_nn::train::run::load_run_model;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [run, export, lr, epochs] = args.as_slice() else {
        return Err("usage: finetune_probe RUN EXPORT LR EPOCHS".into());
    };
    let (lr, epochs) = (lr.parse::<f64>()?, epochs.parse::<usize>()?);
    let compacted = dgating_prune::import(Path::new(export))?;
    let (cfg, _) = load_run_model(Path::new(run))?;
    let prepared = cfg.load_data()?;
    let budget = FinetuneBudget { epochs, lr, batch_size: 64, seed: 0 };
    let mut print = |epoch: usize, s: &dgating_nn::train::Scores| {
        println!("epoch {epoch} (lr {lr}): held-out accuracy {:?}", s.accuracy);
    };
    finetune_compacted(&cfg, &compacted, &prepared.train, &prepared.test, budget, Some(&mut print))?;
    Ok(())
}

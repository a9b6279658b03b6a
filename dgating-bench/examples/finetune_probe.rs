//! Fine-tunes a compacted export exactly as a sweep point does (dense, no penalty, SGD +
//! momentum 0.9, cosine from `LR` to 0, batch 64, seed 0) and prints the held-out accuracy
//! before and after each epoch: the probe behind "why the fine-tune epoch hurts" in
//! docs/EXPERIMENTS.md (ResNet-20 on Fashion-MNIST).
//!
//! ```sh
//! cargo build --release -p dgating-bench --example finetune_probe
//! P=rn/points/resnet20-dgating-D3-l1.000e-2-s0
//! target/release/examples/finetune_probe $P/run $P/compact 0.01 1
//! ```
//! `RUN` is the training run (for its data and split), `EXPORT` the compacted model.

use std::path::Path;

use candle_core::{DType, Device};
use dgating_core::GateConfig;
use dgating_nn::optim::Schedule;
use dgating_nn::train::engine::{TensorData, Trainer, score};
use dgating_nn::train::run::load_run_model;
use dgating_nn::train::{Mode, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [run, export, lr, epochs] = args.as_slice() else {
        return Err("usage: finetune_probe RUN EXPORT LR EPOCHS".into());
    };
    let (lr, epochs) = (lr.parse::<f64>()?, epochs.parse::<usize>()?);
    let compacted = dgating_prune::import(Path::new(export))?;
    let (cfg, _) = load_run_model(Path::new(run))?;
    let prepared = cfg.load_data()?;
    let kept: Vec<String> =
        compacted.config.kept_input_indices().iter().map(|&i| cfg.feature_names[i].clone()).collect();
    let train = TensorData::new(&prepared.train.select_features(&kept)?, DType::F32, &Device::Cpu)?;
    let test = TensorData::new(&prepared.test.select_features(&kept)?, DType::F32, &Device::Cpu)?;
    let model = compacted.architecture().from_tensors(&compacted.tensors()?)?;
    println!("before: held-out accuracy {:?}", score(&model, &test)?.accuracy);
    let mut tc = TrainConfig::new(Mode::Dense, GateConfig::new(2, 0.0)?);
    tc.epochs = epochs;
    tc.lr = lr;
    tc.batch_size = 64;
    tc.schedule = Schedule::Cosine { warmup: 0 };
    let mut trainer = Trainer::new(&model, tc)?;
    let mut epoch = 0;
    while !trainer.finished() {
        trainer.train_epoch(&train, &mut |_| {})?;
        epoch += 1;
        println!("epoch {epoch} (lr {lr}): held-out accuracy {:?}", score(&model, &test)?.accuracy);
    }
    Ok(())
}

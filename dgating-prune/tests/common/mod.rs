//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use dgating_core::GateConfig;
use dgating_nn::layers::GateInit;
use dgating_nn::train::{self, DataSpec, Mode, TrainConfig};
use dgating_nn::{Mlp, MlpConfig};

/// An MLP with hidden-neuron groups, balanced (non-trivial) gates of depth `depth`.
pub fn hidden_model(input: usize, hidden: &[usize], output: usize, depth: usize, seed: u64) -> Mlp {
    let cfg = MlpConfig {
        input_dim: input,
        hidden: hidden.to_vec(),
        output_dim: output,
        group_inputs: false,
        group_hidden: true,
    };
    Mlp::with_gate_init(cfg, Some(depth), GateInit::Balanced, seed, DType::F32, &Device::Cpu).unwrap()
}

/// An MLP with input-feature groups.
pub fn input_model(input: usize, hidden: &[usize], output: usize, depth: usize, seed: u64) -> Mlp {
    let cfg = MlpConfig {
        input_dim: input,
        hidden: hidden.to_vec(),
        output_dim: output,
        group_inputs: true,
        group_hidden: false,
    };
    Mlp::with_gate_init(cfg, Some(depth), GateInit::Balanced, seed, DType::F32, &Device::Cpu).unwrap()
}

/// Deterministic pseudo-random inputs `[n, p]` in about `[-2, 2]`.
pub fn inputs(n: usize, p: usize, seed: u64) -> Tensor {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n * p)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(v, (n, p), &Device::Cpu).unwrap()
}

/// Trains `model` (`linear` / `mlp` preset) on built-in `data` with D-Gating into `out`.
pub fn train_run(model: &str, data: &str, depth: usize, lambda: f64, epochs: usize, out: &Path) {
    let mut cfg = TrainConfig::new(Mode::Dgating, GateConfig::new(depth, lambda).unwrap());
    cfg.epochs = epochs;
    cfg.batch_size = 16;
    cfg.lr = 0.05;
    train::train(model, cfg, DataSpec::new(data, None), out, &mut |_| {}, &mut |_| ControlFlow::Continue(())).unwrap();
}

/// All values of a 2-D tensor as `f32` bits, for exact comparisons.
pub fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect()
}

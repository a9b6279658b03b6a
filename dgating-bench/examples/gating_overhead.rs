//! The D-Gating overhead of one training step, measured on a noisy machine: the dense and the
//! D-gated model train side by side in one process, one step each in turn (ABAB…), so load
//! changes hit both alike; prints the medians and the median of the per-pair ratios.
//!
//! ```sh
//! cargo run --release -p dgating-bench --example gating_overhead -- [pairs] [mlp|conv|all]
//! ```
//!
//! MLPs: LeNet-300-100 (batch 128) and 784-512-512-10 (batch 256). Conv nets (training-mode
//! batch norm): `lenet5` 28×28 (batch 128) and `vgg11 --width 0.25` 32×32×3 (batch 64), D = 3
//! on the presets' gate sets (every conv but the first; a VGG channel's group is its batch-norm
//! scale and shift). Criterion's `train_step` bench times the two models minutes apart; on a
//! shared VM its two medians can differ by ±30% from run to run (docs/PERFORMANCE.md), more
//! than the effect.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use dgating_nn::layers::GateInit;
use dgating_nn::loss::{cross_entropy, one_hot};
use dgating_nn::model::{Architecture, ImageShape};
use dgating_nn::optim::{Optimizer, OptimizerKind};
use dgating_nn::{MlpConfig, Model};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: first thing in the process, before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let pairs: usize = std::env::args().nth(1).map_or(Ok(200), |s| s.parse())?;
    let which = std::env::args().nth(2).unwrap_or_else(|| "all".into());
    let dev = Device::Cpu;
    let mlp512 =
        MlpConfig { input_dim: 784, hidden: vec![512, 512], output_dim: 10, group_inputs: false, group_hidden: true };
    let (grey, rgb) = (ImageShape::new(1, 28, 28), ImageShape::new(3, 32, 32));
    let mut cases: Vec<(&str, Architecture, usize)> = vec![];
    if which != "conv" {
        cases.push(("lenet-300-100 b128", Architecture::Mlp(MlpConfig::lenet_300_100()), 128));
        cases.push(("mlp-784-512-512-10 b256", Architecture::Mlp(mlp512), 256));
    }
    if which != "mlp" {
        cases.push(("lenet5 28x28 b128", Architecture::conv_preset("lenet5", grey, 10, 1.0)?, 128));
        cases.push(("vgg11x0.25 32x32x3 b64", Architecture::conv_preset("vgg11", rgb, 10, 0.25)?, 64));
    }
    for (name, arch, batch) in cases {
        let f = arch.input_dim();
        let x: Vec<f32> = (0..batch * f).map(|i| ((i * 7919) % 256) as f32 / 255.0).collect();
        let x = Tensor::from_vec(x, (batch, f), &dev)?;
        let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
        let y = one_hot(&labels, 10, DType::F32, &dev)?;
        let mut runs = Vec::new();
        for depth in [None, Some(3)] {
            let model = arch.build(depth, GateInit::Ones, 0, DType::F32, &dev)?;
            let opt = Optimizer::new(OptimizerKind::Sgd { momentum: 0.9 }, &model.params()?, 1e-4, 0.0)?;
            runs.push((model, opt));
        }
        let mut times = [Vec::with_capacity(pairs), Vec::with_capacity(pairs)];
        for it in 0..pairs + 10 {
            for (k, (model, opt)) in runs.iter_mut().enumerate() {
                let t = Instant::now();
                let loss = cross_entropy(&model.forward_train(&x)?, &y)?;
                let grads = loss.backward()?;
                opt.step(&grads, 0.01)?;
                if it >= 10 {
                    times[k].push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        let mut ratios: Vec<f64> = times[1].iter().zip(&times[0]).map(|(g, d)| g / d).collect();
        let (dense, gated) = (median(&mut times[0].clone()), median(&mut times[1].clone()));
        println!(
            "{name}: dense {dense:.3} ms, D=3 {gated:.3} ms, ratio of medians {:.3}, median paired ratio {:.3} ({pairs} pairs)",
            gated / dense,
            median(&mut ratios)
        );
    }
    Ok(())
}

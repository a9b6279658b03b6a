//! Where the time of one LeNet-300-100 training step goes (forward / backward / optimizer),
//! dense vs D = 3, averaged over 50 steps after 10 warm-up steps:
//! `cargo run --release -p dgating-bench --example step_breakdown`.
//! Set `DEFAULT_RUNTIME=1` to skip `dgating_nn::runtime::configure`.
//! Criterion's `train_step` bench gives the statistically careful number; this splits it.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use dgating_nn::loss::{cross_entropy, one_hot};
use dgating_nn::optim::{Optimizer, OptimizerKind};
use dgating_nn::{Mlp, MlpConfig, Model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("DEFAULT_RUNTIME").is_none() {
        // SAFETY: first thing in the process, before any other thread exists.
        unsafe { dgating_nn::runtime::configure() };
    }
    let dev = Device::Cpu;
    let x: Vec<f32> = (0..128 * 784).map(|i| ((i * 7919) % 256) as f32 / 255.0).collect();
    let x = Tensor::from_vec(x, (128, 784), &dev)?;
    let labels: Vec<u32> = (0..128u32).map(|i| i % 10).collect();
    let y = one_hot(&labels, 10, DType::F32, &dev)?;
    for depth in [None, Some(3)] {
        let model = Mlp::new(MlpConfig::lenet_300_100(), depth, 0, DType::F32, &dev)?;
        let mut opt = Optimizer::new(OptimizerKind::Sgd { momentum: 0.9 }, &model.params()?, 1e-4, 0.0)?;
        let (mut fwd, mut bwd, mut upd) = (0.0, 0.0, 0.0);
        for it in 0..60 {
            let t0 = Instant::now();
            let loss = cross_entropy(&model.forward(&x)?, &y)?;
            let t1 = Instant::now();
            let grads = loss.backward()?;
            let t2 = Instant::now();
            opt.step(&grads, 0.01)?;
            let t3 = Instant::now();
            if it >= 10 {
                fwd += (t1 - t0).as_secs_f64();
                bwd += (t2 - t1).as_secs_f64();
                upd += (t3 - t2).as_secs_f64();
            }
        }
        let ms = |s: f64| s * 1000.0 / 50.0;
        let name = depth.map_or("dense".to_string(), |d| format!("D={d}"));
        println!("{name:>6}: forward {:.2} ms  backward {:.2} ms  optimizer {:.2} ms", ms(fwd), ms(bwd), ms(upd));
    }
    Ok(())
}

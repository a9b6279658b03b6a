//! Speed-up of compacted LeNet-300-100 models over the dense one, measured on a noisy machine:
//! the dense model and the 50% / 75% / 90% compacted models run in turn, a block of forwards
//! each per round (the first call of a block warms the model's weights into cache and is not
//! timed: a deployed model runs alone, and one call at a time would have the dense model's
//! 1 MB of weights evict the small ones), so load changes hit all alike; the speed-up is the
//! median over rounds of `dense time / compacted time`, printed next to the FLOP ratio. The
//! dense baseline is the unpruned model in the same inference engine (a `Compacted` model with
//! nothing removed); the training-side `Mlp` forward of the dense model is printed alongside.
//!
//! ```sh
//! cargo run --release -p dgating-bench --example inference_speedup
//! ```
//!
//! The criterion bench `inference` times each model in its own block of seconds; on the shared
//! VM those blocks see different load (docs/PERFORMANCE.md).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use dgating_core::Threshold;
use dgating_nn::{Mlp, MlpConfig, Model};
use dgating_prune::{Compacted, Cost, PrunePlan, compact};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: first thing in the process, before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let dev = Device::Cpu;
    let dense = Mlp::new(MlpConfig::lenet_300_100(), None, 0, DType::F32, &dev)?;
    let mut small: Vec<(f64, f64, Compacted)> = Vec::new();
    for sparsity in [0.0, 0.5, 0.75, 0.9] {
        // Keep the first (1 − sparsity) of each hidden layer, as the criterion bench does.
        let model = Mlp::new(MlpConfig::lenet_300_100(), Some(3), 0, DType::F32, &dev)?;
        for layer in model.layers().iter().filter(|l| l.gate_set().is_some()) {
            let n = layer.num_groups();
            let keep = ((n as f64) * (1.0 - sparsity)).round() as usize;
            layer.drop_groups(&(0..n).map(|i| i < keep).collect::<Vec<_>>())?;
        }
        let plan = PrunePlan::new(&model, &Threshold::absolute(0.0)?)?;
        let c = compact(&model, &plan)?;
        let flop_ratio = Cost::of(&dgating_nn::architecture_of(&model)?)?.flops_per_sample as f64
            / Cost::of(c.architecture())?.flops_per_sample as f64;
        small.push((sparsity, flop_ratio, c));
    }
    for (batch, block, rounds) in [(1usize, 200usize, 200usize), (256, 8, 100)] {
        let x = Tensor::ones((batch, 784), DType::F32, &dev)?;
        let time_block =
            |f: &dyn Fn() -> Result<(), Box<dyn std::error::Error>>| -> Result<f64, Box<dyn std::error::Error>> {
                f()?;
                let t = Instant::now();
                for _ in 0..block {
                    f()?;
                }
                Ok(t.elapsed().as_secs_f64() / block as f64)
            };
        let mut mlp_t = Vec::with_capacity(rounds);
        let mut times = vec![Vec::with_capacity(rounds); small.len()];
        for round in 0..rounds + rounds / 10 {
            let d = time_block(&|| {
                dense.forward(&x)?;
                Ok(())
            })?;
            let mut s = Vec::with_capacity(small.len());
            for (_, _, m) in &small {
                s.push(time_block(&|| {
                    m.forward_full(&x)?;
                    Ok(())
                })?);
            }
            if round >= rounds / 10 {
                mlp_t.push(d);
                for (k, v) in s.into_iter().enumerate() {
                    times[k].push(v);
                }
            }
        }
        let (base, rest) = times.split_first().expect("the dense baseline");
        println!(
            "batch {batch}: dense {:.2} µs (compact engine; the training Mlp's forward: {:.2} µs), median of {rounds} blocks of {block}",
            median(base.clone()) * 1e6,
            median(mlp_t.clone()) * 1e6
        );
        for ((sparsity, flop_ratio, _), t) in small[1..].iter().zip(rest) {
            let speedup = median(base.iter().zip(t).map(|(d, s)| d / s).collect());
            println!(
                "  {:>3}% sparse: {:.2} µs, speed-up {speedup:.2}x, FLOP ratio {flop_ratio:.2}x, speed-up / FLOP ratio {:.2}",
                (sparsity * 100.0) as u32,
                median(t.clone()) * 1e6,
                speedup / flop_ratio
            );
        }
    }
    Ok(())
}

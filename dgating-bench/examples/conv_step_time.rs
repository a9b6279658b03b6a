//! Wall time of one conv-net training step (forward in training mode, cross-entropy, backward,
//! SGD-momentum update) for ONE configuration, printed as one JSON line — the dgating half of
//! the side-by-side timing against PyTorch (`dgating-bench/reference/torch_conv_step.py`).
//!
//! ```sh
//! cargo build --release -p dgating-bench --example conv_step_time
//! target/release/examples/conv_step_time --model lenet5 --batch 128 --depth 0
//! target/release/examples/conv_step_time --model vgg11 --width 0.25 --size 32 --batch 64 --depth 3
//! ```
//!
//! Arguments: `--model lenet5|vgg11|resnet20`, `--width W` (1), `--size 28|32` (28; 1 channel at
//! 28, 3 at 32), `--batch N` (128), `--depth 0|D` (0 = dense, else the preset's gate sets
//! D-gated), `--warmup N` (5), `--steps N` (20), `--threads N`.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use dgating_nn::Model;
use dgating_nn::layers::GateInit;
use dgating_nn::loss::{cross_entropy, one_hot};
use dgating_nn::model::{Architecture, ImageShape};
use dgating_nn::optim::{Optimizer, OptimizerKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut model, mut width, mut size, mut batch, mut depth, mut warmup, mut steps, mut threads) =
        ("lenet5".to_string(), 1.0f64, 28usize, 128usize, 0usize, 5usize, 20usize, None::<usize>);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--model" => model = v,
            "--width" => width = v.parse()?,
            "--size" => size = v.parse()?,
            "--batch" => batch = v.parse()?,
            "--depth" => depth = v.parse()?,
            "--warmup" => warmup = v.parse()?,
            "--steps" => steps = v.parse()?,
            "--threads" => threads = Some(v.parse()?),
            _ => return Err(format!("unknown argument {flag}").into()),
        }
    }
    if let Some(n) = threads {
        // SAFETY: no other thread exists yet (only argument parsing ran).
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    // SAFETY: before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let threads: usize = std::env::var("RAYON_NUM_THREADS")?.parse()?;
    let shape = if size == 32 { ImageShape::new(3, 32, 32) } else { ImageShape::new(1, 28, 28) };
    let arch = Architecture::conv_preset(&model, shape, 10, width)?;
    let dev = Device::Cpu;
    let f = shape.features();
    let x: Vec<f32> = (0..batch * f).map(|i| ((i * 7919) % 256) as f32 / 255.0).collect();
    let x = Tensor::from_vec(x, (batch, f), &dev)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let y = one_hot(&labels, 10, DType::F32, &dev)?;
    let net = arch.build((depth > 0).then_some(depth), GateInit::Ones, 0, DType::F32, &dev)?;
    let mut opt = Optimizer::new(OptimizerKind::Sgd { momentum: 0.9 }, &net.params()?, 1e-4, 0.0)?;
    let mut times = vec![];
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        let loss = cross_entropy(&net.forward_train(&x)?, &y)?;
        let grads = loss.backward()?;
        opt.step(&grads, 0.01)?;
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        if i == 0 || i + 1 == warmup + steps {
            eprintln!("step {i}: loss {:.6}", loss.to_scalar::<f32>()?);
        }
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let pos = p * (times.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        times[lo] + (times[hi] - times[lo]) * (pos - lo as f64)
    };
    println!(
        "{{\"impl\":\"dgating\",\"model\":\"{model}\",\"width\":{width},\"size\":{size},\"batch\":{batch},\"depth\":{depth},\
         \"threads\":{threads},\"median_ms\":{:.3},\"p10_ms\":{:.3},\"p90_ms\":{:.3},\"steps\":{steps}}}",
        q(0.5),
        q(0.1),
        q(0.9)
    );
    Ok(())
}

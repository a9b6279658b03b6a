//! Wall time of one training step (forward, cross-entropy, backward, SGD-momentum update) for
//! ONE configuration, printed as one JSON line — the dgating half of the side-by-side timing
//! against PyTorch (`dgating-bench/reference/`, which has the PyTorch twin and the driver).
//!
//! ```sh
//! cargo build --release -p dgating-bench --example step_time
//! target/release/examples/step_time --model lenet-300-100 --batch 128 --depth 3
//! ```
//!
//! Arguments: `--model lenet-300-100|mlp-512` (`mlp-512` = 784-512-512-10, hidden neurons
//! gated), `--batch N` (128), `--depth 0|D` (0 = dense, else `D >= 2` gates on every hidden
//! neuron), `--warmup N` (10), `--steps N` (40), `--threads N` (sets `RAYON_NUM_THREADS`;
//! default: the variable if set, else `std::thread::available_parallelism`, as
//! `dgating_nn::runtime::configure` does). The step is exactly the one of
//! `benches/train_step.rs`; the first and last step's loss go to stderr.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use dgating_nn::loss::{cross_entropy, one_hot};
use dgating_nn::optim::{Optimizer, OptimizerKind};
use dgating_nn::{Mlp, MlpConfig, Model};

struct Args {
    model: String,
    batch: usize,
    depth: usize,
    warmup: usize,
    steps: usize,
    threads: Option<usize>,
}

const USAGE: &str = "usage: step_time [--model lenet-300-100|mlp-512] [--batch N] [--depth 0|D] \
                     [--warmup N] [--steps N] [--threads N]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args { model: "lenet-300-100".into(), batch: 128, depth: 0, warmup: 10, steps: 40, threads: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = || value.parse::<usize>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--model" => a.model = value.clone(),
            "--batch" => a.batch = num()?,
            "--depth" => a.depth = num()?,
            "--warmup" => a.warmup = num()?,
            "--steps" => a.steps = num()?,
            "--threads" => a.threads = Some(num()?),
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if a.batch == 0 || a.steps == 0 || a.threads == Some(0) {
        return Err("--batch, --steps and --threads must be >= 1".into());
    }
    Ok(a)
}

/// Percentile `q ∈ [0, 1]` of sorted values, linear interpolation between closest ranks
/// (numpy's default; the PyTorch script uses the same formula).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Argument parsing starts no thread, so the environment may still be changed below.
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    if let Some(n) = args.threads {
        // SAFETY: no other thread exists yet (only argument parsing ran).
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    // Same process settings as the `dgating` binary and the criterion benches.
    // SAFETY: before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let threads: usize = std::env::var("RAYON_NUM_THREADS")?.parse()?;

    let config = match args.model.as_str() {
        "lenet-300-100" => MlpConfig::lenet_300_100(),
        "mlp-512" => MlpConfig {
            input_dim: 784,
            hidden: vec![512, 512],
            output_dim: 10,
            group_inputs: false,
            group_hidden: true,
        },
        other => return Err(format!("unknown model {other} (lenet-300-100, mlp-512)").into()),
    };
    let depth = (args.depth > 0).then_some(args.depth);
    let (batch, input_dim) = (args.batch, config.input_dim);

    let dev = Device::Cpu;
    let x: Vec<f32> = (0..batch * input_dim).map(|i| ((i * 7919) % 256) as f32 / 255.0).collect();
    let x = Tensor::from_vec(x, (batch, input_dim), &dev)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let y = one_hot(&labels, 10, DType::F32, &dev)?;
    let model = Mlp::new(config, depth, 0, DType::F32, &dev)?;
    let mut opt = Optimizer::new(OptimizerKind::Sgd { momentum: 0.9 }, &model.params()?, 1e-4, 0.0)?;

    let total = args.warmup + args.steps;
    let mut times_ms = Vec::with_capacity(args.steps);
    for it in 0..total {
        let t0 = Instant::now();
        let loss = cross_entropy(&model.forward(&x)?, &y)?;
        let grads = loss.backward()?;
        opt.step(&grads, 0.01)?;
        let elapsed = t0.elapsed().as_secs_f64() * 1e3;
        if it >= args.warmup {
            times_ms.push(elapsed);
        }
        if it == 0 || it + 1 == total {
            let l = loss.to_scalar::<f32>()?;
            if !l.is_finite() {
                return Err(format!("non-finite loss {l} at step {it}").into());
            }
            eprintln!("step {it}: loss {l:.6}");
        }
    }
    times_ms.sort_by(f64::total_cmp);
    // Written by hand to keep the documented key order (serde_json sorts `json!` keys).
    let (median, p10, p90) = (percentile(&times_ms, 0.5), percentile(&times_ms, 0.1), percentile(&times_ms, 0.9));
    let line = format!(
        "{{\"impl\":\"dgating\",\"model\":{},\"batch\":{batch},\"depth\":{},\"threads\":{threads},\
         \"median_ms\":{median:.4},\"p10_ms\":{p10:.4},\"p90_ms\":{p90:.4},\"steps\":{}}}",
        serde_json::to_string(&args.model)?,
        args.depth,
        args.steps,
    );
    println!("{line}");
    Ok(())
}

//! Wall time of one GPT training step (forward, mean cross-entropy, backward, AdamW update) for
//! ONE configuration, printed as one JSON line — the dgating half of the side-by-side timing
//! against PyTorch (`dgating-bench/reference/torch_gpt_step.py` is the twin; same arguments,
//! same JSON line).
//!
//! ```sh
//! cargo build --release -p dgating-bench --example gpt_step_time
//! target/release/examples/gpt_step_time --n-layer 4 --n-head 8 --n-embd 256 --block 128 --batch 16
//! ```
//!
//! The model is `dgating_nn::model::Gpt` at nanoGPT's shape (`GptConfig::nano`, vocabulary
//! `--vocab`, default 83 = Moby Dick character-level), the step the one of `dgating lm train`
//! for a dense run: `cross_entropy(forward_train(x, 0))`, `backward`, AdamW `(0.9, 0.95, 1e-8)`
//! at `lr = 1e-3` without decay. `--depth D` gates heads and MLP neurons (the recipe's two
//! optimizers: AdamW for the rest, SGD momentum 0.9 for the gates; no PyTorch twin — it shows
//! the cost of gating). Synthetic batch: `x.flat[i] = (i·7919) mod vocab`, `y.flat[i] =
//! (i·7919 + 1) mod vocab`. Other arguments: `--warmup N` (5), `--steps N` (20), `--threads N`
//! (sets `RAYON_NUM_THREADS`).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use dgating_nn::layers::GateInit;
use dgating_nn::lm::train::cross_entropy;
use dgating_nn::model::{Gpt, GptConfig};
use dgating_nn::optim::{Optimizer, OptimizerKind};
use dgating_nn::{Model, ParamRole, ParamStore};

const USAGE: &str = "usage: gpt_step_time [--n-layer 4] [--n-head 8] [--n-embd 256] [--block 128] [--batch 16] \
                     [--vocab 83] [--depth 0|D] [--warmup 5] [--steps 20] [--threads N]";

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn sub(store: &ParamStore, keep: impl Fn(ParamRole) -> bool) -> Result<ParamStore, Box<dyn std::error::Error>> {
    let mut out = ParamStore::new();
    for p in store.iter().filter(|p| keep(p.role)) {
        out.push(p.name.clone(), p.var.clone(), p.role)?;
    }
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut v = [4usize, 8, 256, 128, 16, 83, 0, 5, 20, 0];
    let names = [
        "--n-layer",
        "--n-head",
        "--n-embd",
        "--block",
        "--batch",
        "--vocab",
        "--depth",
        "--warmup",
        "--steps",
        "--threads",
    ];
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(i) = names.iter().position(|n| *n == flag) else {
            eprintln!("{USAGE}");
            std::process::exit(2);
        };
        v[i] = it.next().ok_or(USAGE)?.parse().map_err(|e| format!("{flag}: {e}"))?;
    }
    let [n_layer, n_head, n_embd, block, batch, vocab, depth, warmup, steps, threads] = v;
    if steps == 0 || batch == 0 || vocab == 0 || depth == 1 {
        return Err("--steps, --batch, --vocab must be >= 1 and --depth 0 or >= 2".into());
    }
    if threads > 0 {
        // SAFETY: no other thread exists yet (only argument parsing ran).
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    // SAFETY: before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let threads: usize = std::env::var("RAYON_NUM_THREADS")?.parse()?;

    let dev = Device::Cpu;
    let ids: Vec<u32> = (0..batch * block).map(|i| ((i * 7919) % vocab) as u32).collect();
    let next: Vec<u32> = (0..batch * block).map(|i| ((i * 7919 + 1) % vocab) as u32).collect();
    let x = Tensor::from_vec(ids, (batch, block), &dev)?;
    let y = Tensor::from_vec(next, (batch, block), &dev)?;
    let config = GptConfig::nano(vocab, block, n_layer, n_head, n_embd)?;
    let model = Gpt::new(config, (depth > 0).then_some(depth), GateInit::Balanced, 0, DType::F32, &dev)?;
    let store = model.params()?;
    let adam = OptimizerKind::AdamW { beta1: 0.9, beta2: 0.95, eps: 1e-8 };
    let mut main = Optimizer::new(adam, &sub(&store, |r| r != ParamRole::Gate)?, 0.0, 0.0)?;
    let mut gates = if depth > 0 {
        Some(Optimizer::new(OptimizerKind::Sgd { momentum: 0.9 }, &sub(&store, |r| r == ParamRole::Gate)?, 0.0, 0.0)?)
    } else {
        None
    };
    let mut times = Vec::with_capacity(steps);
    for step in 0..warmup + steps {
        let t0 = Instant::now();
        let loss = cross_entropy(&model.forward_train(&x, 0.0)?, &y)?;
        let grads = loss.backward()?;
        main.step(&grads, 1e-3)?;
        if let Some(g) = &mut gates {
            g.step(&grads, 0.1)?;
        }
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if step >= warmup {
            times.push(ms);
        }
        if step == 0 || step + 1 == warmup + steps {
            let l = loss.to_scalar::<f32>()?;
            if !l.is_finite() {
                return Err(format!("non-finite loss {l} at step {step}").into());
            }
            eprintln!("step {step}: loss {l:.6}");
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"impl\":\"dgating\",\"model\":\"gpt-{n_layer}x{n_head}-{n_embd}\",\"batch\":{batch},\"block\":{block},\
         \"depth\":{depth},\"threads\":{threads},\"median_ms\":{:.4},\"p10_ms\":{:.4},\"p90_ms\":{:.4},\"steps\":{steps}}}",
        percentile(&times, 0.5),
        percentile(&times, 0.1),
        percentile(&times, 0.9)
    );
    Ok(())
}

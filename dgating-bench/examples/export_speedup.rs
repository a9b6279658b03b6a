//! Inference speed-up of compacted exports over the unpruned export of the same architecture,
//! for any architecture `dgating prune` writes (MLPs, conv nets, ResNets): the models run in
//! turn, a block of forwards each per round (the first call of a block is not timed), so load
//! changes on a shared machine hit all alike; the speed-up is the median over rounds of
//! `reference time / compacted time`, printed next to the FLOP ratio and their quotient (the
//! issue's bar for conv nets: speed-up ≥ 0.8 × FLOP ratio at batch 1 and 64).
//!
//! ```sh
//! cargo build --release -p dgating-bench --example export_speedup
//! RAYON_NUM_THREADS=1 target/release/examples/export_speedup REFERENCE_EXPORT SMALL_EXPORT... \
//!     [--batches 1,64] [--rounds 40] [--block-ms 50]
//! ```
//!
//! `REFERENCE_EXPORT` is the unpruned model as an export (e.g. `dgating prune` of a dense run,
//! which removes nothing), so every model runs through the same inference engine. Inputs are
//! random rows of the width each export's model takes (its kept inputs), run by the
//! inference path the export is served with (`Compacted::forward_reduced`: eval mode).

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use dgating_prune::{Compacted, Cost, import};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn width(c: &Compacted) -> usize {
    c.architecture().input_dim()
}

fn main() -> Res<()> {
    // SAFETY: first thing in the process, before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let (mut dirs, mut batches, mut rounds, mut block_ms) = (Vec::<PathBuf>::new(), vec![1usize, 64], 40usize, 50.0);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--batches" => batches = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--rounds" => rounds = value()?.parse()?,
            "--block-ms" => block_ms = value()?.parse()?,
            _ if a.starts_with("--") => return Err(format!("unknown flag {a}").into()),
            _ => dirs.push(a.into()),
        }
    }
    if dirs.len() < 2 {
        return Err("usage: export_speedup REFERENCE_EXPORT SMALL_EXPORT... [--batches 1,64] [--rounds 40]".into());
    }
    let dev = Device::Cpu;
    let models: Vec<(PathBuf, Compacted, usize)> = dirs
        .into_iter()
        .map(|d| -> Res<_> {
            let c = import(&d)?;
            let flops = Cost::of(c.architecture())?.flops_per_sample;
            Ok((d, c, flops))
        })
        .collect::<Res<_>>()?;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    println!("threads: {threads}; {rounds} rounds, blocks of about {block_ms} ms");
    for batch in batches {
        let inputs: Vec<Tensor> = models
            .iter()
            .map(|(_, c, _)| Tensor::randn(0f32, 1.0, (batch, width(c)), &dev))
            .collect::<Result<_, _>>()?;
        // Calls per block from one untimed call of each model, so that every block lasts
        // about `block_ms`.
        let per_call: Vec<f64> = models
            .iter()
            .zip(&inputs)
            .map(|((_, c, _), x)| -> Res<f64> {
                c.forward_reduced(x)?;
                let t = Instant::now();
                c.forward_reduced(x)?;
                Ok(t.elapsed().as_secs_f64())
            })
            .collect::<Res<_>>()?;
        let calls: Vec<usize> =
            per_call.iter().map(|s| ((block_ms / 1e3 / s.max(1e-7)) as usize).clamp(1, 10_000)).collect();
        let mut times = vec![Vec::with_capacity(rounds); models.len()];
        for round in 0..rounds + rounds / 10 {
            for (k, ((_, c, _), x)) in models.iter().zip(&inputs).enumerate() {
                c.forward_reduced(x)?;
                let t = Instant::now();
                for _ in 0..calls[k] {
                    c.forward_reduced(x)?;
                }
                let s = t.elapsed().as_secs_f64() / calls[k] as f64;
                if round >= rounds / 10 {
                    times[k].push(s);
                }
            }
        }
        let (ref_dir, _, ref_flops) = &models[0];
        println!("batch {batch}: reference {} {:.1} µs/forward", ref_dir.display(), median(times[0].clone()) * 1e6);
        for ((dir, _, flops), t) in models.iter().zip(&times).skip(1) {
            let speedup = median(times[0].iter().zip(t).map(|(r, s)| r / s).collect());
            let flop_ratio = *ref_flops as f64 / *flops as f64;
            println!(
                "  {}: {:.1} µs, speed-up {speedup:.2}x, FLOP ratio {flop_ratio:.2}x, speed-up / FLOP ratio {:.2}",
                dir.display(),
                median(t.clone()) * 1e6,
                speedup / flop_ratio
            );
        }
    }
    Ok(())
}

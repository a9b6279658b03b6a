//! Inference of compacted vs dense LeNet-300-100 at 50%, 75% and 90% hidden-neuron sparsity,
//! batch 1 and 256: `cargo bench -p dgating-bench --bench inference`. The FLOP ratio of each
//! case is printed once so the speed-up can be compared with it. `compact-0` is the unpruned model
//! in the compacted inference engine (the baseline of `examples/inference_speedup.rs`).

use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dgating_core::Threshold;
use dgating_nn::{Mlp, MlpConfig, Model};
use dgating_prune::{Cost, PrunePlan, compact};

/// Keeps the first `(1 − sparsity)` fraction of each hidden layer (which neurons is irrelevant
/// for speed).
fn masked_model(sparsity: f64) -> Mlp {
    let model = Mlp::new(MlpConfig::lenet_300_100(), Some(3), 0, DType::F32, &Device::Cpu).expect("model");
    for layer in model.layers().iter().filter(|l| l.gate_set().is_some()) {
        let n = layer.num_groups();
        let keep = ((n as f64) * (1.0 - sparsity)).round() as usize;
        let mask: Vec<bool> = (0..n).map(|i| i < keep).collect();
        layer.drop_groups(&mask).expect("mask");
    }
    model
}

fn inference(c: &mut Criterion) {
    // SAFETY: first thing in the process, before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let dense = Mlp::new(MlpConfig::lenet_300_100(), None, 0, DType::F32, &Device::Cpu).expect("dense");
    let mut group = c.benchmark_group("inference/lenet-300-100/f32");
    for batch in [1usize, 256] {
        let x = Tensor::ones((batch, 784), DType::F32, &Device::Cpu).expect("input");
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new(format!("b{batch}"), "dense"), &x, |b, x| {
            b.iter(|| dense.forward(black_box(x)).expect("forward"))
        });
        for sparsity in [0.0, 0.5, 0.75, 0.9] {
            let model = masked_model(sparsity);
            let plan = PrunePlan::new(&model, &Threshold::absolute(0.0).expect("threshold")).expect("plan");
            let small = compact(&model, &plan).expect("compact");
            if batch == 1 {
                let before = Cost::of(&model.architecture().expect("a preset")).expect("cost").flops_per_sample as f64;
                let after = Cost::of(small.architecture()).expect("cost").flops_per_sample as f64;
                eprintln!("sparsity {sparsity}: sizes {:?}, FLOP ratio {:.2}x", plan.sizes_after(), before / after);
            }
            group.bench_with_input(BenchmarkId::new(format!("b{batch}"), format!("compact-{sparsity}")), &x, |b, x| {
                b.iter(|| small.forward_full(black_box(x)).expect("forward"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);

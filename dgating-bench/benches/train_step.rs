//! One training step (forward, cross-entropy, backward, SGD-momentum update) of
//! LeNet-300-100 at batch 128, dense vs D-Gated hidden neurons:
//! `cargo bench -p dgating-bench --bench train_step`.
//! The gating overhead is the ratio of the `dgating/D3` and `dense` times.

use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dgating_nn::loss::{cross_entropy, one_hot};
use dgating_nn::optim::{Optimizer, OptimizerKind};
use dgating_nn::{Mlp, MlpConfig, Model};

const BATCH: usize = 128;

fn step_bench(c: &mut Criterion) {
    // Same process settings as the `dgating` binary.
    // SAFETY: first thing in the process, before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let dev = Device::Cpu;
    let x: Vec<f32> = (0..BATCH * 784).map(|i| ((i * 7919) % 256) as f32 / 255.0).collect();
    let x = Tensor::from_vec(x, (BATCH, 784), &dev).expect("batch");
    let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % 10).collect();
    let y = one_hot(&labels, 10, DType::F32, &dev).expect("labels");
    let mut group = c.benchmark_group("train_step/lenet-300-100/f32/b128");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, depth) in [("dense", None), ("dgating/D3", Some(3))] {
        let model = Mlp::new(MlpConfig::lenet_300_100(), depth, 0, DType::F32, &dev).expect("model");
        let mut opt = Optimizer::new(OptimizerKind::Sgd { momentum: 0.9 }, &model.params().expect("params"), 1e-4, 0.0)
            .expect("optimizer");
        group.bench_function(name, |b| {
            b.iter(|| {
                let loss = cross_entropy(&model.forward(black_box(&x)).expect("fwd"), &y).expect("loss");
                let grads = loss.backward().expect("bwd");
                opt.step(&grads, 0.01).expect("step");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, step_bench);
criterion_main!(benches);

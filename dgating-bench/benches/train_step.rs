//! One training step (forward, cross-entropy, backward, SGD-momentum update), dense vs D-Gated
//! hidden neurons, for LeNet-300-100 at batch 128 and MLP 784-512-512-10 at batch 256:
//! `cargo bench -p dgating-bench --bench train_step`.
//! The gating overhead is the ratio of the `dgating/D3` and `dense` times; the PyTorch side of
//! the comparison is `dgating-bench/reference/` (docs/PERFORMANCE.md).

use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dgating_nn::loss::{cross_entropy, one_hot};
use dgating_nn::optim::{Optimizer, OptimizerKind};
use dgating_nn::{Mlp, MlpConfig, Model};

/// The benchmarked networks: name, architecture, batch size.
fn networks() -> [(&'static str, MlpConfig, usize); 2] {
    let mlp512 =
        MlpConfig { input_dim: 784, hidden: vec![512, 512], output_dim: 10, group_inputs: false, group_hidden: true };
    [("lenet-300-100/f32/b128", MlpConfig::lenet_300_100(), 128), ("mlp-784-512-512-10/f32/b256", mlp512, 256)]
}

fn step_bench(c: &mut Criterion) {
    // Same process settings as the `dgating` binary.
    // SAFETY: first thing in the process, before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let dev = Device::Cpu;
    for (net, config, batch) in networks() {
        let x: Vec<f32> = (0..batch * 784).map(|i| ((i * 7919) % 256) as f32 / 255.0).collect();
        let x = Tensor::from_vec(x, (batch, 784), &dev).expect("batch");
        let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
        let y = one_hot(&labels, 10, DType::F32, &dev).expect("labels");
        let mut group = c.benchmark_group(format!("train_step/{net}"));
        group.throughput(Throughput::Elements(batch as u64));
        for (name, depth) in [("dense", None), ("dgating/D3", Some(3))] {
            let model = Mlp::new(config.clone(), depth, 0, DType::F32, &dev).expect("model");
            let mut opt =
                Optimizer::new(OptimizerKind::Sgd { momentum: 0.9 }, &model.params().expect("params"), 1e-4, 0.0)
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
}

criterion_group!(benches, step_bench);
criterion_main!(benches);

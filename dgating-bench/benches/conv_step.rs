//! One conv-net training step (training-mode forward, cross-entropy, backward, SGD-momentum
//! update), dense vs D-Gated (D = 3), for LeNet-5 at 28×28×1, batch 128, and VGG-11 ×0.25 at
//! 32×32×3, batch 64: `cargo bench -p dgating-bench --bench conv_step`. The PyTorch side is
//! `dgating-bench/reference/torch_conv_step.py` (docs/PERFORMANCE.md, "Conv nets").

use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dgating_nn::Model;
use dgating_nn::layers::GateInit;
use dgating_nn::loss::{cross_entropy, one_hot};
use dgating_nn::model::{Architecture, ImageShape};
use dgating_nn::optim::{Optimizer, OptimizerKind};

fn step_bench(c: &mut Criterion) {
    // SAFETY: first thing in the process, before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let dev = Device::Cpu;
    let nets = [
        ("lenet5/28x28x1/f32/b128", "lenet5", 1.0, ImageShape::new(1, 28, 28), 128),
        ("vgg11x0.25/32x32x3/f32/b64", "vgg11", 0.25, ImageShape::new(3, 32, 32), 64),
    ];
    for (label, preset, width, shape, batch) in nets {
        let f = shape.features();
        let x: Vec<f32> = (0..batch * f).map(|i| ((i * 7919) % 256) as f32 / 255.0).collect();
        let x = Tensor::from_vec(x, (batch, f), &dev).expect("batch");
        let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
        let y = one_hot(&labels, 10, DType::F32, &dev).expect("labels");
        let arch = Architecture::conv_preset(preset, shape, 10, width).expect("preset");
        let mut group = c.benchmark_group(format!("conv_step/{label}"));
        group.throughput(Throughput::Elements(batch as u64));
        group.sample_size(10);
        for (name, depth) in [("dense", None), ("dgating/D3", Some(3))] {
            let model = arch.build(depth, GateInit::Ones, 0, DType::F32, &dev).expect("model");
            let params = model.params().expect("params");
            let mut opt = Optimizer::new(OptimizerKind::Sgd { momentum: 0.9 }, &params, 1e-4, 0.0).expect("optimizer");
            group.bench_function(name, |b| {
                b.iter(|| {
                    let loss = cross_entropy(&model.forward_train(black_box(&x)).expect("fwd"), &y).expect("loss");
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

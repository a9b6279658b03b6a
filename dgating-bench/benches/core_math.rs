//! Criterion benchmarks of the framework-free math (`cargo bench -p dgating-bench --bench core_math`).
//! Names say the operation, element type and shape; data is built outside the timed closures.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dgating_core::{GateMatrix, GroupLayout, balance, compose, compose_backward, prox_groups};

fn weights(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 250.0).collect()
}

fn factor_ops(c: &mut Criterion) {
    // LeNet-300-100's first layer with hidden neurons as groups (rows of a [300, 784] W).
    let (rows, cols) = (300, 784);
    let layout = GroupLayout::rows("fc1.weight", rows, cols).expect("valid layout");
    let w = weights(rows * cols);
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements((rows * cols) as u64));
    for depth in [2usize, 3, 4] {
        let gates = GateMatrix::filled(rows, depth - 1, 1.1f32).expect("valid gates");
        group.bench_with_input(BenchmarkId::new("compose/f32/300x784", format!("D{depth}")), &depth, |b, _| {
            b.iter(|| compose(&layout, &[black_box(&w)], &gates))
        });
        group.bench_with_input(
            BenchmarkId::new("compose_backward/f32/300x784", format!("D{depth}")),
            &depth,
            |b, _| b.iter(|| compose_backward(&layout, &[black_box(&w)], &gates, &[black_box(&w)])),
        );
        group.bench_with_input(BenchmarkId::new("balance/f32/300x784", format!("D{depth}")), &depth, |b, &d| {
            b.iter(|| balance(&layout, &[black_box(&w)], d))
        });
        group.bench_with_input(BenchmarkId::new("prox/f32/300x784", format!("D{depth}")), &depth, |b, &d| {
            b.iter(|| prox_groups(&layout, &[black_box(&w)], 0.5, d))
        });
    }
    group.finish();
}

criterion_group!(benches, factor_ops);
criterion_main!(benches);

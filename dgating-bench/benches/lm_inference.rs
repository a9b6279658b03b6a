//! Generation and scoring of a compacted vs the dense GPT: `cargo bench -p dgating-bench --bench
//! lm_inference`. The model is nanoGPT's shape at 4 blocks × 8 heads, `n_embd` 256, context 128,
//! vocabulary 83 (Moby Dick, character-level); the compacted ones keep the first 4 of 8 heads
//! per block (`heads50`) and also the first half of every MLP (`heads50-mlp50`). Which groups
//! are kept is irrelevant for speed. Greedy generation of 32 tokens after an 8-token prompt at
//! batch 1 with the KV cache (throughput in tokens), and scoring 16 windows of 128 tokens (one
//! batch of 16).

use std::collections::BTreeMap;
use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dgating_core::Threshold;
use dgating_nn::layers::GateInit;
use dgating_nn::lm::run::detached;
use dgating_nn::lm::{Sampling, generate, score_tokens};
use dgating_nn::model::{Gpt, GptConfig};
use dgating_nn::{Architecture, Model};
use dgating_prune::{PrunePlan, compact};

fn variant(config: &GptConfig, keep_mlp: f64) -> (GptConfig, BTreeMap<String, Tensor>) {
    let model = Gpt::new(config.clone(), Some(3), GateInit::Balanced, 0, DType::F32, &Device::Cpu).expect("model");
    let store = model.params().expect("params");
    for set in model.gate_sets() {
        let n = set.group_norms(&store).expect("norms").len();
        let keep = if set.dim().ends_with(".heads") { n / 2 } else { ((n as f64) * keep_mlp) as usize };
        set.drop_groups(&store, &(0..n).map(|i| i < keep).collect::<Vec<_>>()).expect("mask");
    }
    let small = compact(&model, &PrunePlan::new(&model, &Threshold::absolute(0.0).expect("t")).expect("plan"))
        .expect("compact");
    let Architecture::Gpt(c) = small.architecture().clone() else { unreachable!("a GPT compacts to a GPT") };
    (c, small.tensors().expect("tensors"))
}

fn lm_inference(c: &mut Criterion) {
    // SAFETY: first thing in the process, before any other thread exists.
    unsafe { dgating_nn::runtime::configure() };
    let config = GptConfig::nano(83, 128, 4, 8, 256).expect("config");
    let dense = Gpt::new(config.clone(), None, GateInit::Ones, 0, DType::F32, &Device::Cpu).expect("dense");
    let cases = [
        ("dense", (config.clone(), detached(&dense).expect("weights"))),
        ("heads50", variant(&config, 1.0)),
        ("heads50-mlp50", variant(&config, 0.5)),
    ];
    let prompt: Vec<u32> = (0..8).map(|i| (i * 7) % 83).collect();
    let text: Vec<u32> = (0..16 * 128 + 1).map(|i| ((i * 7919) % 83) as u32).collect();
    let mut group = c.benchmark_group("lm/gpt-4x8-256");
    group.sample_size(10);
    group.throughput(Throughput::Elements(32));
    for (name, (cfg, w)) in &cases {
        group.bench_with_input(BenchmarkId::new("generate-b1", name), w, |b, w| {
            b.iter(|| generate(cfg, w, black_box(&prompt), 32, &Sampling::greedy()).expect("generate"))
        });
    }
    group.throughput(Throughput::Elements(16 * 128));
    for (name, (cfg, w)) in &cases {
        group.bench_with_input(BenchmarkId::new("score-b16", name), w, |b, w| {
            b.iter(|| score_tokens(cfg, w, black_box(&text), 16).expect("score"))
        });
    }
    group.finish();
}

criterion_group!(benches, lm_inference);
criterion_main!(benches);

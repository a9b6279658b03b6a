//! A second architecture that MLP-shaped code cannot handle: a residual MLP whose stream
//! width is shared by the input projection, every block's `fc2` and the head, with skip
//! connections. It trains, prunes and exports exactly through the generic path (dgating-prune
//! has no code for it).

mod common;

use common::{bits, inputs, train_run};
use dgating_core::{ReadOut, Threshold};
use dgating_nn::layers::GateInit;
use dgating_nn::{Model, ResidualMlp, ResidualMlpConfig};
use dgating_prune::{PrunePlan, compact, import, prune_run, verify};

fn model(depth: usize, seed: u64) -> ResidualMlp {
    let cfg = ResidualMlpConfig {
        input_dim: 6,
        width: 8,
        blocks: vec![5, 4],
        output_dim: 3,
        group_stream: true,
        group_hidden: true,
    };
    ResidualMlp::new(cfg, Some(depth), GateInit::Balanced, seed, candle_core::DType::F32, &candle_core::Device::Cpu)
        .unwrap()
}

/// The stream is one gate set over the rows of every layer that writes it: its layout has
/// the input projection's and both `fc2`s' rows and biases, and a stream channel's removal cuts
/// the columns of both `fc1`s and the head too.
#[test]
fn the_stream_is_one_gate_set_over_every_writer() {
    let m = model(3, 1);
    let sets = m.gate_sets();
    let dims: Vec<&str> = sets.iter().map(|s| s.dim()).collect();
    assert_eq!(dims, ["stream", "blocks.0.hidden", "blocks.1.hidden"]);
    let members: Vec<&str> = sets[0].layout().members().iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        members,
        [
            "input.weight",
            "input.bias",
            "blocks.0.fc2.weight",
            "blocks.0.fc2.bias",
            "blocks.1.fc2.weight",
            "blocks.1.fc2.bias"
        ]
    );
    let s = m.structure().unwrap();
    let readers: Vec<&str> =
        s.dim("stream").unwrap().slices.iter().filter(|s| !s.group).map(|s| s.tensor.as_str()).collect();
    assert_eq!(readers, ["blocks.0.fc1.weight", "blocks.1.fc1.weight", "head.weight"]);
    // One gate row per channel, registered once.
    let store = m.params().unwrap();
    assert_eq!(store.get("stream.gates").unwrap().var.dims(), &[8, 2]);
    assert_eq!(store.iter().filter(|p| p.name.ends_with(".gates")).count(), 3);
}

/// A stream channel zero in *some* writers is still alive (the others write it); zero in all,
/// it is removed with its readers' columns, and the compacted model is the masked one.
#[test]
fn a_stream_channel_dies_only_when_every_writer_is_zero() {
    let m = model(2, 5);
    let store = m.params().unwrap();
    // Zero channel 3 in the input projection only (ω rows): the fc2s still write it.
    let w = &store.get("input.weight").unwrap().var;
    let mut rows = w.as_tensor().to_vec2::<f32>().unwrap();
    rows[3].iter_mut().for_each(|v| *v = 0.0);
    w.set(&candle_core::Tensor::new(rows, &candle_core::Device::Cpu).unwrap()).unwrap();
    let b = &store.get("input.bias").unwrap().var;
    let mut bias = b.as_tensor().to_vec1::<f32>().unwrap();
    bias[3] = 0.0;
    b.set(&candle_core::Tensor::new(bias, &candle_core::Device::Cpu).unwrap()).unwrap();
    let plan = PrunePlan::new(&m, &Threshold::absolute(0.0).unwrap()).unwrap();
    assert!(!plan.prunes(), "channel 3 is still written by the blocks");

    // Gate channels 1 and 3 off (the whole group) and two hidden neurons of block 1.
    let keep: Vec<bool> = (0..8).map(|i| i != 1 && i != 3).collect();
    m.gate_sets()[0].drop_groups(&store, &keep).unwrap();
    m.gate_sets()[2].drop_groups(&store, &[true, false, true, false]).unwrap();
    let plan = PrunePlan::new(&m, &Threshold::absolute(0.0).unwrap()).unwrap();
    let c = compact(&m, &plan).unwrap();
    let sizes = c.sizes().unwrap();
    assert_eq!((sizes["stream"], sizes["blocks.0.hidden"], sizes["blocks.1.hidden"]), (6, 5, 2));
    assert_eq!(c.config.kept("stream"), Some(&[0, 2, 4, 5, 6, 7][..]));
    let t = c.tensors().unwrap();
    assert_eq!(t["head.weight"].dims(), &[3, 6]);
    assert_eq!(t["blocks.1.fc2.weight"].dims(), &[6, 2]);
    let x = inputs(32, 6, 2);
    let v = verify(&m, &c, &x).unwrap();
    assert!(v.max_rel <= 1e-5, "{v:?}");
    let y = c.forward_full(&x).unwrap();
    let diff = (y - m.forward(&x).unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff <= 1e-5, "the removed groups were exactly zero: {diff}");
}

/// End to end: `residual-mlp` trained with D-Gating on wine, pruned by the default read-out,
/// exported, reloaded: the reloaded model reproduces the masked gated model.
#[test]
fn a_trained_residual_run_prunes_and_exports_exactly() {
    let run = tempfile::tempdir().unwrap();
    train_run("residual-mlp", "wine", 3, 0.015, 40, run.path());
    let out = tempfile::tempdir().unwrap();
    let report = prune_run(run.path(), &ReadOut::default(), out.path(), false).unwrap();
    assert!(report.verification.max_rel <= 1e-5, "{:?}", report.verification);
    assert!(report.after.params < report.before.params, "{report:?}");
    assert!(report.after.sizes["stream"] < 32 || report.after.sizes["blocks.0.hidden"] < 32, "{report:?}");
    let (ga, ca) = (report.gated_eval.accuracy.unwrap(), report.compact_eval.accuracy.unwrap());
    assert!((ga - ca).abs() <= 0.02, "gated {ga} vs compacted {ca}");

    let loaded = import(out.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(json["architecture"]["type"], "residual_mlp");
    let (_, gated) = dgating_nn::train::run::load_run_model(run.path()).unwrap();
    let x = inputs(40, 13, 9);
    let v = verify(&gated, &loaded, &x).unwrap();
    assert!(v.max_rel <= 1e-5, "{v:?}");
    let again = import(out.path()).unwrap();
    assert_eq!(bits(&again.forward_full(&x).unwrap()), bits(&loaded.forward_full(&x).unwrap()));
}

/// The baselines work on gate sets too: magnitude pruning of a residual MLP removes half of
/// every gate set (the stream's groups span four layers, zeroed together) and the exact zeros
/// prune away with a zero threshold; prox gives exact zeros the same way.
#[test]
fn baselines_prune_a_residual_mlp_through_the_same_path() {
    let mut cfg = dgating_nn::train::TrainConfig::new(
        dgating_nn::train::Mode::Magnitude,
        dgating_core::GateConfig::new(2, 0.0).unwrap(),
    );
    (cfg.epochs, cfg.finetune_epochs, cfg.batch_size, cfg.lr, cfg.target_sparsity) = (4, 2, 16, 0.05, 0.5);
    let run = tempfile::tempdir().unwrap();
    let data = dgating_nn::train::DataSpec::new("wine", None);
    dgating_nn::train::train("residual-mlp", cfg, data, run.path(), &mut |_| {}, &mut |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let report = prune_run(run.path(), &Threshold::absolute(0.0).unwrap().into(), out.path(), false).unwrap();
    let s = &report.after.sizes;
    assert_eq!((s["stream"], s["blocks.0.hidden"], s["blocks.1.hidden"], s["inputs"]), (16, 16, 16, 13), "{s:?}");
    assert_eq!(
        report.verification.unmasked_max_abs, report.verification.max_abs,
        "the removed groups were exact zeros"
    );
    assert!(report.verification.max_rel <= 1e-5, "{:?}", report.verification);

    let mut cfg = dgating_nn::train::TrainConfig::new(
        dgating_nn::train::Mode::Prox,
        dgating_core::GateConfig::new(2, 0.12).unwrap(),
    );
    (cfg.epochs, cfg.batch_size, cfg.lr) = (20, 16, 0.05);
    let run = tempfile::tempdir().unwrap();
    let data = dgating_nn::train::DataSpec::new("wine", None);
    dgating_nn::train::train("residual-mlp", cfg, data, run.path(), &mut |_| {}, &mut |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let report = prune_run(run.path(), &Threshold::absolute(0.0).unwrap().into(), out.path(), false).unwrap();
    assert!(report.after.params < report.before.params, "prox zeroes groups exactly: {report:?}");
    assert_eq!(report.verification.unmasked_max_abs, report.verification.max_abs);
    assert!(report.verification.max_rel <= 1e-5, "{:?}", report.verification);
}

/// A model that records the largest batch it was asked to compute at once.
struct BatchSpy {
    inner: ResidualMlp,
    largest: std::cell::Cell<usize>,
}

impl Model for BatchSpy {
    fn forward(&self, x: &candle_core::Tensor) -> dgating_nn::Result<candle_core::Tensor> {
        self.largest.set(self.largest.get().max(x.dims()[0]));
        self.inner.forward(x)
    }
    fn params(&self) -> dgating_nn::Result<dgating_nn::ParamStore> {
        self.inner.params()
    }
    fn gate_sets(&self) -> Vec<dgating_nn::GateSet> {
        self.inner.gate_sets()
    }
    fn structure(&self) -> dgating_nn::Result<dgating_core::Structure> {
        self.inner.structure()
    }
    fn architecture(&self) -> Option<dgating_nn::Architecture> {
        self.inner.architecture()
    }
}

/// Verification and scoring run a large set in chunks: a forward through variables keeps its
/// whole graph alive, and one forward over the 10,000 held-out rows of Fashion-MNIST held 16 GB
/// for a gated ResNet-20 ×0.5 before `verify` was chunked. The chunked comparison covers every
/// row (a removed channel disagreeing only in the last, partial chunk is caught).
#[test]
fn verification_and_scoring_compute_in_chunks_over_every_row() {
    use dgating_nn::train::EVAL_CHUNK_ROWS;
    let spy = BatchSpy { inner: model(2, 5), largest: std::cell::Cell::new(0) };
    let store = spy.params().unwrap();
    let keep: Vec<bool> = (0..8).map(|i| i != 1 && i != 3).collect();
    spy.gate_sets()[0].drop_groups(&store, &keep).unwrap();
    let plan = PrunePlan::new(&spy, &Threshold::absolute(0.0).unwrap()).unwrap();
    let c = compact(&spy, &plan).unwrap();
    let rows = 2 * EVAL_CHUNK_ROWS + 7;
    let x = inputs(rows, 6, 3);
    let v = verify(&spy, &c, &x).unwrap();
    assert_eq!(v.samples, rows);
    assert!(v.max_rel <= 1e-5, "{v:?}");
    assert!(spy.largest.get() <= EVAL_CHUNK_ROWS, "a forward of {} rows", spy.largest.get());

    // Switch channel 1 back on in the gated model (its gates to 1): the masked reference and
    // the compacted model still agree, the unmasked gated model does not, by an amount that
    // grows with the input. A huge last row (alone in the last, partial chunk) must dominate.
    let gates = &store.get("stream.gates").unwrap().var;
    let mut g = gates.as_tensor().to_vec2::<f32>().unwrap();
    g[1].iter_mut().for_each(|v| *v = 1.0);
    gates.set(&candle_core::Tensor::new(g, &candle_core::Device::Cpu).unwrap()).unwrap();
    let mut data = x.to_vec2::<f32>().unwrap();
    data[rows - 1].iter_mut().for_each(|v| *v *= 1e3);
    let x2 = candle_core::Tensor::new(data, &candle_core::Device::Cpu).unwrap();
    let all = verify(&spy, &c, &x2).unwrap();
    let first = verify(&spy, &c, &x2.narrow(0, 0, EVAL_CHUNK_ROWS).unwrap()).unwrap();
    assert!(all.max_rel <= 1e-5, "{all:?}");
    assert!(all.unmasked_max_abs > 10.0 * first.unmasked_max_abs, "the last row must count: {all:?} vs {first:?}");

    spy.largest.set(0);
    let targets = dgating_nn::data::Targets::Classes {
        labels: vec![0; rows],
        num_classes: 3,
        names: (0..3).map(|k| k.to_string()).collect(),
    };
    let names = (0..6).map(|j| format!("x{j}")).collect();
    let set =
        dgating_nn::data::Dataset::new("spy", x.flatten_all().unwrap().to_vec1().unwrap(), 6, names, targets).unwrap();
    let data =
        dgating_nn::train::engine::TensorData::new(&set, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    dgating_nn::train::score(&spy, &data).unwrap();
    assert!(spy.largest.get() <= EVAL_CHUNK_ROWS, "a forward of {} rows", spy.largest.get());
}

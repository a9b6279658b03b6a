//! Behaviour pinned across the model-description refactor (issue 11): the same MLP runs give
//! the same keep-masks and compacted outputs (<= 1e-6) as the code before it, and a
//! `dgating-compact-v1` export written by that code still loads and computes the same function.
//!
//! `tests/fixtures/seam.json` and `tests/fixtures/v1-wine/` were written by this test on the
//! MLP-only code before the refactor (commit 40aea92, "test: pin MLP masks, compacted outputs
//! and a v1 export before the seam refactor", which had a `DGATING_BLESS=1` switch to write
//! them); the switch is gone, so they cannot be rewritten by the code they check.

mod common;

use std::path::{Path, PathBuf};

use common::{hidden_model, inputs, train_run};
use dgating_core::{ReadOut, Threshold};
use dgating_nn::data::load;
use dgating_nn::train::engine::{TensorData, Trainer};
use dgating_nn::train::{Mode, TrainConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Pinned {
    /// Kept input features of the trained wine run (input groups).
    wine_kept_inputs: Vec<usize>,
    /// Compacted outputs of that run on `inputs(16, 13, 5)`.
    wine_outputs: Vec<f32>,
    /// Keep-masks of the hidden-neuron groups of a trained hidden-group MLP.
    hidden_masks: Vec<Vec<bool>>,
    /// Compacted outputs of that model on `inputs(16, 13, 6)`.
    hidden_outputs: Vec<f32>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn flat(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "{what}: {x} vs {y}");
    }
}

/// A hidden-group MLP (13-16-8-3, D = 3) trained 40 epochs on wine with a λ that removes
/// neurons; its masks at a 1e-3 threshold and its compacted outputs.
fn hidden_run() -> (Vec<Vec<bool>>, Vec<f32>) {
    let model = hidden_model(13, &[16, 8], 3, 3, 17);
    let data = load("wine", None).unwrap();
    let (mut train, _) = data.shuffled_split(0.2, 3).unwrap();
    let s = dgating_nn::data::Standardizer::fit(&train).unwrap();
    s.apply(&mut train).unwrap();
    let mut cfg = TrainConfig::new(Mode::Dgating, dgating_core::GateConfig::new(3, 0.05).unwrap());
    (cfg.epochs, cfg.batch_size, cfg.lr) = (40, 16, 0.05);
    let t = TensorData::new(&train, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let mut trainer = Trainer::new(&model, cfg).unwrap();
    while !trainer.finished() {
        trainer.train_epoch(&t, &mut |_| {}).unwrap();
    }
    let plan = dgating_prune::PrunePlan::new(&model, &Threshold::absolute(1e-3).unwrap()).unwrap();
    let masks: Vec<Vec<bool>> = plan.dims.iter().filter(|d| d.grouped).map(|d| d.keep.clone()).collect();
    let c = dgating_prune::compact(&model, &plan).unwrap();
    (masks, flat(&c.forward_full(&inputs(16, 13, 6)).unwrap()))
}

#[test]
fn mlp_runs_give_the_pinned_masks_and_outputs() {
    let run = tempfile::tempdir().unwrap();
    train_run("mlp", "wine", 3, 0.2, 30, run.path());
    let out = tempfile::tempdir().unwrap();
    dgating_prune::prune_run(run.path(), &ReadOut::default(), out.path(), false).unwrap();
    let c = dgating_prune::import(out.path()).unwrap();
    let wine_kept_inputs = c.config.kept_input_indices();
    let wine_outputs = flat(&c.forward_full(&inputs(16, 13, 5)).unwrap());
    let (hidden_masks, hidden_outputs) = hidden_run();
    let now = Pinned { wine_kept_inputs, wine_outputs, hidden_masks, hidden_outputs };
    let path = fixtures().join("seam.json");
    let pinned: Pinned = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(now.wine_kept_inputs, pinned.wine_kept_inputs);
    assert!(now.wine_kept_inputs.len() < 13, "the wine run removes features: {:?}", now.wine_kept_inputs);
    close(&now.wine_outputs, &pinned.wine_outputs, "wine outputs");
    assert_eq!(now.hidden_masks, pinned.hidden_masks);
    assert!(now.hidden_masks.iter().flatten().any(|k| !k), "the hidden run removes neurons");
    close(&now.hidden_outputs, &pinned.hidden_outputs, "hidden outputs");
}

/// The v1 export of the code before the refactor loads and computes the pinned outputs.
#[test]
fn a_v1_export_still_loads() {
    let c = dgating_prune::import(&fixtures().join("v1-wine")).unwrap();
    let pinned: Pinned = serde_json::from_slice(&std::fs::read(fixtures().join("seam.json")).unwrap()).unwrap();
    close(&flat(&c.forward_full(&inputs(16, 13, 5)).unwrap()), &pinned.wine_outputs, "v1 outputs");
    assert_eq!(c.config.kept_input_indices(), pinned.wine_kept_inputs);
}

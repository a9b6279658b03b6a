//! Compaction reproduces the masked gated model: hidden-neuron groups, input-feature groups
//! (trained), the nothing-pruned and the everything-pruned cases.

mod common;

use common::{bits, hidden_model, input_model, inputs, train_run};
use dgating_core::{CutBy, ReadOut, Threshold};
use dgating_nn::Model;
use dgating_prune::{Error, PrunePlan, compact, import, prune_run, verify};

fn sizes(pairs: &[(&str, usize)]) -> std::collections::BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Hidden neurons dropped by hand in both hidden layers: the compacted model has the kept
/// widths and the same outputs as the masked gated model.
#[test]
fn hidden_groups_compact_to_the_same_function() {
    let model = hidden_model(6, &[16, 8], 3, 3, 7);
    let keep0: Vec<bool> = (0..16).map(|i| [1, 4, 5, 11, 15].contains(&i)).collect();
    let keep1: Vec<bool> = (0..8).map(|i| i == 2 || i == 6).collect();
    model.layers()[0].drop_groups(&keep0).unwrap();
    model.layers()[1].drop_groups(&keep1).unwrap();
    let plan = PrunePlan::new(&model, &Threshold::absolute(0.0).unwrap()).unwrap();
    assert_eq!(plan.sizes_after(), sizes(&[("inputs", 6), ("hidden.0", 5), ("hidden.1", 2), ("outputs", 3)]));
    // Coupling: hidden.0 cuts rows + bias of layer 0 (its groups) and columns of layer 1.
    let structure = model.structure().unwrap();
    let names: Vec<(&str, usize, bool)> =
        structure.dim("hidden.0").unwrap().slices.iter().map(|s| (s.tensor.as_str(), s.axis, s.group)).collect();
    assert_eq!(names, vec![("layers.0.weight", 0, true), ("layers.0.bias", 0, true), ("layers.1.weight", 1, false)]);
    let c = compact(&model, &plan).unwrap();
    assert_eq!(c.config.kept("hidden.0"), Some(&[1, 4, 5, 11, 15][..]));
    assert_eq!(c.config.kept("hidden.1"), Some(&[2, 6][..]));
    assert_eq!(c.config.kept_input_indices(), (0..6).collect::<Vec<_>>());
    assert_eq!(c.tensors().unwrap()["layers.1.weight"].dims(), &[2, 5]);
    let x = inputs(64, 6, 1);
    let v = verify(&model, &c, &x).unwrap();
    assert!(v.max_rel <= 1e-5, "{v:?}");
    // The groups were exactly zero, so the unmasked model agrees as well.
    assert!(v.unmasked_max_abs <= 1e-5 * (1.0 + v.max_abs), "{v:?}");
    let y = c.forward_full(&x).unwrap();
    let y_gated = model.forward(&x).unwrap();
    let diff = (y - y_gated).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff <= 1e-5, "{diff}");
}

/// A threshold that removes groups which are small but not zero: the compacted model
/// matches the *masked* model, not the original.
#[test]
fn thresholded_groups_match_the_masked_model() {
    let model = input_model(10, &[12], 2, 2, 3);
    // Shrink the gates of features 3 and 7 to 1e-4 of their size.
    let g = model.layers()[0].gates_var().unwrap();
    let scale: Vec<f32> = (0..10).map(|i| if i == 3 || i == 7 { 1e-4 } else { 1.0 }).collect();
    let s = candle_core::Tensor::from_vec(scale, (10, 1), &candle_core::Device::Cpu).unwrap();
    g.set(&g.as_tensor().broadcast_mul(&s).unwrap()).unwrap();
    let plan = PrunePlan::new(&model, &Threshold::relative(1e-2).unwrap()).unwrap();
    assert_eq!(plan.dim("inputs").unwrap().removed(), 2);
    let c = compact(&model, &plan).unwrap();
    assert_eq!(c.config.kept_input_indices(), vec![0, 1, 2, 4, 5, 6, 8, 9]);
    let x = inputs(32, 10, 2);
    let v = verify(&model, &c, &x).unwrap();
    assert!(v.max_rel <= 1e-5, "{v:?}");
    assert!(v.unmasked_max_abs > v.max_abs, "removing non-zero groups changes the unmasked outputs: {v:?}");
    let err = c.forward_reduced(&x).unwrap_err();
    assert!(matches!(err, Error::Input { expected: 8, .. }), "{err}");
}

/// The default read-out records itself: the rule and each site's cut-off reach the plan and
/// the exported config, and survive the round trip. With the floor at 0 the gap decides.
#[test]
fn read_out_decisions_are_recorded_in_plan_and_export() {
    let model = input_model(10, &[12], 2, 2, 3);
    // Shrink features 3 and 7 to 1e-4 of their size: a gap of ~1e4 in layer 0's norms.
    let g = model.layers()[0].gates_var().unwrap();
    let scale: Vec<f32> = (0..10).map(|i| if i == 3 || i == 7 { 1e-4 } else { 1.0 }).collect();
    let s = candle_core::Tensor::from_vec(scale, (10, 1), &candle_core::Device::Cpu).unwrap();
    g.set(&g.as_tensor().broadcast_mul(&s).unwrap()).unwrap();

    let plan = PrunePlan::with_read_out(&model, &ReadOut::default()).unwrap();
    assert_eq!(plan.dim("inputs").unwrap().removed(), 2);
    let d = plan.dim("inputs").unwrap().decision.unwrap();
    // The gap lies far below the 3e-2 floor: both remove the same features, the floor is the cut.
    assert_eq!(d.by, CutBy::Floor);
    let gap = d.gap.unwrap();
    assert!(gap.ratio() > 1e3 && gap.below == 2, "{gap:?}");
    assert_eq!(plan.read_out, Some(ReadOut::default()));

    let c = compact(&model, &plan).unwrap();
    let dir = tempfile::tempdir().unwrap();
    dgating_prune::export(&c, dir.path()).unwrap();
    let p = import(dir.path()).unwrap().config.provenance;
    assert_eq!(p.read_out, Some(ReadOut::default()));
    assert_eq!((p.groups[0].dim.as_str(), p.groups[0].removed, p.groups[0].decision), ("inputs", 2, Some(d)));

    // Floor 0: the gap rule alone cuts at the gap's lower edge.
    let gap_only = ReadOut::new(Threshold::absolute(0.0).unwrap(), Some(dgating_core::GapRule::default()));
    let plan = PrunePlan::with_read_out(&model, &gap_only).unwrap();
    let d = plan.dim("inputs").unwrap().decision.unwrap();
    assert_eq!((d.by, d.cutoff, plan.dim("inputs").unwrap().removed()), (CutBy::Gap, gap.lower, 2));
    // A threshold plan records the threshold as a rule without gap.
    let plan = PrunePlan::new(&model, &Threshold::relative(1e-2).unwrap()).unwrap();
    assert_eq!(plan.read_out.unwrap().gap, None);
}

/// Nothing below the threshold: the same widths, weights bit-identical to the folded gated
/// weights, and outputs equal to the gated model's up to f32 rounding (the gated forward
/// scales activations instead of weights, so the rounding order differs: 1e-6 relative).
#[test]
fn nothing_pruned_is_identical() {
    for model in [hidden_model(5, &[7, 4], 2, 2, 11), input_model(5, &[], 3, 4, 12)] {
        let plan = PrunePlan::new(&model, &Threshold::absolute(0.0).unwrap()).unwrap();
        assert!(!plan.prunes());
        let c = compact(&model, &plan).unwrap();
        assert_eq!(c.sizes().unwrap(), model.structure().unwrap().sizes());
        let tensors = c.tensors().unwrap();
        for layer in model.layers() {
            let (ew, eb) = layer.effective().unwrap();
            assert_eq!(bits(&tensors[&format!("{}.weight", layer.prefix())]), bits(&ew));
            assert_eq!(bits(&tensors[&format!("{}.bias", layer.prefix())]), bits(&eb.unwrap()));
        }
        let x = inputs(20, 5, 3);
        assert_eq!(bits(&c.forward_reduced(&x).unwrap()), bits(&c.forward_full(&x).unwrap()));
        let v = verify(&model, &c, &x).unwrap();
        assert!(v.max_rel <= 1e-6, "{v:?}");
    }
}

/// Every neuron of a hidden layer (or every input feature) removed: a clear error, not a
/// constant model.
#[test]
fn an_emptied_layer_is_refused() {
    let model = hidden_model(4, &[6, 5], 2, 2, 5);
    model.layers()[1].drop_groups(&[false; 5]).unwrap();
    let err = PrunePlan::new(&model, &Threshold::absolute(0.0).unwrap()).unwrap_err();
    assert!(matches!(&err, Error::EmptyDim { dim, groups: 5 } if dim == "hidden.1"), "{err}");
    assert!(err.to_string().contains("lower the threshold"), "{err}");

    let model = input_model(4, &[3], 2, 2, 5);
    model.layers()[0].drop_groups(&[false; 4]).unwrap();
    let err = PrunePlan::new(&model, &Threshold::absolute(0.0).unwrap()).unwrap_err();
    assert!(matches!(&err, Error::EmptyDim { dim, groups: 4 } if dim == "inputs"), "{err}");
}

/// Invalid thresholds and non-finite weights are typed errors.
#[test]
fn bad_thresholds_and_nan_weights_are_errors() {
    for (a, r) in [(-1.0, 0.0), (f64::NAN, 0.0), (0.0, f64::NAN), (0.0, 1.0), (f64::INFINITY, 0.0)] {
        let err = dgating_prune::threshold(a, r).unwrap_err();
        assert!(matches!(err, Error::Threshold { .. }), "{err}");
    }
    assert!(dgating_prune::threshold(1e-3, 0.1).is_ok());
    let model = hidden_model(3, &[4], 2, 2, 1);
    let w = model.layers()[0].weight_var();
    let nan = w.as_tensor().affine(0.0, f64::NAN).unwrap();
    w.set(&nan).unwrap();
    let err = PrunePlan::new(&model, &Threshold::absolute(0.0).unwrap()).unwrap_err();
    assert!(matches!(&err, Error::NonFinite { what } if what.contains("layers.0")), "{err}");
}

/// End to end on a trained run: wine, one hidden layer of 64, input features as groups
/// (removing a feature cuts a column of layer 0; the hidden width stays).
#[test]
fn prune_run_on_trained_wine_selects_features_and_verifies() {
    let run = tempfile::tempdir().unwrap();
    train_run("mlp", "wine", 3, 0.2, 100, run.path());
    let out = tempfile::tempdir().unwrap();
    let report = prune_run(run.path(), &ReadOut::default(), out.path(), false).unwrap();
    let kept = report.after.sizes["inputs"];
    assert!(kept < 13 && kept > 0, "{report:?}");
    assert_eq!(report.before.sizes, sizes(&[("inputs", 13), ("hidden.0", 64), ("outputs", 3)]));
    assert_eq!(report.after.sizes, sizes(&[("inputs", kept), ("hidden.0", 64), ("outputs", 3)]));
    assert_eq!(report.groups[0].removed, 13 - kept);
    assert!(report.verification.max_rel <= 1e-5, "{:?}", report.verification);
    assert!(report.after.params < report.before.params);
    assert!(report.after.flops_per_sample < report.before.flops_per_sample);
    let (ga, ca) = (report.gated_eval.accuracy.unwrap(), report.compact_eval.accuracy.unwrap());
    assert!((ga - ca).abs() <= 1e-9, "gated {ga} vs compacted {ca}");

    let loaded = import(out.path()).unwrap();
    let cfg = &loaded.config;
    assert_eq!(cfg.kept_input_indices().len(), kept);
    assert_eq!(cfg.kept_input_names().unwrap().len(), kept);
    assert_eq!(cfg.input.names.as_ref().unwrap().len(), 13);
    assert!(cfg.input.standardizer.is_some());
    assert_eq!(cfg.provenance.depth, Some(3));
    assert_eq!(cfg.provenance.lambda, Some(0.2));
    assert_eq!(cfg.provenance.mode.as_deref(), Some("dgating"));
    assert!(cfg.provenance.training.is_some());
    assert!(out.path().join("report.json").exists());

    // The reloaded model reproduces the run's masked model on its held-out data.
    let (_, model) = dgating_nn::train::run::load_run_model(run.path()).unwrap();
    let x = inputs(50, 13, 9);
    assert!(verify(&model, &loaded, &x).unwrap().max_rel <= 1e-5);

    // forward_raw = standardize, then forward_full.
    let s = cfg.input.standardizer.as_ref().unwrap();
    let raw = inputs(8, 13, 4);
    let mut rows = raw.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    s.apply_rows(&mut rows).unwrap();
    let std_x = candle_core::Tensor::from_vec(rows, (8, 13), &candle_core::Device::Cpu).unwrap();
    assert_eq!(bits(&loaded.forward_raw(&raw).unwrap()), bits(&loaded.forward_full(&std_x).unwrap()));
}

/// The pruned run's directory itself is never an output directory.
#[test]
fn prune_run_refuses_to_overwrite_the_run() {
    let run = tempfile::tempdir().unwrap();
    train_run("linear", "wine", 2, 0.1, 2, run.path());
    let err = prune_run(run.path(), &ReadOut::default(), run.path(), false).unwrap_err();
    assert!(matches!(err, Error::OutputDir { .. }), "{err}");
    assert!(dgating_nn::train::run::load_run_model(run.path()).is_ok());
}

/// An ungated baseline (prox, exact zeros) prunes through the same path: synthetic
/// regression, the 15 inactive features of 20 removed.
#[test]
fn prune_run_on_a_prox_run_removes_the_exact_zeros() {
    let run = tempfile::tempdir().unwrap();
    let mut cfg = dgating_nn::train::TrainConfig::new(
        dgating_nn::train::Mode::Prox,
        dgating_core::GateConfig::new(2, 0.1).unwrap(),
    );
    (cfg.epochs, cfg.batch_size, cfg.lr) = (30, 32, 0.02);
    let data = dgating_nn::train::DataSpec::new("synthetic", None);
    dgating_nn::train::train(
        "linear",
        cfg,
        data,
        run.path(),
        &mut |_| {},
        &mut |_| std::ops::ControlFlow::Continue(()),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let report = prune_run(run.path(), &Threshold::absolute(0.0).unwrap().into(), out.path(), false).unwrap();
    assert_eq!(report.after.sizes, sizes(&[("inputs", 5), ("outputs", 1)]));
    assert_eq!(report.verification.unmasked_max_abs, report.verification.max_abs);
    assert!(report.verification.max_rel <= 1e-5, "{:?}", report.verification);
    assert_eq!(report.compact_eval.accuracy, None);
    let c = import(out.path()).unwrap();
    assert_eq!(c.config.provenance.depth, None);
    assert_eq!(c.config.provenance.mode.as_deref(), Some("prox"));
    let (_, support) = dgating_nn::data::builtin::synthetic(&dgating_nn::data::builtin::SYNTHETIC_SPEC).unwrap();
    let truth: Vec<usize> = support.iter().enumerate().filter(|(_, s)| **s).map(|(i, _)| i).collect();
    assert_eq!(c.config.kept_input_indices(), truth);
}

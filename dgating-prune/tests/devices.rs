//! Pruning, evaluation and prediction on every device (`dgating_nn::test_on_devices!`): the
//! export written with the models on `device` is the export written on the CPU (byte for
//! byte), and the scores and predictions agree within 1e-5.

mod common;

use candle_core::Device;
use common::train_run;
use dgating_core::ReadOut;
use dgating_prune::{evaluate_dir, evaluate_dir_on, predict_dir, predict_dir_on, prune_run, prune_run_on};

fn prune_eval_predict_match_the_cpu(device: &Device) {
    let run = tempfile::tempdir().unwrap();
    train_run("mlp", "wine", 3, 0.2, 30, run.path());
    let (on_cpu, on_device) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let want = prune_run(run.path(), &ReadOut::default(), on_cpu.path(), true).unwrap();
    let got = prune_run_on(run.path(), &ReadOut::default(), on_device.path(), true, device).unwrap();
    for file in ["model.safetensors", "config.json"] {
        let read = |dir: &tempfile::TempDir| std::fs::read(dir.path().join(file)).unwrap();
        assert!(read(&on_cpu) == read(&on_device), "{file} differs between the CPU and {device:?}");
    }
    assert_eq!(got.after, want.after);
    assert!(got.verification.max_rel <= 1e-5, "{:?}", got.verification);
    assert!((got.compact_eval.loss - want.compact_eval.loss).abs() <= 1e-5 * want.compact_eval.loss.abs().max(1.0));

    for dir in [run.path(), on_cpu.path()] {
        let (a, b) = (evaluate_dir(dir, None, None).unwrap(), evaluate_dir_on(dir, None, None, device).unwrap());
        assert_eq!(a.samples, b.samples);
        assert!((a.evaluation.loss - b.evaluation.loss).abs() <= 1e-5 * a.evaluation.loss.abs().max(1.0));
        assert_eq!(a.evaluation.accuracy, b.evaluation.accuracy);
        let (a, b) = (predict_dir(dir, "wine").unwrap(), predict_dir_on(dir, "wine", device).unwrap());
        assert_eq!(a.classes, b.classes);
        for (x, y) in a.values.iter().flatten().zip(b.values.iter().flatten()) {
            assert!((x - y).abs() <= 1e-5, "{x} vs {y}");
        }
    }
}

dgating_nn::test_on_devices!(prune_eval_predict_match_the_cpu);

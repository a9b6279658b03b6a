//! The numpy reader of docs/FORMAT.md, run on real exports of both architectures: its outputs
//! equal `Compacted::forward_raw` to f32 rounding. Skips (passes with a note) when `python3`
//! with numpy is not installed.

mod common;

use std::path::Path;
use std::process::Command;

use common::{input_model, inputs};
use dgating_core::Threshold;
use dgating_nn::data::Standardizer;
use dgating_nn::layers::GateInit;
use dgating_nn::{Architecture, Model, ResidualMlpConfig};
use dgating_prune::{Compacted, PrunePlan, compact, export};

/// The ```python block under "## Reading it with numpy" in docs/FORMAT.md.
fn reader() -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/FORMAT.md")).unwrap();
    let section = &doc[doc.find("## Reading it with numpy").expect("section")..];
    let start = section.find("```python\n").expect("python block") + "```python\n".len();
    section[start..start + section[start..].find("```").unwrap()].to_string()
}

fn numpy_available() -> bool {
    Command::new("python3").args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success())
}

/// Exports `c`, runs the reader on `x_raw` and compares with `forward_raw`.
fn check(c: &Compacted, x_raw: &candle_core::Tensor) {
    let dir = tempfile::tempdir().unwrap();
    export(c, dir.path()).unwrap();
    let rows: Vec<Vec<f32>> = x_raw.to_vec2().unwrap();
    std::fs::write(dir.path().join("x.json"), serde_json::to_vec(&rows).unwrap()).unwrap();
    let script = format!(
        "{}\nimport sys\ncfg, t = load(sys.argv[1])\nx = json.load(open(sys.argv[1] + '/x.json'))\n\
         print(json.dumps(predict(cfg, t, x).astype(float).tolist()))\n",
        reader()
    );
    let out = Command::new("python3").arg("-c").arg(script).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ys: Vec<Vec<f64>> = serde_json::from_slice(&out.stdout).unwrap();
    let expected: Vec<Vec<f32>> = c.forward_raw(x_raw).unwrap().to_vec2().unwrap();
    assert_eq!(ys.len(), expected.len());
    for (a, b) in ys.iter().flatten().zip(expected.iter().flatten()) {
        assert!((a - f64::from(*b)).abs() <= 1e-4 * (1.0 + f64::from(b.abs())), "numpy {a} vs rust {b}");
    }
}

#[test]
fn the_documented_numpy_reader_reproduces_every_architecture() {
    if !numpy_available() {
        eprintln!("skipped: python3 with numpy is not installed");
        return;
    }
    // An MLP with input-feature selection and a standardizer.
    let m = input_model(7, &[5], 3, 3, 4);
    m.layers()[0].drop_groups(&[true, false, true, true, false, false, true]).unwrap();
    let mut c = compact(&m, &PrunePlan::new(&m, &Threshold::absolute(0.0).unwrap()).unwrap()).unwrap();
    c.config.input.standardizer =
        Some(Standardizer { mean: (0..7).map(|i| i as f32 * 0.3).collect(), std: vec![1.5; 7] });
    check(&c, &inputs(9, 7, 1));

    // A residual MLP with stream channels and block neurons removed.
    let arch = Architecture::ResidualMlp(ResidualMlpConfig {
        input_dim: 5,
        width: 6,
        blocks: vec![4, 3],
        output_dim: 2,
        group_stream: true,
        group_hidden: true,
    });
    let r = arch.build(Some(2), GateInit::Balanced, 3, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let store = r.params().unwrap();
    r.gate_sets()[0].drop_groups(&store, &[true, false, true, true, false, true]).unwrap();
    r.gate_sets()[1].drop_groups(&store, &[false, true, true, true]).unwrap();
    let c = compact(&r, &PrunePlan::new(&r, &Threshold::absolute(0.0).unwrap()).unwrap()).unwrap();
    assert_eq!(c.sizes().unwrap()["stream"], 4);
    check(&c, &inputs(9, 5, 2));

    // Conv nets: LeNet-5 (flatten, conv biases, pooling) and a ResNet (batch norm with running
    // statistics, projection shortcuts, a stream channel removed), both with removed channels.
    use dgating_nn::model::{ImageShape, ResNetConfig, ResStage};
    let lenet = Architecture::conv_preset("lenet5", ImageShape::new(1, 28, 28), 3, 0.5).unwrap();
    let l = lenet.build(Some(3), GateInit::Balanced, 5, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let store = l.params().unwrap();
    l.gate_sets()[0].drop_groups(&store, &(0..8).map(|i| i % 3 != 1).collect::<Vec<_>>()).unwrap();
    let c = compact(&l, &PrunePlan::new(&l, &Threshold::absolute(0.0).unwrap()).unwrap()).unwrap();
    check(&c, &inputs(3, 784, 3));
    let res = Architecture::ResNet(ResNetConfig {
        input: ImageShape::new(3, 8, 8),
        stages: vec![ResStage { width: 4, blocks: vec![3] }, ResStage { width: 5, blocks: vec![3, 2] }],
        output_dim: 2,
        group_stream: true,
        group_inner: true,
    });
    let r = res.build(Some(2), GateInit::Balanced, 6, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    for seed in 0..2 {
        r.forward_train(&inputs(6, 192, seed)).unwrap();
    }
    let store = r.params().unwrap();
    r.gate_sets()[2].drop_groups(&store, &[true, false, true, true, false]).unwrap();
    r.gate_sets()[3].drop_groups(&store, &[false, true, true]).unwrap();
    let c = compact(&r, &PrunePlan::new(&r, &Threshold::absolute(0.0).unwrap()).unwrap()).unwrap();
    assert_eq!(c.sizes().unwrap()["stages.1.stream"], 3);
    check(&c, &inputs(4, 192, 4));
}

#[test]
fn the_documented_numpy_reader_reproduces_a_pruned_gpt() {
    if !numpy_available() {
        eprintln!("skipped: python3 with numpy is not installed");
        return;
    }
    use candle_core::{DType, Device, Tensor};
    let arch = Architecture::Gpt(dgating_nn::model::GptConfig::nano(13, 8, 3, 4, 16).unwrap());
    let g = arch.build(Some(3), GateInit::Balanced, 4, DType::F32, &Device::Cpu).unwrap();
    let store = g.params().unwrap();
    let sets = g.gate_sets();
    sets[0].drop_groups(&store, &[true, false, false, true]).unwrap(); // blocks.0.heads
    sets[2].drop_groups(&store, &[false; 4]).unwrap(); // blocks.1.heads: none left
    sets[5].drop_groups(&store, &(0..64).map(|i| i % 4 == 0).collect::<Vec<_>>()).unwrap(); // blocks.2.mlp
    let c = compact(&g, &PrunePlan::new(&g, &Threshold::absolute(0.0).unwrap()).unwrap()).unwrap();
    let Architecture::Gpt(cfg) = c.architecture() else { panic!() };
    assert_eq!((cfg.heads.clone(), cfg.mlp.clone()), (vec![2, 0, 4], vec![64, 64, 16]));
    let dir = tempfile::tempdir().unwrap();
    export(&c, dir.path()).unwrap();
    let ids: Vec<Vec<u32>> = vec![(0..8).map(|i| (i * 5 + 1) % 13).collect(), (0..8).map(|i| (i * 3) % 13).collect()];
    std::fs::write(dir.path().join("x.json"), serde_json::to_vec(&ids).unwrap()).unwrap();
    let script = format!(
        "{}\nimport sys\ncfg, t = load(sys.argv[1])\nx = json.load(open(sys.argv[1] + '/x.json'))\n\
         print(json.dumps(predict(cfg, t, x).astype(float).ravel().tolist()))\n",
        reader()
    );
    let out = Command::new("python3").arg("-c").arg(script).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ys: Vec<f64> = serde_json::from_slice(&out.stdout).unwrap();
    let x = Tensor::from_vec(ids.concat(), (2, 8), &Device::Cpu).unwrap();
    let expected: Vec<f32> = c.model.forward(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(ys.len(), expected.len());
    for (a, b) in ys.iter().zip(&expected) {
        assert!((a - f64::from(*b)).abs() <= 1e-4 * (1.0 + f64::from(b.abs())), "numpy {a} vs rust {b}");
    }
}

//! The filter-pruning baselines (L1-norm filter pruning, network slimming) train, remove their
//! share of channels and fine-tune through the same engine, and the result compacts exactly
//! through the generic path.

use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{Device, Tensor};
use dgating_core::{GateConfig, Threshold};
use dgating_nn::model::{ConvLayer, ConvNet, ConvNetConfig, ImageShape};
use dgating_nn::train::baselines::{filter_l1_norms, l1_filter_masks, slimming_masks};
use dgating_nn::train::{self, DataSpec, Mode, TrainConfig};
use dgating_nn::{GateInit, Model};
use dgating_prune::{PrunePlan, compact, verify};

/// `n` 28x28 images whose class (0..4) sets which quadrant is bright, as raw IDX files.
fn write_images(dir: &Path, n: u32) {
    let mut img = vec![0, 0, 8, 3];
    for d in [n, 28, 28] {
        img.extend(d.to_be_bytes());
    }
    let mut lab = vec![0, 0, 8, 1];
    lab.extend(n.to_be_bytes());
    for i in 0..n {
        let class = (i % 4) as usize;
        for y in 0..28 {
            for x in 0..28 {
                let noise = ((i as usize * 31 + y * 7 + x * 13) % 50) as u8;
                img.push(if (y / 14) * 2 + x / 14 == class { 200 + noise } else { noise });
            }
        }
        lab.push(class as u8);
    }
    std::fs::write(dir.join("train-images-idx3-ubyte"), img).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), lab).unwrap();
}

#[test]
fn l1_filter_ranks_by_filters_and_slimming_by_bn_scales() {
    let cfg = ConvNetConfig {
        input: ImageShape::new(1, 6, 6),
        layers: vec![
            ConvLayer::Conv { out: 2, kernel: 3, stride: 1, padding: 1, batch_norm: true, gated: false },
            ConvLayer::Conv { out: 4, kernel: 3, stride: 1, padding: 1, batch_norm: true, gated: true },
        ],
        global_pool: true,
        hidden: vec![],
        group_hidden: false,
        output_dim: 2,
    };
    let m = ConvNet::new(cfg, None, GateInit::Ones, 0, candle_core::DType::F32, &Device::Cpu).unwrap();
    let store = m.params().unwrap();
    // Filter L1 norms 18·[3, 1, 4, 2]; BN scales [0.1, 0.9, 0.5, 0.2].
    let w: Vec<f32> = [3.0f32, 1.0, 4.0, 2.0].iter().flat_map(|&v| std::iter::repeat_n(v, 18)).collect();
    store.get("convs.1.weight").unwrap().var.set(&Tensor::from_vec(w, (4, 2, 3, 3), &Device::Cpu).unwrap()).unwrap();
    let g = Tensor::new(&[0.1f32, 0.9, 0.5, 0.2], &Device::Cpu).unwrap();
    store.get("convs.1.bn.weight").unwrap().var.set(&g).unwrap();
    assert_eq!(filter_l1_norms(&m).unwrap(), vec![vec![54.0, 18.0, 72.0, 36.0]]);
    assert_eq!(l1_filter_masks(&m, 0.5).unwrap(), vec![vec![true, false, true, false]]);
    assert_eq!(slimming_masks(&m, 0.5).unwrap(), vec![vec![false, true, true, false]]);
}

#[test]
fn both_baselines_train_prune_and_compact_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("imgs");
    std::fs::create_dir(&data).unwrap();
    write_images(&data, 80);
    for mode in [Mode::L1Filter, Mode::Slimming] {
        let mut cfg = TrainConfig::new(mode, GateConfig::new(2, 1e-3).unwrap());
        (cfg.epochs, cfg.finetune_epochs, cfg.batch_size, cfg.target_sparsity) = (2, 1, 32, 0.5);
        let run = dir.path().join(format!("run-{}", mode.name()));
        let spec = DataSpec::new(data.to_str().unwrap(), None);
        train::train("vgg11@0.0625", cfg, spec, &run, &mut |_| {}, &mut |_| ControlFlow::Continue(())).unwrap();
        // The prune pipeline without its latency timing: plan, compact, verify on held-out rows.
        let (cfg, model) = dgating_nn::train::run::load_run_model(&run).unwrap();
        let plan = PrunePlan::new(&model, &Threshold::absolute(0.0).unwrap()).unwrap();
        let c = compact(&model, &plan).unwrap();
        let held = cfg.held_out().unwrap();
        let x = Tensor::from_slice(&held.features, (held.len(), held.num_features), &Device::Cpu).unwrap();
        let v = verify(&model, &c, &x).unwrap();
        let s = &c.sizes().unwrap();
        // vgg11 x0.0625: convs.1..7 have 8, 16, 16, 32, 32, 32, 32 channels; convs.0 is ungated.
        assert_eq!(s["convs.0"], 4, "{mode:?}");
        let kept: usize = (1..8).map(|i| s[&format!("convs.{i}")]).sum();
        assert!(kept < 168, "{mode:?}: {s:?}");
        if mode == Mode::L1Filter {
            assert_eq!((s["convs.1"], s["convs.4"]), (4, 16), "half of every layer: {s:?}");
        }
        assert_eq!(v.unmasked_max_abs, v.max_abs, "{mode:?}: the removed channels were exact zeros");
        assert!(v.max_rel <= 1e-5, "{mode:?}: {v:?}");
        assert!(c.architecture().flops_per_sample() < model.architecture().unwrap().flops_per_sample());
    }
}

//! Conv nets compact through the generic path (dgating-prune names no model type): filters
//! with their biases (no batch norm), BN scale and shift with the filters and running
//! statistics going along (batch norm), a flatten's `H·W` blocks of classifier columns, and a
//! ResNet's stream channels across every writer of the stage. The compacted model equals the
//! masked gated model in evaluation mode within 1e-5 relative (f32).

mod common;

use candle_core::{DType, Device, Tensor};
use common::inputs;
use dgating_core::Threshold;
use dgating_nn::layers::GateInit;
use dgating_nn::model::{ConvLayer, ConvNet, ConvNetConfig, ImageShape, ResNet, ResNetConfig, ResStage};
use dgating_nn::{Model, ParamStore};
use dgating_prune::{PrunePlan, compact, verify};

/// Gives every tensor non-trivial values (BN scales and shifts away from 1 and 0, running
/// statistics that are not the initial 0 and 1), then a few training-mode forwards.
fn perturb<M: Model>(m: &M, features: usize) {
    let store: ParamStore = m.params().unwrap();
    for (k, p) in store.iter().enumerate() {
        let n = p.var.elem_count();
        let v: Vec<f32> = (0..n)
            .map(|i| {
                let s = ((i as f32 + 1.0) * 0.731 + k as f32 * 1.37).sin();
                if p.name.ends_with("running_var") {
                    0.5 + s.abs()
                } else if p.name.ends_with(".gates") {
                    1.0 + 0.3 * s
                } else {
                    s * 0.6
                }
            })
            .collect();
        p.var.set(&Tensor::from_vec(v, p.var.dims(), &Device::Cpu).unwrap()).unwrap();
    }
    for seed in 0..2 {
        m.forward_train(&inputs(8, features, seed)).unwrap();
    }
}

fn keep_except(n: usize, drop: &[usize]) -> Vec<bool> {
    (0..n).map(|i| !drop.contains(&i)).collect()
}

fn drop<M: Model>(m: &M, dim: &str, removed: &[usize]) {
    let store = m.params().unwrap();
    let set = m.gate_sets().into_iter().find(|s| s.dim() == dim).unwrap_or_else(|| panic!("no gate set {dim}"));
    set.drop_groups(&store, &keep_except(set.num_groups(), removed)).unwrap();
}

fn compact_and_check<M: Model>(m: &M, features: usize) -> dgating_prune::Compacted {
    let plan = PrunePlan::new(m, &Threshold::absolute(0.0).unwrap()).unwrap();
    let c = compact(m, &plan).unwrap();
    let x = inputs(16, features, 7);
    let v = verify(m, &c, &x).unwrap();
    assert!(v.max_rel <= 1e-5, "{v:?}");
    let diff = (c.forward_full(&x).unwrap() - m.forward(&x).unwrap()).unwrap();
    let diff = diff.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let scale = m.forward(&x).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff <= 1e-5 * scale.max(1.0), "removed channels were exact zeros: {diff} (scale {scale})");
    c
}

#[test]
fn a_lenet_style_net_cuts_filters_and_flattened_columns() {
    let cfg = ConvNetConfig {
        input: ImageShape::new(1, 12, 12),
        layers: vec![
            ConvLayer::Conv { out: 4, kernel: 3, stride: 1, padding: 1, batch_norm: false, gated: false },
            ConvLayer::MaxPool { size: 2 },
            ConvLayer::Conv { out: 6, kernel: 3, stride: 1, padding: 0, batch_norm: false, gated: true },
            ConvLayer::MaxPool { size: 2 },
        ],
        global_pool: false,
        hidden: vec![8],
        group_hidden: true,
        output_dim: 3,
    };
    let m = ConvNet::new(cfg, Some(3), GateInit::Ones, 1, DType::F32, &Device::Cpu).unwrap();
    perturb(&m, 144);
    let dims: Vec<String> = m.gate_sets().iter().map(|s| s.dim().to_string()).collect();
    assert_eq!(dims, ["convs.1", "fc.0"], "the first conv is ungated");
    let members: Vec<String> = m.gate_sets()[0].layout().members().iter().map(|m| m.name.clone()).collect();
    assert_eq!(members, ["convs.1.weight", "convs.1.bias"]);
    drop(&m, "convs.1", &[1, 4]);
    drop(&m, "fc.0", &[0, 5, 6]);
    let c = compact_and_check(&m, 144);
    let t = c.tensors().unwrap();
    assert_eq!(t["convs.1.weight"].dims(), &[4, 4, 3, 3]);
    // 10x10 -> pool -> 5x5... the map before the flatten is 2x2: 4 channels x 4 columns each.
    assert_eq!(t["fc.0.weight"].dims(), &[5, 16]);
    assert_eq!(c.config.kept("convs.1"), Some(&[0, 2, 3, 5][..]));
}

#[test]
fn a_batch_norm_net_cuts_bn_groups_with_filters_and_statistics() {
    let cfg = ConvNetConfig {
        input: ImageShape::new(3, 8, 8),
        layers: vec![
            ConvLayer::Conv { out: 4, kernel: 3, stride: 1, padding: 1, batch_norm: true, gated: false },
            ConvLayer::Conv { out: 6, kernel: 3, stride: 1, padding: 1, batch_norm: true, gated: true },
            ConvLayer::MaxPool { size: 2 },
            ConvLayer::Conv { out: 5, kernel: 3, stride: 2, padding: 1, batch_norm: true, gated: true },
        ],
        global_pool: true,
        hidden: vec![],
        group_hidden: false,
        output_dim: 3,
    };
    let m = ConvNet::new(cfg, Some(2), GateInit::Ones, 2, DType::F32, &Device::Cpu).unwrap();
    perturb(&m, 192);
    let members: Vec<String> = m.gate_sets()[0].layout().members().iter().map(|m| m.name.clone()).collect();
    assert_eq!(members, ["convs.1.bn.weight", "convs.1.bn.bias"], "the group is BN's scale and shift");
    // A filter zeroed *without* its BN shift is not removable: BN outputs β (the plan keeps it).
    let store = m.params().unwrap();
    let w = &store.get("convs.1.weight").unwrap().var;
    let mut v = w.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v[..27].iter_mut().for_each(|x| *x = 0.0);
    w.set(&Tensor::from_vec(v, w.dims(), &Device::Cpu).unwrap()).unwrap();
    assert!(!PrunePlan::new(&m, &Threshold::absolute(0.0).unwrap()).unwrap().prunes());

    drop(&m, "convs.1", &[0, 3]);
    drop(&m, "convs.2", &[2]);
    let c = compact_and_check(&m, 192);
    let t = c.tensors().unwrap();
    assert_eq!(t["convs.1.weight"].dims(), &[4, 4, 3, 3]);
    assert_eq!(t["convs.1.bn.running_var"].dims(), &[4]);
    assert_eq!(t["convs.2.weight"].dims(), &[4, 4, 3, 3]);
    assert_eq!(t["head.weight"].dims(), &[3, 4]);
}

fn resnet() -> ResNet {
    let cfg = ResNetConfig {
        input: ImageShape::new(3, 8, 8),
        stages: vec![ResStage { width: 5, blocks: vec![3, 4] }, ResStage { width: 6, blocks: vec![4, 3] }],
        output_dim: 3,
        group_stream: true,
        group_inner: true,
    };
    ResNet::new(cfg, Some(3), GateInit::Ones, 3, DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn a_resnet_stream_is_one_gate_set_over_every_writer() {
    let m = resnet();
    let dims: Vec<String> = m.gate_sets().iter().map(|s| s.dim().to_string()).collect();
    assert_eq!(
        dims,
        [
            "stages.0.stream",
            "stages.0.blocks.0.inner",
            "stages.0.blocks.1.inner",
            "stages.1.stream",
            "stages.1.blocks.0.inner",
            "stages.1.blocks.1.inner"
        ]
    );
    let members: Vec<String> = m.gate_sets()[3].layout().members().iter().map(|m| m.name.clone()).collect();
    assert_eq!(
        members,
        [
            "stages.1.shortcut.bn.weight",
            "stages.1.shortcut.bn.bias",
            "stages.1.blocks.0.conv2.bn.weight",
            "stages.1.blocks.0.conv2.bn.bias",
            "stages.1.blocks.1.conv2.bn.weight",
            "stages.1.blocks.1.conv2.bn.bias"
        ]
    );
    let s = m.structure().unwrap();
    let readers: Vec<String> =
        s.dim("stages.0.stream").unwrap().slices.iter().filter(|s| s.axis == 1).map(|s| s.tensor.clone()).collect();
    assert_eq!(
        readers,
        [
            "stages.0.blocks.1.conv1.weight",
            "stages.1.blocks.0.conv1.weight",
            "stages.1.shortcut.weight",
            "stages.0.blocks.0.conv1.weight"
        ]
    );
}

#[test]
fn resnet_stream_channels_are_removed_exactly() {
    let m = resnet();
    perturb(&m, 192);
    // Channel 2 of stage 1's stream zeroed in one writer only: still written by the others.
    let store = m.params().unwrap();
    for part in ["bn.weight", "bn.bias"] {
        let v = &store.get(&format!("stages.1.shortcut.{part}")).unwrap().var;
        let mut x = v.as_tensor().to_vec1::<f32>().unwrap();
        x[2] = 0.0;
        v.set(&Tensor::new(x, &Device::Cpu).unwrap()).unwrap();
    }
    assert!(!PrunePlan::new(&m, &Threshold::absolute(0.0).unwrap()).unwrap().prunes());

    drop(&m, "stages.0.stream", &[1]);
    drop(&m, "stages.1.stream", &[0, 4]);
    drop(&m, "stages.0.blocks.1.inner", &[0, 2]);
    drop(&m, "stages.1.blocks.0.inner", &[3]);
    let c = compact_and_check(&m, 192);
    let sizes = c.sizes().unwrap();
    assert_eq!((sizes["stages.0.stream"], sizes["stages.1.stream"], sizes["stages.0.blocks.1.inner"]), (4, 4, 2));
    let t = c.tensors().unwrap();
    assert_eq!(t["stem.weight"].dims(), &[4, 3, 3, 3]);
    assert_eq!(t["stages.1.shortcut.weight"].dims(), &[4, 4, 1, 1]);
    assert_eq!(t["stages.1.blocks.0.conv1.weight"].dims(), &[3, 4, 3, 3]);
    assert_eq!(t["head.weight"].dims(), &[3, 4]);
    assert!(c.architecture().flops_per_sample() < m.architecture().unwrap().flops_per_sample());
}

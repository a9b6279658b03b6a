//! Tests written once and run per device (`dgating_nn::test_on_devices!`): on the CPU they check
//! the fused kernels against the composite references; in a `--features cuda` build on a machine
//! with a GPU they check the composite fallbacks the fused ops take there, and that training on
//! the GPU follows training on the CPU. Tolerances: 1e-5 relative for single ops in f32 against
//! an f64 reference; 1e-4 for a few training steps in f32 (summation order differs by device).

use candle_core::{DType, Device, Tensor, Var};
use dgating_core::GateConfig;
use dgating_nn::data::Targets;
use dgating_nn::layers::GateInit;
use dgating_nn::model::{Architecture, ConvLayer, ConvNetConfig, ImageShape};
use dgating_nn::ops::{
    Conv2dParams, GroupAxis, avg_pool2d, avg_pool2d_reference, batch_norm_train, batch_norm_train_reference,
    causal_attention, conv2d, conv2d_reference, conv2d_relu, gate_product, gate_product_reference, gelu,
    gelu_reference, layer_norm, linear, linear_reference, linear_relu, max_pool2d, max_pool2d_reference,
    scale_cols_relu, scale_groups, scale_groups_reference,
};
use dgating_nn::optim::OptimizerKind;
use dgating_nn::train::engine::TensorData;
use dgating_nn::{Mlp, MlpConfig, Mode, Model, TrainConfig, Trainer, effective_tensors};

fn vals(n: usize, seed: f64) -> Vec<f64> {
    (0..n).map(|i| ((i as f64 + 1.0) * seed).sin()).collect()
}

fn to_f64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    let err = got.iter().zip(want).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(err <= rel * scale, "{what}: max abs error {err:e} > {rel:e} x {scale:e}");
}

/// `op` on `device` in f32 against `reference` on the CPU in f64: outputs and the gradients of
/// `Σ c ⊙ out` with respect to every input.
fn check_op(
    what: &str,
    device: &Device,
    shapes: &[&[usize]],
    op: impl Fn(&[Tensor]) -> Tensor,
    reference: impl Fn(&[Tensor]) -> Tensor,
) {
    let run = |dev: &Device, dtype: DType| {
        let vars: Vec<Var> = shapes
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let n = s.iter().product();
                let t = Tensor::from_vec(vals(n, 0.37 + 0.11 * k as f64), *s, &Device::Cpu).unwrap();
                Var::from_tensor(&t.to_dtype(dtype).unwrap().to_device(dev).unwrap()).unwrap()
            })
            .collect();
        let inputs: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let out = if dev.is_cpu() && dtype == DType::F64 { reference(&inputs) } else { op(&inputs) };
        let c = Tensor::from_vec(vals(out.elem_count(), 0.91), out.dims(), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
            .to_device(dev)
            .unwrap();
        let grads = out.mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
        let g: Vec<Vec<f64>> = vars.iter().map(|v| to_f64(grads.get(v).expect("a gradient for every input"))).collect();
        (to_f64(&out), g)
    };
    let (out, grads) = run(device, DType::F32);
    let (want, want_grads) = run(&Device::Cpu, DType::F64);
    assert_close(&format!("{what} forward"), &out, &want, 1e-5);
    for (k, (g, w)) in grads.iter().zip(&want_grads).enumerate() {
        assert_close(&format!("{what} gradient of input {k}"), g, w, 1e-5);
    }
}

fn fused_ops_match_composite_references(device: &Device) {
    check_op(
        "gate_product",
        device,
        &[&[7, 3]],
        |t| gate_product(&t[0]).unwrap(),
        |t| gate_product_reference(&t[0]).unwrap(),
    );
    for axis in [GroupAxis::Rows, GroupAxis::Cols] {
        let s = if axis == GroupAxis::Rows { 5 } else { 6 };
        check_op(
            &format!("scale_groups {axis:?}"),
            device,
            &[&[5, 6], &[s]],
            |t| scale_groups(&t[0], &t[1], axis).unwrap(),
            |t| scale_groups_reference(&t[0], &t[1], axis).unwrap(),
        );
    }
    check_op(
        "scale_cols_relu",
        device,
        &[&[4, 6], &[6]],
        |t| scale_cols_relu(&t[0], &t[1]).unwrap(),
        |t| scale_groups_reference(&t[0], &t[1], GroupAxis::Cols).unwrap().relu().unwrap(),
    );
    check_op(
        "linear",
        device,
        &[&[5, 4], &[3, 4], &[3]],
        |t| linear(&t[0], &t[1], Some(&t[2]), "fc").unwrap(),
        |t| linear_reference(&t[0], &t[1], Some(&t[2])).unwrap(),
    );
    check_op(
        "linear_relu",
        device,
        &[&[5, 4], &[3, 4], &[3]],
        |t| linear_relu(&t[0], &t[1], Some(&t[2]), "fc").unwrap(),
        |t| linear_reference(&t[0], &t[1], Some(&t[2])).unwrap().relu().unwrap(),
    );
    check_op("gelu", device, &[&[4, 9]], |t| gelu(&t[0]).unwrap(), |t| gelu_reference(&t[0]).unwrap());
    let p = Conv2dParams::new(1, 1);
    check_op(
        "conv2d",
        device,
        &[&[2, 3, 5, 5], &[4, 3, 3, 3], &[4]],
        |t| conv2d(&t[0], &t[1], Some(&t[2]), p, "conv").unwrap(),
        |t| conv2d_reference(&t[0], &t[1], Some(&t[2]), p).unwrap(),
    );
    check_op(
        "conv2d_relu",
        device,
        &[&[2, 3, 5, 5], &[4, 3, 3, 3], &[4]],
        |t| conv2d_relu(&t[0], &t[1], Some(&t[2]), p, "conv").unwrap(),
        |t| conv2d_reference(&t[0], &t[1], Some(&t[2]), p).unwrap().relu().unwrap(),
    );
    for relu in [false, true] {
        check_op(
            &format!("batch_norm_train relu={relu}"),
            device,
            &[&[3, 4, 2, 3], &[4], &[4]],
            |t| batch_norm_train(&t[0], &t[1], &t[2], 1e-5, relu, "bn").unwrap().0,
            |t| {
                let y = batch_norm_train_reference(&t[0], &t[1], &t[2], 1e-5).unwrap().0;
                if relu { y.relu().unwrap() } else { y }
            },
        );
    }
    // 5x7: the last row and column are partial windows, dropped.
    for k in [2, 3] {
        check_op(
            &format!("max_pool2d k={k}"),
            device,
            &[&[2, 3, 5, 7]],
            |t| max_pool2d(&t[0], k, k, "pool").unwrap(),
            |t| max_pool2d_reference(&t[0], k).unwrap(),
        );
        check_op(
            &format!("avg_pool2d k={k}"),
            device,
            &[&[2, 3, 5, 7]],
            |t| avg_pool2d(&t[0], k, k, "pool").unwrap(),
            |t| avg_pool2d_reference(&t[0], k).unwrap(),
        );
    }
}

/// A gated conv net (batch norm in training mode, running statistics, pooling) trained for a
/// few steps on `device` ends where the same run on the CPU ends, running statistics included.
fn conv_training_follows_the_cpu(device: &Device) {
    let shape = ImageShape::new(2, 8, 8);
    let conv = |out, gated| ConvLayer::Conv { out, kernel: 3, stride: 1, padding: 1, batch_norm: true, gated };
    let a = Architecture::ConvNet(ConvNetConfig {
        input: shape,
        layers: vec![conv(4, false), ConvLayer::MaxPool { size: 2 }, conv(6, true)],
        global_pool: true,
        hidden: vec![5],
        group_hidden: true,
        output_dim: 3,
    });
    let n = 24;
    let features: Vec<f32> = (0..n * shape.features()).map(|i| ((i as f32) * 0.0137).sin()).collect();
    let names = (0..shape.features()).map(|i| format!("px{i}")).collect();
    let targets = Targets::Classes {
        labels: (0..n as u32).map(|i| i % 3).collect(),
        num_classes: 3,
        names: ["a", "b", "c"].map(String::from).to_vec(),
    };
    let data = dgating_nn::data::Dataset::new("images", features, shape.features(), names, targets).unwrap();
    let run = |dev: &Device| {
        let model = a.build(Some(3), GateInit::Balanced, 5, DType::F32, dev).unwrap();
        let mut cfg = TrainConfig::new(Mode::Dgating, GateConfig::new(3, 0.01).unwrap());
        cfg.optimizer = OptimizerKind::Sgd { momentum: 0.9 };
        cfg.epochs = 2;
        cfg.batch_size = 8;
        cfg.lr = 0.02;
        let mut trainer = Trainer::new(&model, cfg).unwrap();
        let t = TensorData::new(&data, DType::F32, dev).unwrap();
        while !trainer.finished() {
            trainer.train_epoch(&t, &mut |_| {}).unwrap();
        }
        assert_eq!(dgating_nn::device_of(&model).unwrap().location(), dev.location());
        let mut out: Vec<(String, Vec<f64>)> =
            effective_tensors(&model).unwrap().into_iter().map(|(k, t)| (k, to_f64(&t))).collect();
        for p in model.params().unwrap().iter().filter(|p| p.name.contains("running")) {
            out.push((p.name.clone(), to_f64(p.var.as_tensor())));
        }
        out
    };
    let (got, want) = (run(device), run(&Device::Cpu));
    assert!(want.iter().any(|(k, _)| k.contains("running_var")), "the running statistics are compared");
    for ((name, g), (_, w)) in got.iter().zip(&want) {
        assert_close(name, g, w, 1e-4);
    }
}

/// The language-model ops are composite (every step a candle op that back-propagates), so they
/// run on every device as they are; on a GPU they must agree with the CPU in f64.
fn lm_ops_match_the_cpu(device: &Device) {
    let ln = |t: &[Tensor]| layer_norm(&t[0], &t[1], &t[2], 1e-5).unwrap();
    check_op("layer_norm", device, &[&[3, 4, 8], &[8], &[8]], ln, ln);
    let attn = |t: &[Tensor]| causal_attention(&t[0], &t[1], &t[2]).unwrap();
    check_op("causal_attention", device, &[&[2, 3, 5, 4], &[2, 3, 5, 4], &[2, 3, 5, 4]], attn, attn);
}

/// A gated MLP trained for a few epochs on `device` ends where the same run on the CPU ends
/// (every fused optimizer update, or its composite fallback, on the way).
fn training_follows_the_cpu(device: &Device) {
    let data = dgating_nn::data::builtin::builtin("wine").unwrap();
    let config =
        MlpConfig { input_dim: 13, hidden: vec![16, 8], output_dim: 3, group_inputs: false, group_hidden: true };
    for optimizer in [OptimizerKind::Sgd { momentum: 0.9 }, OptimizerKind::adamw()] {
        let run = |dev: &Device| {
            let model = Mlp::new(config.clone(), Some(3), 7, DType::F32, dev).unwrap();
            let mut cfg = TrainConfig::new(Mode::Dgating, GateConfig::new(3, 0.01).unwrap());
            cfg.optimizer = optimizer;
            cfg.epochs = 3;
            cfg.batch_size = 32;
            cfg.lr = if matches!(optimizer, OptimizerKind::Sgd { .. }) { 0.05 } else { 0.003 };
            let mut trainer = Trainer::new(&model, cfg).unwrap();
            let t = TensorData::new(&data, DType::F32, dev).unwrap();
            while !trainer.finished() {
                trainer.train_epoch(&t, &mut |_| {}).unwrap();
            }
            assert_eq!(dgating_nn::device_of(&model).unwrap().location(), dev.location());
            effective_tensors(&model).unwrap().into_iter().map(|(k, t)| (k, to_f64(&t))).collect::<Vec<_>>()
        };
        let (got, want) = (run(device), run(&Device::Cpu));
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            assert_close(&format!("{optimizer:?}: {name}"), g, w, 1e-4);
        }
    }
}

dgating_nn::test_on_devices!(
    fused_ops_match_composite_references,
    lm_ops_match_the_cpu,
    training_follows_the_cpu,
    conv_training_follows_the_cpu
);

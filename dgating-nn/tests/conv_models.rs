//! Conv-net models: presets at 28×28×1 and 32×32×3, their structures, input errors, batch-norm
//! modes, and the gradient of a gated conv net (filters, BN scale/shift groups, gates) against
//! finite differences in f64.

use candle_core::{DType, Device, Tensor};
use dgating_nn::layers::GateInit;
use dgating_nn::model::{Architecture, ConvLayer, ConvNet, ConvNetConfig, ImageShape, ResNetConfig};
use dgating_nn::{Model, Network};

fn images(n: usize, shape: ImageShape, seed: f64, dtype: DType) -> Tensor {
    let v: Vec<f64> = (0..n * shape.features()).map(|i| ((i as f64) * 0.137 + seed).sin()).collect();
    Tensor::from_vec(v, (n, shape.features()), &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

fn build(a: &Architecture, depth: Option<usize>) -> Network {
    a.build(depth, GateInit::Ones, 0, DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn presets_build_for_both_image_sizes() {
    let grey = ImageShape::new(1, 28, 28);
    let rgb = ImageShape::new(3, 32, 32);
    for (name, width) in [("lenet5", 1.0), ("vgg11", 0.125), ("vgg16", 0.0625), ("resnet20", 0.25), ("resnet56", 0.125)]
    {
        for shape in [grey, rgb] {
            let a = Architecture::conv_preset(name, shape, 10, width).unwrap();
            assert_eq!(a.input_dim(), shape.features());
            let m = build(&a, Some(3));
            let y = m.forward(&images(2, shape, 0.3, DType::F32)).unwrap();
            assert_eq!(y.dims(), [2, 10], "{name} {shape}");
            let y = m.forward_train(&images(3, shape, 0.1, DType::F32)).unwrap();
            assert_eq!(y.dims(), [3, 10], "{name} {shape}");
            assert!(a.flops_per_sample() > 0);
            // The first conv is never a gate set; every other conv is (VGG, LeNet).
            assert!(m.gate_sets().iter().all(|s| s.dim() != "convs.0"), "{name}");
        }
    }
    // LeNet-5's classic MACs at 32x32: 117,600 + 240,000 + 48,000 + 10,080 + 840.
    let a = Architecture::conv_preset("lenet5", ImageShape::new(1, 32, 32), 10, 1.0).unwrap();
    assert_eq!(a.flops_per_sample(), 2 * (117_600 + 240_000 + 48_000 + 10_080 + 840));
    // VGG-11 at 28x28 drops its fourth pool: the last map is 1x1, not 0x0.
    let Architecture::ConvNet(c) = Architecture::conv_preset("vgg11", ImageShape::new(1, 28, 28), 10, 1.0).unwrap()
    else {
        panic!("vgg11 is a conv net")
    };
    assert_eq!(c.layers.iter().filter(|l| matches!(l, ConvLayer::MaxPool { .. })).count(), 4);
    let r = ResNetConfig::preset("resnet20", ImageShape::new(3, 32, 32), 10, 1.0).unwrap();
    assert_eq!(r.stages.iter().map(|s| s.blocks.len()).sum::<usize>(), 9, "3 stages x 3 blocks: 20 layers");
    assert!(Architecture::conv_preset("alexnet", grey, 10, 1.0).is_err());
    assert!(Architecture::conv_preset("vgg11", grey, 10, 0.0).is_err());
}

#[test]
fn wrong_image_sizes_are_clear_errors() {
    let a = Architecture::conv_preset("lenet5", ImageShape::new(1, 28, 28), 10, 1.0).unwrap();
    let m = build(&a, None);
    let e = m.forward(&images(2, ImageShape::new(3, 32, 32), 0.0, DType::F32)).unwrap_err().to_string();
    assert!(e.contains("1x28x28") && e.contains("784") && e.contains("3072"), "{e}");
    let x = Tensor::zeros((2, 3, 28, 28), DType::F32, &Device::Cpu).unwrap();
    assert!(m.forward(&x).unwrap_err().to_string().contains("1x28x28"));
    let tiny = ConvNetConfig::preset("vgg16", ImageShape::new(1, 8, 8), 10, 1.0);
    assert!(tiny.unwrap_err().to_string().contains("does not fit"), "5 pools do not fit 8x8");
}

/// Evaluation mode uses running statistics, training mode the batch's; training-mode forwards
/// move the running statistics (momentum 0.1, unbiased variance).
#[test]
fn batch_norm_modes() {
    let a = Architecture::conv_preset("vgg11", ImageShape::new(1, 28, 28), 10, 0.125).unwrap();
    let m = build(&a, Some(2));
    let x = images(4, ImageShape::new(1, 28, 28), 0.5, DType::F32);
    let eval = m.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mean0 = |m: &Network| {
        m.params().unwrap().get("convs.0.bn.running_mean").unwrap().var.as_tensor().to_vec1::<f32>().unwrap()
    };
    assert!(mean0(&m).iter().all(|&v| v == 0.0));
    assert_eq!(m.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), eval, "eval is pure");
    let train = m.forward_train(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_ne!(train, eval);
    assert!(mean0(&m).iter().any(|&v| v != 0.0), "running mean moved");
    // The running statistics are checkpointed parameters that never get a gradient.
    let store = m.params().unwrap();
    assert!(store.get("convs.3.bn.running_var").is_some());
}

/// `∂L/∂θ` of a gated conv net (training-mode batch norm, D = 3) against central differences
/// in f64, for one entry of every parameter tensor except the running statistics.
#[test]
fn gated_conv_net_gradients_match_finite_differences() {
    let shape = ImageShape::new(2, 6, 6);
    let cfg = ConvNetConfig {
        input: shape,
        layers: vec![
            ConvLayer::Conv { out: 3, kernel: 3, stride: 1, padding: 1, batch_norm: false, gated: true },
            ConvLayer::MaxPool { size: 2 },
            ConvLayer::Conv { out: 4, kernel: 3, stride: 1, padding: 1, batch_norm: true, gated: true },
            ConvLayer::AvgPool { size: 3 },
        ],
        global_pool: false,
        hidden: vec![5],
        group_hidden: true,
        output_dim: 2,
    };
    let m = ConvNet::new(cfg, Some(3), GateInit::Balanced, 4, DType::F64, &Device::Cpu).unwrap();
    let x = images(3, shape, 0.2, DType::F64);
    let c = Tensor::from_vec((0..6).map(|i| (i as f64 * 0.7).cos()).collect::<Vec<_>>(), (3, 2), &Device::Cpu).unwrap();
    let loss = |m: &ConvNet| m.forward_train(&x).unwrap().mul(&c).unwrap().sum_all().unwrap();
    let grads = loss(&m).backward().unwrap();
    let store = m.params().unwrap();
    let mut checked = 0;
    for p in store.iter().filter(|p| !p.name.contains("running")) {
        let analytic = grads.get(p.var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {}", p.name));
        let analytic = analytic.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let base = p.var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for i in [0, base.len() / 2, base.len() - 1] {
            let at = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                p.var.set(&Tensor::from_vec(v, p.var.dims(), &Device::Cpu).unwrap()).unwrap();
                let l = loss(&m).to_scalar::<f64>().unwrap();
                p.var.set(&Tensor::from_vec(base.clone(), p.var.dims(), &Device::Cpu).unwrap()).unwrap();
                l
            };
            let h = 1e-6;
            let fd = (at(h) - at(-h)) / (2.0 * h);
            assert!((fd - analytic[i]).abs() < 1e-6 * (1.0 + fd.abs()), "{}[{i}]: fd {fd} vs {}", p.name, analytic[i]);
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked}");
    assert!(store.get("convs.1.gates").is_some() && store.get("convs.0.gates").is_some());
}

/// Evaluation mode folds the running statistics into the filters and a bias; the result must
/// be batch norm as defined: `relu(γ·(conv(x) − mean)/√(var + ε) + β)`, computed here from the
/// parameters with plain tensor arithmetic (non-trivial statistics, gates that are not 1).
#[test]
fn evaluation_mode_batch_norm_is_the_textbook_formula() {
    let shape = ImageShape::new(2, 5, 5);
    let cfg = ConvNetConfig {
        input: shape,
        layers: vec![ConvLayer::Conv { out: 3, kernel: 3, stride: 1, padding: 1, batch_norm: true, gated: true }],
        global_pool: false,
        hidden: vec![],
        group_hidden: false,
        output_dim: 2,
    };
    let m = ConvNet::new(cfg, Some(3), GateInit::Balanced, 7, DType::F64, &Device::Cpu).unwrap();
    let store = m.params().unwrap();
    let set = |name: &str, v: &[f64]| {
        let p = store.get(name).unwrap_or_else(|| panic!("{name}"));
        p.var.set(&Tensor::from_vec(v.to_vec(), p.var.dims(), &Device::Cpu).unwrap()).unwrap();
    };
    set("convs.0.bn.running_mean", &[0.3, -0.2, 0.05]);
    set("convs.0.bn.running_var", &[0.5, 2.0, 0.01]);
    let x = images(2, shape, 0.4, DType::F64);
    let got = m.forward(&x).unwrap();
    // The same from the effective tensors: the gates folded into the filter and into BN's
    // scale and shift (the channel's group), then the formula.
    let t = dgating_nn::model::effective_tensors(&m).unwrap();
    let (w, gamma, beta) = (&t["convs.0.weight"], &t["convs.0.bn.weight"], &t["convs.0.bn.bias"]);
    let (mean, var) = (&t["convs.0.bn.running_mean"], &t["convs.0.bn.running_var"]);
    let ch = |v: &Tensor| v.reshape((1, 3, 1, 1)).unwrap();
    let h = x.reshape((2, 2, 5, 5)).unwrap().conv2d(w, 1, 1, 1, 1).unwrap();
    let norm = h.broadcast_sub(&ch(mean)).unwrap().broadcast_div(&ch(&(var + 1e-5).unwrap().sqrt().unwrap())).unwrap();
    let y = norm.broadcast_mul(&ch(gamma)).unwrap().broadcast_add(&ch(beta)).unwrap().relu().unwrap();
    let logits = y
        .flatten_from(1)
        .unwrap()
        .matmul(&t["head.weight"].t().unwrap())
        .unwrap()
        .broadcast_add(&t["head.bias"])
        .unwrap();
    let diff = (got - logits).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    assert!(diff < 1e-12, "eval forward differs from the formula by {diff}");
}

//! GatedLinear's autograd gradients against central differences of the pure-math
//! composition in `dgating-core` (f64).

use candle_core::{DType, Device, Tensor};
use dgating_core::{GateMatrix, GroupLayout, compose};
use dgating_nn::{GateSite, GatedLinear};

const IN: usize = 4;
const OUT: usize = 3;

fn vals(n: usize, seed: f64) -> Vec<f64> {
    (0..n).map(|i| ((i as f64 + 1.0) * seed).sin()).collect()
}

/// `Σ C ⊙ (x Wᵀ + b)` with `W, b` composed by dgating-core from `(ω, ω_b, γ)`.
fn reference_loss(
    site: GateSite,
    layout: &GroupLayout,
    omega: &[f64],
    bias: &[f64],
    gates: &[f64],
    x: &[f64],
    c: &[f64],
) -> f64 {
    let g = GateMatrix::new(layout.num_groups(), gates.len() / layout.num_groups(), gates.to_vec()).unwrap();
    let (w, b) = match site {
        GateSite::Outputs => {
            let wb = compose(layout, &[omega, bias], &g).unwrap();
            (wb[0].clone(), wb[1].clone())
        }
        _ => (compose(layout, &[omega], &g).unwrap().swap_remove(0), bias.to_vec()),
    };
    let batch = x.len() / IN;
    let mut total = 0.0;
    for r in 0..batch {
        for o in 0..OUT {
            let y: f64 = (0..IN).map(|i| x[r * IN + i] * w[o * IN + i]).sum::<f64>() + b[o];
            total += c[r * OUT + o] * y;
        }
    }
    total
}

fn check_site(site: GateSite, depth: usize) {
    let dev = Device::Cpu;
    let w = Tensor::from_vec(vals(OUT * IN, 0.7), (OUT, IN), &dev).unwrap();
    let b = Tensor::from_vec(vals(OUT, 1.3), OUT, &dev).unwrap();
    let layer = GatedLinear::from_tensors("fc", w, Some(b), site, Some(depth)).unwrap();
    // Move off the balanced point so every term of the backward matters.
    let j = layer.num_groups();
    let gates: Vec<f64> = (0..j * (depth - 1)).map(|k| 0.6 + 0.25 * k as f64).collect();
    layer.gates_var().unwrap().set(&Tensor::from_vec(gates.clone(), (j, depth - 1), &dev).unwrap()).unwrap();
    let batch = 5;
    let x = vals(batch * IN, 0.37);
    let c = vals(batch * OUT, 0.91);
    let xt = Tensor::from_vec(x.clone(), (batch, IN), &dev).unwrap();
    let ct = Tensor::from_vec(c.clone(), (batch, OUT), &dev).unwrap();
    let loss = layer.forward(&xt).unwrap().mul(&ct).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let grad_of =
        |v: &candle_core::Var| grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();

    let layout = layer.layout().unwrap();
    let omega = layer.weight_var().as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let bias = layer.bias_var().unwrap().as_tensor().to_vec1::<f64>().unwrap();
    let f = |o: &[f64], b: &[f64], g: &[f64]| reference_loss(site, &layout, o, b, g, &x, &c);
    assert!((loss.to_scalar::<f64>().unwrap() - f(&omega, &bias, &gates)).abs() < 1e-12, "forward differs");

    let h = 1e-6;
    let tol = |fd: f64| 1e-7 * (1.0 + fd.abs());
    let fd_vec = |k: usize, which: u8| {
        let (mut o1, mut b1, mut g1) = (omega.clone(), bias.clone(), gates.clone());
        let (mut o2, mut b2, mut g2) = (omega.clone(), bias.clone(), gates.clone());
        match which {
            0 => (o1[k] += h, o2[k] -= h),
            1 => (b1[k] += h, b2[k] -= h),
            _ => (g1[k] += h, g2[k] -= h),
        };
        (f(&o1, &b1, &g1) - f(&o2, &b2, &g2)) / (2.0 * h)
    };
    for (k, g) in grad_of(layer.weight_var()).iter().enumerate() {
        let fd = fd_vec(k, 0);
        assert!((fd - g).abs() < tol(fd), "{site:?} D={depth} omega[{k}]: fd {fd} vs autograd {g}");
    }
    for (k, g) in grad_of(layer.bias_var().unwrap()).iter().enumerate() {
        let fd = fd_vec(k, 1);
        assert!((fd - g).abs() < tol(fd), "{site:?} D={depth} bias[{k}]: fd {fd} vs autograd {g}");
    }
    for (k, g) in grad_of(layer.gates_var().unwrap()).iter().enumerate() {
        let fd = fd_vec(k, 2);
        assert!((fd - g).abs() < tol(fd), "{site:?} D={depth} gate[{k}]: fd {fd} vs autograd {g}");
    }
}

#[test]
fn output_groups_match_finite_differences() {
    for depth in [2, 3, 4] {
        check_site(GateSite::Outputs, depth);
    }
}

#[test]
fn input_groups_match_finite_differences() {
    for depth in [2, 3, 4] {
        check_site(GateSite::Inputs, depth);
    }
}

/// Balanced initialization from a dense layer does not change its outputs.
#[test]
fn balanced_init_preserves_function() {
    let dev = Device::Cpu;
    let w = Tensor::from_vec(vals(OUT * IN, 0.7), (OUT, IN), &dev).unwrap().to_dtype(DType::F32).unwrap();
    let b = Tensor::from_vec(vals(OUT, 1.3), OUT, &dev).unwrap().to_dtype(DType::F32).unwrap();
    let x = Tensor::from_vec(vals(6 * IN, 0.37), (6, IN), &dev).unwrap().to_dtype(DType::F32).unwrap();
    let dense = GatedLinear::from_tensors("fc", w.clone(), Some(b.clone()), GateSite::Outputs, None).unwrap();
    let y0 = dense.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for site in [GateSite::Outputs, GateSite::Inputs] {
        for depth in [2, 3, 5] {
            let gated = GatedLinear::from_tensors("fc", w.clone(), Some(b.clone()), site, Some(depth)).unwrap();
            let y1 = gated.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (a, b) in y0.iter().zip(&y1) {
                assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs()), "{site:?} D={depth}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn bad_shapes_and_depths_are_errors() {
    let dev = Device::Cpu;
    let w = Tensor::zeros((OUT, IN), DType::F32, &dev).unwrap();
    let bad_bias = Tensor::zeros(OUT + 1, DType::F32, &dev).unwrap();
    assert!(GatedLinear::from_tensors("fc", w.clone(), Some(bad_bias), GateSite::Outputs, None).is_err());
    assert!(GatedLinear::from_tensors("fc", w.clone(), None, GateSite::Outputs, Some(1)).is_err());
    assert!(GatedLinear::from_tensors("fc", w.clone(), None, GateSite::None, Some(3)).is_err());
    let layer = GatedLinear::from_tensors("fc", w, None, GateSite::Outputs, Some(3)).unwrap();
    let x = Tensor::zeros((2, IN + 1), DType::F32, &dev).unwrap();
    let err = layer.forward(&x).unwrap_err();
    assert!(err.to_string().contains("fc"), "{err}");
}

/// Dropping groups zeroes exactly those rows/columns of the effective weight.
#[test]
fn drop_groups_zeroes_exactly_the_dropped_groups() {
    let dev = Device::Cpu;
    let w = Tensor::from_vec(vals(OUT * IN, 0.7), (OUT, IN), &dev).unwrap();
    let b = Tensor::from_vec(vals(OUT, 1.3), OUT, &dev).unwrap();
    for depth in [None, Some(3)] {
        let rows = GatedLinear::from_tensors("fc", w.clone(), Some(b.clone()), GateSite::Outputs, depth).unwrap();
        rows.drop_groups(&[true, false, true]).unwrap();
        let (ew, eb) = rows.effective().unwrap();
        let ew = ew.to_vec2::<f64>().unwrap();
        let eb = eb.unwrap().to_vec1::<f64>().unwrap();
        assert!(ew[1].iter().all(|&x| x == 0.0) && eb[1] == 0.0);
        assert!(ew[0].iter().all(|&x| x != 0.0) && eb[0] != 0.0);
        let cols = GatedLinear::from_tensors("fc", w.clone(), Some(b.clone()), GateSite::Inputs, depth).unwrap();
        cols.drop_groups(&[false, true, true, false]).unwrap();
        let ew = cols.effective().unwrap().0.to_vec2::<f64>().unwrap();
        assert!(ew.iter().all(|r| r[0] == 0.0 && r[3] == 0.0 && r[1] != 0.0));
        assert!(cols.drop_groups(&[true]).is_err());
    }
}

/// A layer built from another layer's variables owns a copy: changing one leaves the other.
#[test]
fn from_tensors_never_aliases_its_inputs() {
    let dev = Device::Cpu;
    let w = Tensor::from_vec(vals(OUT * IN, 0.7), (OUT, IN), &dev).unwrap();
    let a = GatedLinear::from_tensors("a", w, None, GateSite::Outputs, None).unwrap();
    let b = GatedLinear::from_tensors("b", a.weight_var().as_tensor().clone(), None, GateSite::Outputs, None).unwrap();
    b.drop_groups(&[false, false, false]).unwrap();
    let wa = a.weight_var().as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert!(wa.iter().all(|&x| x != 0.0), "zeroing b changed a");
}

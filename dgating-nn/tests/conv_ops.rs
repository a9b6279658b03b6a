//! The conv-net ops: forward values against literals from `tests/reference/conv_literals.py`
//! (numpy loops from the definitions), fused against candle's composite ops, and every
//! gradient against central finite differences in f64.

use candle_core::{DType, Device, Tensor, Var};
use dgating_nn::ops::{
    Conv2dParams, avg_pool2d, batch_norm_eval, batch_norm_train, batch_norm_train_reference, conv2d, conv2d_reference,
    conv2d_relu, flatten, global_avg_pool, max_pool2d,
};

fn seq(n: usize, f: impl Fn(f64) -> f64) -> Vec<f64> {
    (0..n).map(|i| f(i as f64)).collect()
}

fn tensor(v: Vec<f64>, shape: &[usize], dtype: DType) -> Tensor {
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
    }
}

/// The fixture of the numpy script: `x [2, 2, 5, 5]`, `w [3, 2, 3, 3]`, `b [3]`.
fn fixture(dtype: DType) -> (Tensor, Tensor, Tensor) {
    (
        tensor(seq(100, |i| (0.37 * i).sin()), &[2, 2, 5, 5], dtype),
        tensor(seq(54, |i| 0.5 * (0.29 * i).cos()), &[3, 2, 3, 3], dtype),
        tensor(vec![0.1, -0.2, 0.3], &[3], dtype),
    )
}

#[test]
fn forward_values_match_the_numpy_literals() {
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        let (x, w, b) = fixture(dtype);
        let y = conv2d(&x, &w, Some(&b), Conv2dParams::new(1, 1), "t").unwrap();
        assert_eq!(y.dims(), [2, 3, 5, 5]);
        let row = |t: &Tensor, i: usize, j: usize, k: usize| flat(&t.get(i).unwrap().get(j).unwrap().get(k).unwrap());
        let lit = [-0.4340132128072116, 0.0726988328378659, 0.8569254868488302, 1.5387058271127858, 1.4451281884443512];
        close(&row(&y, 0, 0, 0), &lit, tol, "conv s1 p1 y[0,0,0]");
        let lit = [1.6535780032421707, 2.32976541663594, 1.991352829784866, 1.4240235719172167, 0.5222850830994996];
        close(&row(&y, 1, 2, 4), &lit, tol, "conv s1 p1 y[1,2,4]");
        let y2 = conv2d(&x, &w, Some(&b), Conv2dParams::new(2, 0), "t").unwrap();
        assert_eq!(y2.dims(), [2, 3, 2, 2]);
        let lit = [1.6930321087223166, 0.44579804097240133, -1.214465280895496, 0.3650535214507053];
        close(&flat(&y2.get(1).unwrap().get(1).unwrap()), &lit, tol, "conv s2 p0 y[1,1]");

        let g = tensor(vec![1.5, -0.5, 2.0], &[3], dtype);
        let be = tensor(vec![0.25, 0.0, -1.0], &[3], dtype);
        let (yb, stats) = batch_norm_train(&y, &g, &be, 1e-5, false, "bn").unwrap();
        close(&stats.mean, &[0.3610240249645261, 0.48740772235365165, 0.7072612330355952], tol, "bn mean");
        close(&stats.var, &[3.662830128667461, 2.4489835204013777, 4.685974319959517], tol, "bn var");
        assert_eq!(stats.count, 50);
        let lit = [0.49905958169385023, 0.8635944300155868, 0.9211052530483441, 0.883674618210855, 0.567265114596863];
        close(&row(&yb, 0, 1, 2), &lit, tol, "bn y[0,1,2]");
        // Eval mode with the batch statistics as running statistics is the same map.
        let rm = tensor(stats.mean.clone(), &[3], dtype);
        let rv = tensor(stats.var.clone(), &[3], dtype);
        let ye = batch_norm_eval(&y, &g, &be, &rm, &rv, 1e-5, false, "bn").unwrap();
        close(&flat(&ye), &flat(&yb), tol, "bn eval = train at the batch statistics");

        let mp = max_pool2d(&x, 2, 2, "pool").unwrap();
        assert_eq!(mp.dims(), [2, 2, 2, 2]);
        let lit = [0.9975263011148543, 0.7840403585276232, -0.20733642060675878, 0.027255395678052262];
        close(&flat(&mp.get(1).unwrap().get(0).unwrap()), &lit, tol, "maxpool");
        let ap = avg_pool2d(&x, 3, 2, "pool").unwrap();
        let lit = [-0.12707918043273628, -0.04983925932335678, 0.07319820760193918, -0.028666404967030865];
        close(&flat(&ap.get(0).unwrap().get(1).unwrap()), &lit, tol, "avgpool");
    }
}

/// Fused conv against candle's conv2d (+ broadcast bias): outputs and gradients of `x`, `w`,
/// `b`, for strides, paddings and the 1x1 shortcut path, with and without the fused ReLU.
#[test]
fn fused_conv_matches_candle() {
    let cases = [
        ((3, 2, 6, 7), (4, 2, 3, 3), Conv2dParams::new(1, 1)),
        ((2, 3, 7, 7), (5, 3, 3, 3), Conv2dParams::new(2, 1)),
        ((2, 3, 6, 6), (4, 3, 1, 1), Conv2dParams::new(1, 0)),
        ((2, 3, 6, 6), (4, 3, 1, 1), Conv2dParams::new(2, 0)),
        ((5, 1, 8, 8), (3, 1, 5, 5), Conv2dParams::new(1, 2)),
        ((33, 2, 5, 5), (3, 2, 3, 3), Conv2dParams::new(1, 0)),
        // Edges: a 1x1 map under a padded 3x3 kernel, stride larger than the kernel, a kernel
        // wider than the padding reaches. (candle's own conv2d backward fails with a shape
        // mismatch when the stride leaves a remainder, e.g. 7x5 input, 2x2 kernel, stride 3,
        // padding 1; that case is checked against finite differences below instead.)
        ((3, 2, 1, 1), (2, 2, 3, 3), Conv2dParams::new(1, 1)),
        ((2, 2, 7, 7), (3, 2, 2, 2), Conv2dParams::new(3, 1)),
        ((2, 1, 2, 3), (2, 1, 5, 5), Conv2dParams::new(1, 2)),
        // Stride 1 with the output as wide as the input takes the contiguous "same" path:
        // a tall kernel (fewer output rows than input rows), a 1-wide map, a kernel wider
        // than the map.
        ((2, 2, 6, 5), (3, 2, 3, 1), Conv2dParams::new(1, 0)),
        ((2, 2, 5, 1), (3, 2, 3, 3), Conv2dParams::new(1, 1)),
        ((2, 1, 4, 2), (2, 1, 5, 5), Conv2dParams::new(1, 2)),
    ];
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-4)] {
        for (xs, ws, p) in cases {
            let xs = [xs.0, xs.1, xs.2, xs.3];
            let ws = [ws.0, ws.1, ws.2, ws.3];
            let x = Var::from_tensor(&tensor(seq(xs.iter().product(), |i| (0.37 * i).sin()), &xs, dtype)).unwrap();
            let w =
                Var::from_tensor(&tensor(seq(ws.iter().product(), |i| 0.3 * (0.29 * i).cos()), &ws, dtype)).unwrap();
            let b = Var::from_tensor(&tensor(seq(ws[0], |i| 0.1 * i - 0.1), &[ws[0]], dtype)).unwrap();
            for relu in [false, true] {
                let run = |f: &dyn Fn() -> Tensor| {
                    let y = f();
                    let c = tensor(seq(y.elem_count(), |i| (1.1 * i).cos()), y.dims(), dtype);
                    let g = y.mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
                    let gr = |v: &Var| flat(g.get(v.as_tensor()).unwrap());
                    (flat(&y), gr(&x), gr(&w), gr(&b))
                };
                let fused = run(&|| {
                    let f = if relu { conv2d_relu } else { conv2d };
                    f(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), p, "t").unwrap()
                });
                let reference = run(&|| {
                    let y = conv2d_reference(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), p).unwrap();
                    if relu { y.relu().unwrap() } else { y }
                });
                let what = format!("{xs:?} {ws:?} {p:?} relu={relu} {dtype:?}");
                close(&fused.0, &reference.0, tol, &format!("y {what}"));
                close(&fused.1, &reference.1, tol, &format!("dx {what}"));
                close(&fused.2, &reference.2, tol, &format!("dw {what}"));
                close(&fused.3, &reference.3, tol, &format!("db {what}"));
            }
        }
    }
}

/// The input gradient is skipped for an untracked input (the data batch).
#[test]
fn no_input_gradient_for_data() {
    let x = tensor(seq(2 * 2 * 4 * 4, |i| (0.3 * i).sin()), &[2, 2, 4, 4], DType::F32);
    let w = Var::from_tensor(&tensor(seq(3 * 2 * 9, |i| (0.2 * i).cos()), &[3, 2, 3, 3], DType::F32)).unwrap();
    let y = conv2d(&x, w.as_tensor(), None, Conv2dParams::new(1, 1), "t").unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_none());
    assert!(g.get(w.as_tensor()).is_some());
}

/// Central differences of `Σ c ⊙ f(args)` against the analytic gradient of every argument.
fn check_fd(args: &[Var], f: &dyn Fn(&[Tensor]) -> Tensor, what: &str) {
    let tensors: Vec<Tensor> = args.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&tensors);
    let c = tensor(seq(y.elem_count(), |i| (0.91 * i + 0.3).cos()), y.dims(), DType::F64);
    let loss = |ts: &[Tensor]| f(ts).mul(&c).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
    let grads = f(&tensors).mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
    let h = 1e-6;
    for (k, v) in args.iter().enumerate() {
        let analytic = flat(grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{what}: no gradient for arg {k}")));
        let base = flat(v.as_tensor());
        for i in 0..base.len() {
            let shifted = |d: f64| {
                let mut vals = base.clone();
                vals[i] += d;
                let mut ts = tensors.clone();
                ts[k] = Tensor::from_vec(vals, v.dims(), &Device::Cpu).unwrap();
                loss(&ts)
            };
            let fd = (shifted(h) - shifted(-h)) / (2.0 * h);
            assert!(
                (fd - analytic[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "{what}: arg {k}[{i}]: fd {fd} vs {}",
                analytic[i]
            );
        }
    }
}

fn var(n: usize, shape: &[usize], f: impl Fn(f64) -> f64) -> Var {
    Var::from_tensor(&tensor(seq(n, f), shape, DType::F64)).unwrap()
}

#[test]
fn conv_gradients_match_finite_differences() {
    // Offsets keep pre-activations away from the ReLU kink.
    let x = var(2 * 2 * 5 * 5, &[2, 2, 5, 5], |i| (0.37 * i).sin());
    let w = var(3 * 2 * 9, &[3, 2, 3, 3], |i| 0.4 * (0.29 * i).cos());
    let b = var(3, &[3], |i| 0.05 + 0.1 * i);
    for p in [Conv2dParams::new(1, 1), Conv2dParams::new(2, 0)] {
        check_fd(
            &[x.clone(), w.clone(), b.clone()],
            &|t| conv2d_relu(&t[0], &t[1], Some(&t[2]), p, "t").unwrap(),
            &format!("conv2d_relu {p:?}"),
        );
    }
    // Strides that leave a remainder (the last input rows/columns are never read).
    let x = var(2 * 2 * 7 * 5, &[2, 2, 7, 5], |i| (0.37 * i).sin());
    let w = var(3 * 2 * 4, &[3, 2, 2, 2], |i| 0.4 * (0.29 * i).cos());
    for p in [Conv2dParams::new(3, 1), Conv2dParams::new(2, 0)] {
        check_fd(
            &[x.clone(), w.clone(), b.clone()],
            &|t| conv2d(&t[0], &t[1], Some(&t[2]), p, "t").unwrap(),
            &format!("conv2d {p:?} 7x5"),
        );
    }
}

#[test]
fn batch_norm_gradients_match_finite_differences() {
    let x = var(3 * 2 * 3 * 3, &[3, 2, 3, 3], |i| (0.53 * i).sin() + 0.1 * i.sqrt());
    let g = var(2, &[2], |i| 1.3 - 0.6 * i);
    let be = var(2, &[2], |i| 0.2 - 0.35 * i);
    for relu in [false, true] {
        check_fd(
            &[x.clone(), g.clone(), be.clone()],
            &|t| batch_norm_train(&t[0], &t[1], &t[2], 1e-5, relu, "bn").unwrap().0,
            &format!("batch_norm_train relu={relu}"),
        );
    }
    // The composite reference agrees with the fused op (value and gradients).
    let run = |fused: bool| {
        let y = if fused {
            batch_norm_train(x.as_tensor(), g.as_tensor(), be.as_tensor(), 1e-5, false, "bn").unwrap().0
        } else {
            batch_norm_train_reference(x.as_tensor(), g.as_tensor(), be.as_tensor(), 1e-5).unwrap().0
        };
        let c = tensor(seq(y.elem_count(), |i| (0.7 * i).sin()), y.dims(), DType::F64);
        let gr = y.mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
        [flat(&y), flat(gr.get(x.as_tensor()).unwrap()), flat(gr.get(g.as_tensor()).unwrap())]
    };
    for (a, r) in run(true).iter().zip(run(false).iter()) {
        close(a, r, 1e-10, "fused vs reference batch norm");
    }
    let rm = var(2, &[2], |i| 0.1 + 0.2 * i);
    let rv = var(2, &[2], |i| 0.5 + i);
    for relu in [false, true] {
        check_fd(
            &[x.clone(), g.clone(), be.clone()],
            &|t| batch_norm_eval(&t[0], &t[1], &t[2], rm.as_tensor(), rv.as_tensor(), 1e-5, relu, "bn").unwrap(),
            &format!("batch_norm_eval relu={relu}"),
        );
    }
}

#[test]
fn pooling_gradients_match_finite_differences() {
    // Distinct values, so each max window has one maximum.
    let x = var(2 * 2 * 5 * 6, &[2, 2, 5, 6], |i| (0.71 * i).sin() + 0.001 * i);
    check_fd(std::slice::from_ref(&x), &|t| max_pool2d(&t[0], 2, 2, "p").unwrap(), "max_pool2d 2/2");
    check_fd(std::slice::from_ref(&x), &|t| max_pool2d(&t[0], 3, 1, "p").unwrap(), "max_pool2d 3/1");
    check_fd(std::slice::from_ref(&x), &|t| avg_pool2d(&t[0], 2, 2, "p").unwrap(), "avg_pool2d 2/2");
    check_fd(std::slice::from_ref(&x), &|t| avg_pool2d(&t[0], 3, 2, "p").unwrap(), "avg_pool2d 3/2");
    check_fd(std::slice::from_ref(&x), &|t| global_avg_pool(&t[0]).unwrap(), "global_avg_pool");
    check_fd(&[x], &|t| flatten(&t[0]).unwrap().sqr().unwrap(), "flatten");
}

#[test]
fn pooling_matches_candle() {
    let x = tensor(seq(2 * 3 * 6 * 6, |i| (0.71 * i).sin()), &[2, 3, 6, 6], DType::F32);
    close(&flat(&max_pool2d(&x, 2, 2, "p").unwrap()), &flat(&x.max_pool2d(2).unwrap()), 0.0, "max");
    close(&flat(&avg_pool2d(&x, 2, 2, "p").unwrap()), &flat(&x.avg_pool2d(2).unwrap()), 1e-6, "avg");
    assert_eq!(flat(&global_avg_pool(&x).unwrap()).len(), 6);
    // Odd sizes (the last row and column are dropped, floor) and many planes per parallel task:
    // the 2x2 / stride-2 fast path against candle.
    let odd = tensor(seq(3 * 40 * 7 * 5, |i| (1.37 * i).cos()), &[3, 40, 7, 5], DType::F32);
    close(&flat(&max_pool2d(&odd, 2, 2, "p").unwrap()), &flat(&odd.max_pool2d(2).unwrap()), 0.0, "max, odd");
    // A NaN in a window makes that output NaN (PyTorch), and only that one.
    let mut v = seq(16, |i| i);
    v[5] = f64::NAN;
    let y = flat(&max_pool2d(&tensor(v, &[1, 1, 4, 4], DType::F32), 2, 2, "p").unwrap());
    assert!(y[0].is_nan() && y[1..] == [7.0, 13.0, 15.0], "{y:?}");
}

#[test]
fn bad_shapes_are_errors() {
    let (x, w, b) = fixture(DType::F32);
    let p = Conv2dParams::new(1, 0);
    let w_bad = Tensor::zeros((3, 4, 3, 3), DType::F32, &Device::Cpu).unwrap();
    let e = conv2d(&x, &w_bad, None, p, "conv.1").unwrap_err().to_string();
    assert!(e.contains("conv.1") && e.contains("channels"), "{e}");
    assert!(conv2d(&x.flatten_all().unwrap(), &w, None, p, "c").is_err());
    let b_bad = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    assert!(conv2d(&x, &w, Some(&b_bad), p, "c").is_err());
    let big = Tensor::zeros((3, 2, 9, 9), DType::F32, &Device::Cpu).unwrap();
    assert!(conv2d(&x, &big, None, p, "c").unwrap_err().to_string().contains("does not fit"));
    assert!(conv2d(&x, &w, Some(&b), Conv2dParams::new(0, 0), "c").is_err());
    assert!(max_pool2d(&x, 6, 6, "p").is_err());
    assert!(max_pool2d(&x.flatten_all().unwrap(), 2, 2, "p").is_err());
    let g = Tensor::ones(3, DType::F32, &Device::Cpu).unwrap();
    assert!(batch_norm_train(&x, &g, &g, 1e-5, false, "bn").is_err(), "2 channels, 3 parameters");
    let one = Tensor::ones((1, 3, 1, 1), DType::F32, &Device::Cpu).unwrap();
    assert!(batch_norm_train(&one, &g, &g, 1e-5, false, "bn").unwrap_err().to_string().contains(">= 2"));
}

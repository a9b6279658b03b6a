//! The language-model ops: forward against literal values from `tests/reference/lm_ops.py`
//! (numpy, float64), gradients against central finite differences in `f64`.

use candle_core::{DType, Device, Tensor, Var};
use dgating_nn::ops::{
    LAYER_NORM_EPS, causal_attention, causal_attention_reference, causal_softmax, causal_softmax_reference, gelu,
    gelu_reference, layer_norm, layer_norm_reference,
};

fn wave(n: usize, a: f64, b: f64) -> Vec<f64> {
    (0..n).map(|i| (a * i as f64 + b).sin()).collect()
}

fn t(v: Vec<f64>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn close(actual: &Tensor, expected: &[f64], tol: f64) {
    let a = actual.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(a.len(), expected.len());
    for (i, (x, y)) in a.iter().zip(expected).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "element {i}: {x} vs {y}");
    }
}

/// Checks the autograd gradient of `Σ f(inputs) ⊙ r` (a fixed random-looking weighting `r`)
/// against central differences for every element of every input.
fn check_grad(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor) {
    let vars: Vec<Var> = inputs.iter().map(|x| Var::from_tensor(x).unwrap()).collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let out = f(&ts);
    let r = t(wave(out.elem_count(), 2.3, 0.4), out.dims());
    let loss = |o: &Tensor| (o * &r).unwrap().sum_all().unwrap();
    let grads = loss(&out).backward().unwrap();
    let h = 1e-6;
    for (k, v) in vars.iter().enumerate() {
        let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("no gradient for input {k}"));
        let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let base = inputs[k].flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for i in 0..base.len() {
            let eval = |d: f64| {
                let mut p = base.clone();
                p[i] += d;
                let mut xs: Vec<Tensor> = inputs.to_vec();
                xs[k] = t(p, inputs[k].dims());
                loss(&f(&xs)).to_scalar::<f64>().unwrap()
            };
            let fd = (eval(h) - eval(-h)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() <= 1e-6 * (1.0 + fd.abs()),
                "input {k} element {i}: autograd {} vs fd {fd}",
                g[i]
            );
        }
    }
}

#[test]
fn layer_norm_matches_the_reference_and_its_gradient() {
    let x = t(wave(10, 0.7, 0.3).iter().map(|v| 2.0 * v).collect(), &[2, 5]);
    let w = t((0..5).map(|i| 1.0 + 0.1 * i as f64).collect(), &[5]);
    let b = t((0..5).map(|i| 0.05 * i as f64 - 0.1).collect(), &[5]);
    // tests/reference/lm_ops.py: layer_norm [2, 5]
    let expected = [
        -8.7879151780e-01,
        8.0263575883e-01,
        1.4431359481e+00,
        4.4340981440e-01,
        -2.0021953730e+00,
        -3.2746041812e-01,
        -1.1730508380e+00,
        -9.8017813938e-01,
        4.2563478363e-01,
        2.5867934112e+00,
    ];
    close(&layer_norm(&x, &w, &b, LAYER_NORM_EPS).unwrap(), &expected, 1e-9);
    // f32 agrees to f32 precision.
    let f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    close(&layer_norm(&f32(&x), &f32(&w), &f32(&b), LAYER_NORM_EPS).unwrap(), &expected, 1e-5);
    check_grad(&[x, w, b], |v| layer_norm(&v[0], &v[1], &v[2], LAYER_NORM_EPS).unwrap());
    // A wrong parameter shape is an error, not a broadcast.
    let bad = t(vec![1.0; 4], &[4]);
    assert!(layer_norm(&t(vec![0.0; 10], &[2, 5]), &bad, &bad, 1e-5).is_err());
}

#[test]
fn causal_softmax_masks_the_future_and_back_propagates() {
    let s = t(wave(12, 1.1, 0.2).iter().map(|v| 3.0 * v).collect(), &[3, 4]);
    // tests/reference/lm_ops.py: causal_softmax (3 queries, 4 keys): query i sees keys <= i + 1.
    let expected = [
        9.1565638191e-02,
        9.0843436181e-01,
        0.0,
        0.0,
        1.0921737053e-02,
        4.1254962625e-02,
        9.4782330032e-01,
        0.0,
        8.3908202138e-01,
        3.7365247461e-02,
        1.2915392530e-02,
        1.1063733863e-01,
    ];
    close(&causal_softmax(&s).unwrap(), &expected, 1e-9);
    check_grad(&[s], |v| causal_softmax(&v[0]).unwrap());
}

#[test]
fn causal_attention_matches_the_reference_and_its_gradient() {
    let q = t(wave(16, 0.9, 0.1), &[1, 2, 2, 4]);
    let k = t(wave(24, 0.5, 1.0), &[1, 2, 3, 4]);
    let v = t(wave(24, 1.7, -0.4), &[1, 2, 3, 4]);
    // tests/reference/lm_ops.py: causal_attention (q 2, kv 3): 2 queries after one cached key.
    let expected = [
        -3.0821065136e-01,
        9.6457441004e-01,
        5.9650447213e-02,
        -9.7994567345e-01,
        3.2232612098e-01,
        8.3723808595e-01,
        -5.3807315656e-01,
        -6.9858255845e-01,
        9.4663453371e-01,
        7.8223251369e-02,
        -9.6679180424e-01,
        1.7090835084e-01,
        8.6818366437e-01,
        -3.8277509975e-01,
        -7.6954673606e-01,
        5.8107881984e-01,
    ];
    close(&causal_attention(&q, &k, &v).unwrap(), &expected, 1e-9);
    check_grad(&[q, k, v], |x| causal_attention(&x[0], &x[1], &x[2]).unwrap());
    // More queries than keys, or mismatched heads: errors.
    let k1 = t(wave(8, 0.5, 1.0), &[1, 2, 1, 4]);
    assert!(causal_attention(&t(wave(16, 0.9, 0.1), &[1, 2, 2, 4]), &k1, &k1).is_err());
}

#[test]
fn gelu_is_the_tanh_approximation_with_a_gradient() {
    let x = t((0..7).map(|i| -3.0 + i as f64).collect(), &[7]);
    // tests/reference/lm_ops.py: gelu (tanh approximation, GPT-2's `gelu_new`)
    let expected = [
        -3.6373920818e-03,
        -4.5402305912e-02,
        -1.5880800939e-01,
        0.0,
        8.4119199061e-01,
        1.9545976941e+00,
        2.9963626079e+00,
    ];
    close(&gelu(&x).unwrap(), &expected, 1e-9);
    close(&gelu_reference(&x).unwrap(), &expected, 1e-9);
    let x = t(wave(9, 1.3, 0.2).iter().map(|v| 2.5 * v).collect(), &[9]);
    check_grad(std::slice::from_ref(&x), |v| gelu(&v[0]).unwrap());
    check_grad(std::slice::from_ref(&x), |v| gelu_reference(&v[0]).unwrap());
    // The fused op and candle's agree in f32 on a large input (values and gradients).
    let big = Tensor::from_vec(
        (0..40_000).map(|i| ((i as f32) * 0.37).sin() * 4.0).collect::<Vec<_>>(),
        (200, 200),
        &Device::Cpu,
    )
    .unwrap();
    let (a, b) = (Var::from_tensor(&big).unwrap(), Var::from_tensor(&big).unwrap());
    let (ya, yb) = (gelu(a.as_tensor()).unwrap(), gelu_reference(b.as_tensor()).unwrap());
    close(&ya, &yb.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap(), 1e-5);
    let ga = (ya.sqr().unwrap().sum_all().unwrap()).backward().unwrap();
    let gb = (yb.sqr().unwrap().sum_all().unwrap()).backward().unwrap();
    let gb =
        gb.get(b.as_tensor()).unwrap().flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
    close(ga.get(a.as_tensor()).unwrap(), &gb, 1e-5);
}

/// `f(inputs)` and the gradients of `Σ f ⊙ r` for each input, as f64 vectors.
fn value_and_grads(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor) -> (Vec<f64>, Vec<Vec<f64>>) {
    let vars: Vec<Var> = inputs.iter().map(|x| Var::from_tensor(x).unwrap()).collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let out = f(&ts);
    let r = t(wave(out.elem_count(), 2.3, 0.4), out.dims()).to_dtype(out.dtype()).unwrap();
    let grads = (&out * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let flat = |x: &Tensor| x.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
    (flat(&out), vars.iter().map(|v| flat(grads.get(v.as_tensor()).expect("a gradient"))).collect())
}

/// The fused op and its composite reference agree in values and in every input's gradient
/// within `tol` (relative to 1 + |reference|).
fn fused_matches_reference(
    inputs: &[Tensor],
    fused: impl Fn(&[Tensor]) -> Tensor,
    reference: impl Fn(&[Tensor]) -> Tensor,
    tol: f64,
) {
    let (va, ga) = value_and_grads(inputs, fused);
    let (vb, gb) = value_and_grads(inputs, reference);
    let near = |a: &[f64], b: &[f64], what: &str| {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what} element {i}: fused {x} vs reference {y}");
        }
    };
    near(&va, &vb, "value");
    for (k, (a, b)) in ga.iter().zip(&gb).enumerate() {
        near(a, b, &format!("gradient of input {k}"));
    }
}

#[test]
fn fused_layer_norm_softmax_and_attention_match_their_composite_references() {
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F64 { 1e-12 } else { 2e-5 };
        let x =
            t(wave(6 * 40, 0.71, 0.3).iter().map(|v| 3.0 * v + 0.5).collect(), &[2, 3, 40]).to_dtype(dtype).unwrap();
        let w = t(wave(40, 1.7, 0.9).iter().map(|v| 1.0 + 0.5 * v).collect(), &[40]).to_dtype(dtype).unwrap();
        let b = t(wave(40, 0.3, 2.0), &[40]).to_dtype(dtype).unwrap();
        fused_matches_reference(
            &[x, w, b],
            |v| layer_norm(&v[0], &v[1], &v[2], LAYER_NORM_EPS).unwrap(),
            |v| layer_norm_reference(&v[0], &v[1], &v[2], LAYER_NORM_EPS).unwrap(),
            tol,
        );
        // Square scores (training) and more keys than queries (a KV cache), scaled.
        for (q, k) in [(70, 70), (5, 9)] {
            let s = t(wave(2 * 3 * q * k, 0.37, 0.1).iter().map(|v| 4.0 * v).collect(), &[2, 3, q, k])
                .to_dtype(dtype)
                .unwrap();
            fused_matches_reference(
                std::slice::from_ref(&s),
                |v| dgating_nn::ops::attention::causal_softmax_scaled(&v[0], 0.35).unwrap(),
                |v| causal_softmax_reference(&v[0], 0.35).unwrap(),
                tol,
            );
        }
        let q = t(wave(2 * 4 * 6 * 8, 0.9, 0.1), &[2, 4, 6, 8]).to_dtype(dtype).unwrap();
        let k = t(wave(2 * 4 * 10 * 8, 0.5, 1.0), &[2, 4, 10, 8]).to_dtype(dtype).unwrap();
        let v = t(wave(2 * 4 * 10 * 8, 1.1, 0.7), &[2, 4, 10, 8]).to_dtype(dtype).unwrap();
        fused_matches_reference(
            &[q, k, v],
            |x| causal_attention(&x[0], &x[1], &x[2]).unwrap(),
            |x| causal_attention_reference(&x[0], &x[1], &x[2]).unwrap(),
            tol,
        );
    }
    // The scale must be positive (the row maximum is taken before scaling).
    let s = t(wave(4, 0.3, 0.1), &[2, 2]);
    assert!(dgating_nn::ops::attention::causal_softmax_scaled(&s, -1.0).is_err());
    assert!(dgating_nn::ops::attention::causal_softmax_scaled(&s, f64::NAN).is_err());
}

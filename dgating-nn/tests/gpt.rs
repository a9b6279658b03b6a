//! The GPT: forward against literal numpy logits (`tests/reference/gpt_forward.py`), the
//! gradients of a gated GPT (heads and MLP neurons D-gated) against finite differences in
//! `f64`, the KV cache against the full forward, and the parameter roles.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use dgating_nn::lm::{Sampling, generate, score_tokens};
use dgating_nn::model::gpt_model::forward_with;
use dgating_nn::model::{Gpt, GptConfig, HeadGroup, KvCache};
use dgating_nn::{Architecture, GateInit, Model, ParamRole};

// tests/reference/gpt_forward.py: logits [2, 5, 7]
const REFERENCE: [f64; 70] = [
    -2.8072216044e-01,
    2.5737071930e-01,
    -2.2555554582e-01,
    1.8632289388e-01,
    -1.4096294389e-01,
    9.0967374790e-02,
    -3.7980309551e-02,
    -3.0148922327e-01,
    2.7701828707e-01,
    -2.4343750091e-01,
    2.0185118150e-01,
    -1.5362691051e-01,
    1.0035056113e-01,
    -4.3774146015e-02,
    -3.1255977997e-01,
    3.0251363137e-01,
    -2.8251920887e-01,
    2.5323403655e-01,
    -2.1562116824e-01,
    1.7091751719e-01,
    -1.2059317967e-01,
    -3.1121373060e-01,
    2.8618404359e-01,
    -2.5174308730e-01,
    2.0902346544e-01,
    -1.5943002876e-01,
    1.0459367597e-01,
    -4.6317721031e-02,
    -3.1476508597e-01,
    2.9995168766e-01,
    -2.7527426594e-01,
    2.4154434706e-01,
    -1.9987115200e-01,
    1.5162511937e-01,
    -9.8392837990e-02,
    -2.8354140876e-01,
    2.5914841751e-01,
    -2.2623323365e-01,
    1.8587828530e-01,
    -1.3941066004e-01,
    8.8358463089e-02,
    -3.4400565042e-02,
    -2.6878637798e-01,
    2.4026776575e-01,
    -2.0384785820e-01,
    1.6072433761e-01,
    -1.1231533708e-01,
    6.0212804692e-02,
    -6.1301517036e-03,
    -2.8009533572e-01,
    2.5488183480e-01,
    -2.2128644944e-01,
    1.8041397644e-01,
    -1.3360852237e-01,
    8.2409302072e-02,
    -2.8500021064e-02,
    -2.7214080821e-01,
    2.4399979025e-01,
    -2.0783474794e-01,
    1.6483498224e-01,
    -1.1641455650e-01,
    6.4165794544e-02,
    -9.8069164393e-03,
    -3.1486267035e-01,
    2.9740339305e-01,
    -2.7016389397e-01,
    2.3403995421e-01,
    -1.9021952305e-01,
    1.4014365174e-01,
    -8.5459104032e-02,
];

fn reference_config() -> GptConfig {
    GptConfig {
        vocab_size: 7,
        block_size: 6,
        n_embd: 8,
        head_size: 2,
        heads: vec![3, 0, 1],
        mlp: vec![5, 6, 0],
        group_heads: true,
        group_mlp: true,
        head_group: HeadGroup::Whole,
    }
}

fn wave_tensors(config: &GptConfig, dtype: DType) -> BTreeMap<String, Tensor> {
    let shapes = Architecture::Gpt(config.clone()).structure().unwrap().tensors();
    shapes
        .into_iter()
        .enumerate()
        .map(|(n, (k, shape))| {
            let size: usize = shape.iter().product();
            let v: Vec<f64> = (0..size).map(|i| 0.25 * (0.37 * i as f64 + 1.1 * n as f64 + 0.2).sin()).collect();
            (k, Tensor::from_vec(v, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap())
        })
        .collect()
}

fn ids() -> Tensor {
    Tensor::from_vec(vec![1u32, 4, 6, 0, 2, 3, 3, 5, 1, 0], (2, 5), &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

#[test]
fn forward_matches_the_numpy_reference_with_uneven_and_empty_blocks() {
    let c = reference_config();
    for (dtype, tol) in [(DType::F64, 1e-9), (DType::F32, 1e-5)] {
        let model = Gpt::from_tensors(c.clone(), &wave_tensors(&c, dtype)).unwrap();
        let logits = model.forward(&ids()).unwrap();
        assert_eq!(logits.dims(), [2, 5, 7]);
        for (i, (a, e)) in values(&logits).iter().zip(REFERENCE).enumerate() {
            assert!((a - e).abs() <= tol * (1.0 + e.abs()), "{dtype:?} logit {i}: {a} vs {e}");
        }
        // D-gating the same tensors (balanced) does not change the function.
        let gated = Gpt::gated_from_tensors(c.clone(), &wave_tensors(&c, dtype), Some(3), GateInit::Balanced).unwrap();
        let g = values(&gated.forward(&ids()).unwrap());
        for (a, e) in g.iter().zip(REFERENCE) {
            assert!((a - e).abs() <= tol * 10.0 * (1.0 + e.abs()));
        }
    }
}

#[test]
fn the_kv_cache_gives_the_full_forward_and_generation_is_seeded() {
    let c = reference_config();
    let model = Gpt::from_tensors(c.clone(), &wave_tensors(&c, DType::F64)).unwrap();
    let w = model.effective().unwrap();
    let full = values(&model.forward(&ids()).unwrap());
    let mut cache = KvCache::new();
    let x = ids();
    let a = forward_with(&c, &w, &x.narrow(1, 0, 3).unwrap(), Some(&mut cache), 0.0).unwrap();
    let b = forward_with(&c, &w, &x.narrow(1, 3, 1).unwrap(), Some(&mut cache), 0.0).unwrap();
    let d = forward_with(&c, &w, &x.narrow(1, 4, 1).unwrap(), Some(&mut cache), 0.0).unwrap();
    assert_eq!(cache.len(), 5);
    let inc = Tensor::cat(&[a, b, d], 1).unwrap();
    for (i, (p, q)) in values(&inc).iter().zip(&full).enumerate() {
        assert!((p - q).abs() < 1e-12, "position-major logit {i}: {p} vs {q}");
    }
    // The context is enforced: 6 positions fit, a 7th is an error, not a panic.
    let long = Tensor::from_vec(vec![1u32; 7], (1, 7), &Device::Cpu).unwrap();
    assert!(forward_with(&c, &w, &long, None, 0.0).is_err());
    // Generation slides past the context; sampling is seeded.
    let s = Sampling { temperature: 0.8, top_k: Some(3), seed: 7 };
    let one = generate(&c, &w, &[1, 2], 12, &s).unwrap();
    assert_eq!(one, generate(&c, &w, &[1, 2], 12, &s).unwrap());
    assert_eq!(one.len(), 12);
    assert!(generate(&c, &w, &[1; 7], 1, &Sampling::greedy()).unwrap_err().to_string().contains("block_size"));
    assert!(generate(&c, &w, &[9], 1, &Sampling::greedy()).is_err(), "token outside the vocabulary");
    // Scoring a sequence longer than the context uses windows; a short one is one forward.
    let tokens: Vec<u32> = (0..20).map(|i| (i * 3 % 7) as u32).collect();
    let sc = score_tokens(&c, &w, &tokens, 2).unwrap();
    assert_eq!(sc.tokens, 19);
    assert!(sc.mean_nll.is_finite() && (sc.perplexity - sc.mean_nll.exp()).abs() < 1e-9);
}

#[test]
fn gated_gpt_gradients_match_finite_differences() {
    gated_gradients_match_finite_differences(HeadGroup::Whole);
}

#[test]
fn output_gated_heads_gradients_match_finite_differences() {
    gated_gradients_match_finite_differences(HeadGroup::Output);
}

fn gated_gradients_match_finite_differences(head_group: HeadGroup) {
    let c = GptConfig {
        vocab_size: 5,
        block_size: 4,
        n_embd: 4,
        head_size: 2,
        heads: vec![2],
        mlp: vec![3],
        group_heads: true,
        group_mlp: true,
        head_group,
    };
    let model = Gpt::gated_from_tensors(c.clone(), &wave_tensors(&c, DType::F64), Some(3), GateInit::Balanced).unwrap();
    let store = model.params().unwrap();
    // Make the gates unequal so every factor matters.
    for p in store.iter().filter(|p| p.role == ParamRole::Gate) {
        let v = values(p.var.as_tensor()).iter().enumerate().map(|(i, g)| g * (1.0 + 0.1 * i as f64)).collect();
        p.var.set(&Tensor::from_vec(v, p.var.dims(), &Device::Cpu).unwrap()).unwrap();
    }
    let x = Tensor::from_vec(vec![1u32, 3, 0, 4, 2, 2], (2, 3), &Device::Cpu).unwrap();
    let r: Vec<f64> = (0..30).map(|i| (2.3 * i as f64 + 0.4).sin()).collect();
    let r = Tensor::from_vec(r, (2, 3, 5), &Device::Cpu).unwrap();
    let loss = || (model.forward(&x).unwrap() * &r).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
    let grads = (model.forward(&x).unwrap() * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let h = 1e-6;
    let mut checked = 0;
    for p in store.iter() {
        let g = values(grads.get(p.var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {}", p.name)));
        let base = values(p.var.as_tensor());
        let set = |v: Vec<f64>| p.var.set(&Tensor::from_vec(v, p.var.dims(), &Device::Cpu).unwrap()).unwrap();
        for i in (0..base.len()).step_by(3) {
            let mut plus = base.clone();
            plus[i] += h;
            set(plus);
            let up = loss();
            let mut minus = base.clone();
            minus[i] -= h;
            set(minus);
            let down = loss();
            set(base.clone());
            let fd = (up - down) / (2.0 * h);
            assert!((fd - g[i]).abs() <= 1e-6 * (1.0 + fd.abs()), "{} [{i}]: autograd {} vs fd {fd}", p.name, g[i]);
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked}");
    // Roles: heads and MLP members are omegas, their gate matrices gates, the rest ungated.
    let role = |k: &str| store.get(k).unwrap().role;
    // An output group leaves q and k outside the gates (and the penalty).
    let qk = if head_group == HeadGroup::Whole { ParamRole::Omega } else { ParamRole::Ungated };
    assert_eq!(role("blocks.0.attn.q.weight"), qk);
    assert_eq!(role("blocks.0.attn.k.bias"), qk);
    assert_eq!(role("blocks.0.attn.v.weight"), ParamRole::Omega);
    assert_eq!(role("blocks.0.attn.v.bias"), ParamRole::Omega);
    assert_eq!(role("blocks.0.attn.proj.weight"), ParamRole::Omega);
    assert_eq!(role("blocks.0.attn.proj.bias"), ParamRole::Ungated);
    assert_eq!(role("blocks.0.mlp.fc.bias"), ParamRole::Omega);
    assert_eq!(role("blocks.0.attn.gates"), ParamRole::Gate);
    assert_eq!(role("blocks.0.mlp.gates"), ParamRole::Gate);
    assert_eq!(role("wte.weight"), ParamRole::Ungated);
}

#[test]
fn head_group_reads_old_configs_as_whole_and_round_trips() {
    let whole = reference_config();
    let text = serde_json::to_string(&whole).unwrap();
    // Written as before the field existed, and read back as `Whole`.
    assert!(!text.contains("head_group"), "{text}");
    assert_eq!(serde_json::from_str::<GptConfig>(&text).unwrap(), whole);
    let output = GptConfig { head_group: HeadGroup::Output, ..whole };
    let text = serde_json::to_string(&output).unwrap();
    assert!(text.contains(r#""head_group":"output""#), "{text}");
    assert_eq!(serde_json::from_str::<GptConfig>(&text).unwrap(), output);
    let bad = text.replace(r#""output""#, r#""queries""#);
    assert!(serde_json::from_str::<GptConfig>(&bad).is_err());
}

//! `write_gpt2_dir` is the inverse of `read_gpt2_dir`: a pruned GPT (different head counts per
//! block, a block with no head, different MLP widths) written as a transformers GPT-2 directory
//! (`pruned_heads`, a zero head, zero-padded MLPs) reads back with the same function. Whether
//! transformers itself loads it is checked by `tests/reference/gpt2_export_check.py` (optional
//! to run; its last recorded output is in docs/LANGUAGE.md).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use dgating_nn::Model;
use dgating_nn::lm::gpt2::read_gpt2_dir;
use dgating_nn::lm::gpt2_export::write_gpt2_dir;
use dgating_nn::model::{Architecture, Gpt, GptConfig};

/// A pruned shape: 4 heads of size 4 originally (n_embd 16); block 0 lost every head,
/// block 1 kept heads 0, 2 and 3; MLP widths 8 and 5.
fn pruned_config() -> GptConfig {
    let mut c = GptConfig::nano(11, 8, 2, 4, 16).unwrap();
    c.heads = vec![0, 3];
    c.mlp = vec![8, 5];
    c
}

/// Every tensor filled with a deterministic pattern (biases and LayerNorms too, so that a
/// misplaced bias or a swapped q/k/v shows).
fn weights(config: &GptConfig) -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    for (i, (key, shape)) in Architecture::Gpt(config.clone()).structure().unwrap().tensors().into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|j| (0.37 * (j as f32 + 1.0) + 1.3 * i as f32).sin() * 0.4).collect();
        out.insert(key, Tensor::from_vec(v, shape, &Device::Cpu).unwrap());
    }
    out
}

fn logits(config: &GptConfig, w: &BTreeMap<String, Tensor>) -> Vec<f32> {
    let model = Gpt::from_tensors(config.clone(), w).unwrap();
    let ids: Vec<u32> = (0..8).map(|i| (5 * i + 2) % 11).collect();
    let x = Tensor::from_vec(ids, (1, 8), &Device::Cpu).unwrap();
    model.forward(&x).unwrap().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn a_pruned_gpt_written_for_transformers_reads_back_with_the_same_function() {
    let config = pruned_config();
    let w = weights(&config);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("hf");
    let kept = BTreeMap::from([("blocks.1.heads".to_string(), vec![0, 2, 3])]);
    let r = write_gpt2_dir(&config, &w, &kept, None, &out).unwrap();
    assert_eq!((r.n_head, r.heads.clone(), r.n_inner, r.padded_neurons), (4, vec![1, 3], 8, 3));
    assert_eq!((r.pruned_heads.clone(), r.zero_head_layers.clone()), (vec![vec![1, 2, 3], vec![1]], vec![0]));

    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["pruned_heads"], serde_json::json!({"0": [1, 2, 3], "1": [1]}), "{cfg}");
    assert_eq!((cfg["n_head"].as_u64(), cfg["n_inner"].as_u64(), cfg["n_embd"].as_u64()), (Some(4), Some(8), Some(16)));

    let (back, tensors) = read_gpt2_dir(&out, &Device::Cpu).unwrap();
    assert_eq!((back.heads.clone(), back.mlp.clone(), back.head_size), (vec![1, 3], vec![8, 8], 4));
    let (a, b) = (logits(&config, &w), logits(&back, &tensors));
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(diff <= 1e-6 * scale, "max |diff| {diff} (scale {scale})");
    // The kept heads are stored in c_attn in their original order: q of head 2 (our row block 1).
    let c_attn = tensors["blocks.1.attn.q.weight"].narrow(0, 4, 4).unwrap();
    let ours = w["blocks.1.attn.q.weight"].narrow(0, 4, 4).unwrap();
    assert_eq!(c_attn.to_vec2::<f32>().unwrap(), ours.to_vec2::<f32>().unwrap());
}

#[test]
fn an_unpruned_gpt_has_no_pruned_heads_and_keeps_its_sizes() {
    let config = GptConfig::nano(11, 8, 2, 4, 16).unwrap();
    let w = weights(&config);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("hf");
    let r = write_gpt2_dir(&config, &w, &BTreeMap::new(), None, &out).unwrap();
    assert_eq!((r.heads.clone(), r.padded_neurons, r.n_inner), (vec![4, 4], 0, 64));
    let (back, tensors) = read_gpt2_dir(&out, &Device::Cpu).unwrap();
    assert_eq!(back, config);
    assert_eq!(logits(&config, &w), logits(&back, &tensors));
}

#[test]
fn bad_exports_are_clear_errors() {
    let config = pruned_config();
    let w = weights(&config);
    let tmp = tempfile::tempdir().unwrap();
    // Kept heads that do not match the block's head count.
    let kept = BTreeMap::from([("blocks.1.heads".to_string(), vec![0, 2])]);
    let e = write_gpt2_dir(&config, &w, &kept, None, &tmp.path().join("a")).unwrap_err().to_string();
    assert!(e.contains("block 1") && e.contains("kept heads"), "{e}");
    // A missing tensor.
    let mut missing = w.clone();
    missing.remove("blocks.1.mlp.fc.bias");
    let e = write_gpt2_dir(&config, &missing, &BTreeMap::new(), None, &tmp.path().join("b")).unwrap_err().to_string();
    assert!(e.contains("blocks.1.mlp.fc.bias"), "{e}");
    // A non-empty directory.
    std::fs::write(tmp.path().join("x"), "x").unwrap();
    let e = write_gpt2_dir(&config, &w, &BTreeMap::new(), None, tmp.path()).unwrap_err().to_string();
    assert!(e.contains("not empty"), "{e}");
}

#[test]
fn bad_pruned_heads_in_a_config_are_clear_errors() {
    let config = GptConfig::nano(11, 8, 2, 4, 16).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("hf");
    write_gpt2_dir(&config, &weights(&config), &BTreeMap::new(), None, &out).unwrap();
    let path = out.join("config.json");
    let good: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for (pruned, expect) in [
        (serde_json::json!({"2": [0]}), "layer 2 is out of range"),
        (serde_json::json!({"0": [4]}), "below n_head"),
        (serde_json::json!({"0": [1, 1]}), "twice"),
        (serde_json::json!({"x": [1]}), "not an integer"),
        (serde_json::json!([1]), "not an object"),
        // The config says head 1 is gone but the tensors still hold 4 heads.
        (serde_json::json!({"0": [1]}), "h.0.attn.c_attn.weight"),
    ] {
        let mut cfg = good.clone();
        cfg["pruned_heads"] = pruned;
        std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        let e = read_gpt2_dir(&out, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains(expect), "{expect}: {e}");
    }
}

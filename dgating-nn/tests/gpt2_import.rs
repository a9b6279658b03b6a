//! A transformers GPT-2 directory (tests/data/gpt2-tiny, written by transformers itself from a
//! random `GPT2Config`: tests/reference/gpt2_fixture.py) is read with the same function:
//! transformers' own mean NLL and logits, recorded by that script, are reproduced — also by the
//! D-gated run `import_gpt2` writes. Broken directories are clear errors.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use dgating_nn::Model;
use dgating_nn::lm::gpt2::{import_gpt2, read_gpt2_dir};
use dgating_nn::lm::run::{detached, load_run};
use dgating_nn::lm::score_tokens;
use dgating_nn::model::Gpt;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gpt2-tiny")
}

fn ids() -> Vec<u32> {
    (0..16).map(|i| (7 * i + 3) % 61).collect()
}

// tests/reference/gpt2_fixture.py (torch 2.15.0, transformers 5.24.0): `model(ids, labels=ids).loss`.
const NLL_16: f64 = 4.4075832367;
const NLL_9: f64 = 4.2722353935;

#[test]
fn transformers_gpt2_is_read_with_the_same_function() {
    let (config, tensors) = read_gpt2_dir(&fixture(), &Device::Cpu).unwrap();
    assert_eq!((config.vocab_size, config.block_size, config.n_embd, config.heads.clone()), (61, 16, 24, vec![4, 4]));
    let model = Gpt::from_tensors(config.clone(), &tensors).unwrap();
    let w = detached(&model).unwrap();
    let s16 = score_tokens(&config, &w, &ids(), 4).unwrap();
    let s9 = score_tokens(&config, &w, &ids()[..9], 4).unwrap();
    assert_eq!(s16.tokens, 15);
    assert!((s16.mean_nll - NLL_16).abs() < 2e-6, "{} vs {NLL_16}", s16.mean_nll);
    assert!((s9.mean_nll - NLL_9).abs() < 2e-6, "{} vs {NLL_9}", s9.mean_nll);
    let x = Tensor::from_vec(ids(), (1, 16), &Device::Cpu).unwrap();
    let logits = model.forward(&x).unwrap().to_dtype(DType::F64).unwrap();
    // logits[0, 5, :6] and logits[0, 15, -3:] from the same script.
    let at5: Vec<f64> = logits.get(0).unwrap().get(5).unwrap().narrow(0, 0, 6).unwrap().to_vec1().unwrap();
    let at15: Vec<f64> = logits.get(0).unwrap().get(15).unwrap().narrow(0, 58, 3).unwrap().to_vec1().unwrap();
    let expected5 = [-0.25542638, 0.35398841, 0.73700213, -0.47358751, 0.05552980, 0.70901799];
    let expected15 = [1.08736813, 0.47138506, -0.83398503];
    for (a, e) in at5.iter().chain(&at15).zip(expected5.iter().chain(&expected15)) {
        assert!((a - e).abs() < 1e-5, "{a} vs {e}");
    }
}

#[test]
fn the_imported_gated_run_scores_like_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let r = import_gpt2(&fixture(), &out, Some(3), None).unwrap();
    assert!(r.tokenizer.is_none());
    let (cfg, model, tok) = load_run(&out, &Device::Cpu).unwrap();
    assert!(tok.is_none() && cfg.depth == Some(3) && model.gate_sets().len() == 4);
    let s = score_tokens(cfg.gpt().unwrap(), &detached(&model).unwrap(), &ids(), 4).unwrap();
    assert!((s.mean_nll - NLL_16).abs() < 1e-5, "{} vs {NLL_16}", s.mean_nll);
    // A non-empty output directory is refused.
    assert!(import_gpt2(&fixture(), &out, Some(3), None).is_err());
}

fn copy_fixture(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture().join(f), to.join(f)).unwrap();
    }
}

fn error_of(dir: &Path) -> String {
    read_gpt2_dir(dir, &Device::Cpu).unwrap_err().to_string()
}

fn rewrite_tensors(dir: &Path, edit: impl Fn(&mut Vec<(String, Tensor)>)) {
    let path = dir.join("model.safetensors");
    let mut tensors: Vec<(String, Tensor)> =
        candle_core::safetensors::load(&path, &Device::Cpu).unwrap().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    edit(&mut tensors);
    let map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
    candle_core::safetensors::save(&map, &path).unwrap();
}

#[test]
fn broken_gpt2_directories_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("unknown-field");
    copy_fixture(&d);
    let cfg = std::fs::read_to_string(d.join("config.json")).unwrap().replacen('{', "{\"rotary_dim\": 8,", 1);
    std::fs::write(d.join("config.json"), cfg).unwrap();
    assert!(error_of(&d).contains("unknown config field `rotary_dim`"), "{}", error_of(&d));

    let d = tmp.path().join("activation");
    copy_fixture(&d);
    let cfg = std::fs::read_to_string(d.join("config.json")).unwrap().replace("gelu_new", "relu");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    assert!(error_of(&d).contains("activation_function `relu`"), "{}", error_of(&d));

    let d = tmp.path().join("missing");
    copy_fixture(&d);
    rewrite_tensors(&d, |t| t.retain(|(k, _)| k != "transformer.h.1.mlp.c_fc.bias"));
    assert!(error_of(&d).contains("missing tensor `h.1.mlp.c_fc.bias`"), "{}", error_of(&d));

    let d = tmp.path().join("misshaped");
    copy_fixture(&d);
    rewrite_tensors(&d, |t| {
        for (k, v) in t.iter_mut() {
            if k == "transformer.h.0.attn.c_attn.weight" {
                *v = v.t().unwrap().contiguous().unwrap(); // [72, 24] instead of Conv1D's [24, 72]
            }
        }
    });
    let e = error_of(&d);
    assert!(e.contains("h.0.attn.c_attn.weight") && e.contains("[72, 24]") && e.contains("[24, 72]"), "{e}");

    let d = tmp.path().join("extra");
    copy_fixture(&d);
    rewrite_tensors(&d, |t| {
        t.push(("transformer.h.9.attn.c_attn.weight".into(), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap()))
    });
    assert!(error_of(&d).contains("unknown tensor `h.9.attn.c_attn.weight`"), "{}", error_of(&d));

    let d = tmp.path().join("no-weights");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(fixture().join("config.json"), d.join("config.json")).unwrap();
    assert!(error_of(&d).contains("model.safetensors"), "{}", error_of(&d));

    // A tokenizer with more tokens than the model's vocabulary is refused at import.
    let d = tmp.path().join("vocab");
    copy_fixture(&d);
    let text: String = (0..100u32).filter_map(|c| char::from_u32(0x4e00 + c)).collect();
    dgating_nn::lm::LmTokenizer::char_level(&text).unwrap().save(&d.join("tokenizer.json")).unwrap();
    let e = import_gpt2(&d, &tmp.path().join("out"), Some(3), None).unwrap_err().to_string();
    assert!(e.contains("mismatch") && e.contains("100") && e.contains("61"), "{e}");
}

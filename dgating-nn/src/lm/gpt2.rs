//! Reading a Hugging Face transformers GPT-2 directory (`config.json` + `model.safetensors`)
//! into a [`Gpt`](crate::model::Gpt) with the same function.
//!
//! transformers stores GPT-2's linear layers as `Conv1D` with weights `[in, out]` (the
//! transpose of ours), and `attn.c_attn` holds q, k and v side by side (`[C, 3C]`: columns
//! `[0, C)` are q, `[C, 2C)` k, `[2C, 3C)` v). Keys may carry the `transformer.` prefix of
//! `GPT2LMHeadModel`; `lm_head.weight`, when stored, must equal `wte` (GPT-2 ties them).
//! Only configurations whose function this crate computes are accepted: tanh-GELU
//! (`gelu_new`), `layer_norm_epsilon = 1e-5`, scaled attention without the per-layer scaling,
//! no cross-attention. A `pruned_heads` config (`{layer: [head, ...]}`, transformers 4.x's head
//! pruning, which [`write_gpt2_dir`](crate::lm::gpt2_export::write_gpt2_dir) writes) gives the
//! blocks fewer heads: `c_attn` is then `[C, 3·H_l·hs]` and `c_proj` `[H_l·hs, C]`. Every other difference — an unknown config field, a missing,
//! misshaped or extra tensor, an untied head — is an error that names it.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::GptConfig;

/// `config.json` fields of transformers' `GPT2Config` (and `PretrainedConfig`) that are
/// understood: the ones that set sizes are read, the ones that change the function are
/// checked, the rest (dropouts, generation and summary settings) do not change inference.
pub const KNOWN_CONFIG_FIELDS: &[&str] = &[
    "_name_or_path",
    "activation_function",
    "add_cross_attention",
    "architectures",
    "attn_pdrop",
    "bos_token_id",
    "dtype",
    "embd_pdrop",
    "eos_token_id",
    "initializer_range",
    "layer_norm_epsilon",
    "model_type",
    "n_ctx",
    "n_embd",
    "n_head",
    "n_inner",
    "n_layer",
    "n_positions",
    "output_attentions",
    "output_hidden_states",
    "pad_token_id",
    "pruned_heads",
    "reorder_and_upcast_attn",
    "resid_pdrop",
    "return_dict",
    "scale_attn_by_inverse_layer_idx",
    "scale_attn_weights",
    "summary_activation",
    "summary_first_dropout",
    "summary_proj_to_labels",
    "summary_type",
    "summary_use_proj",
    "task_specific_params",
    "tie_word_embeddings",
    "torch_dtype",
    "transformers_version",
    "use_cache",
    "vocab_size",
];

fn bad(path: &Path, message: String) -> Error {
    Error::data(path.display().to_string(), message)
}

/// Reads and checks a GPT-2 `config.json`; returns the architecture (nanoGPT layout, heads
/// and MLP neurons as groups).
pub fn read_gpt2_config(path: &Path) -> Result<GptConfig> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(path, format!("not valid JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| bad(path, "not a JSON object".into()))?;
    if let Some(k) = obj.keys().find(|k| !KNOWN_CONFIG_FIELDS.contains(&k.as_str())) {
        return Err(bad(path, format!("unknown config field `{k}` (this importer reads GPT-2 configs only)")));
    }
    let size = |k: &str| -> Result<usize> {
        obj.get(k)
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .ok_or_else(|| bad(path, format!("field `{k}` is missing or not a non-negative integer")))
    };
    let flag = |k: &str, default: bool| obj.get(k).and_then(Value::as_bool).unwrap_or(default);
    if let Some(t) = obj.get("model_type").and_then(Value::as_str)
        && t != "gpt2"
    {
        return Err(bad(path, format!("model_type `{t}` is not gpt2")));
    }
    let act = obj.get("activation_function").and_then(Value::as_str).unwrap_or("gelu_new");
    if !matches!(act, "gelu_new" | "gelu_pytorch_tanh") {
        return Err(bad(path, format!("activation_function `{act}` is not supported (only gelu_new, the tanh GELU)")));
    }
    let eps = obj.get("layer_norm_epsilon").and_then(Value::as_f64).unwrap_or(1e-5);
    if (eps - 1e-5).abs() > 1e-12 {
        return Err(bad(path, format!("layer_norm_epsilon {eps} is not supported (only 1e-5)")));
    }
    if !flag("scale_attn_weights", true) || flag("scale_attn_by_inverse_layer_idx", false) {
        return Err(bad(path, "only attention scaled by 1/sqrt(head size) is supported".into()));
    }
    if flag("add_cross_attention", false) || !flag("tie_word_embeddings", true) {
        return Err(bad(path, "cross-attention and untied output heads are not supported".into()));
    }
    let (n_embd, n_head, n_layer) = (size("n_embd")?, size("n_head")?, size("n_layer")?);
    let mut c = GptConfig::nano(size("vocab_size")?, size("n_positions")?, n_layer, n_head, n_embd)
        .map_err(|e| bad(path, e.to_string()))?;
    if let Some(pruned) = obj.get("pruned_heads").filter(|v| !v.is_null()) {
        for (l, heads) in read_pruned_heads(pruned, n_layer, n_head).map_err(|m| bad(path, m))? {
            c.heads[l] = n_head - heads.len();
        }
    }
    if let Some(inner) = obj.get("n_inner").filter(|v| !v.is_null()) {
        let m = inner.as_u64().ok_or_else(|| bad(path, "n_inner is not an integer".into()))? as usize;
        c.mlp = vec![m; n_layer];
    }
    c.check().map_err(|e| bad(path, e.to_string()))?;
    Ok(c)
}

/// transformers' `pruned_heads` (`{"layer": [head, ...]}`, keys are strings in JSON): the heads
/// removed from each layer, checked (layer and head in range, no head twice).
pub fn read_pruned_heads(
    v: &Value,
    n_layer: usize,
    n_head: usize,
) -> std::result::Result<BTreeMap<usize, Vec<usize>>, String> {
    let obj = v.as_object().ok_or("pruned_heads is not an object {layer: [heads]}")?;
    let mut out = BTreeMap::new();
    for (k, heads) in obj {
        let l: usize = k.parse().map_err(|_| format!("pruned_heads: layer `{k}` is not an integer"))?;
        if l >= n_layer {
            return Err(format!("pruned_heads: layer {l} is out of range (n_layer {n_layer})"));
        }
        let list = heads.as_array().ok_or_else(|| format!("pruned_heads[{l}] is not a list"))?;
        let mut hs = Vec::with_capacity(list.len());
        for h in list {
            let h = h.as_u64().map(|h| h as usize).filter(|&h| h < n_head);
            let h =
                h.ok_or_else(|| format!("pruned_heads[{l}]: every head must be an integer below n_head ({n_head})"))?;
            if hs.contains(&h) {
                return Err(format!("pruned_heads[{l}] names head {h} twice"));
            }
            hs.push(h);
        }
        if out.insert(l, hs).is_some() {
            return Err(format!("pruned_heads names layer {l} twice"));
        }
    }
    Ok(out)
}

/// Reads `dir/config.json` and `dir/model.safetensors` of a transformers GPT-2 model into our
/// tensor keys (`f32`, `device`).
pub fn read_gpt2_dir(dir: &Path, device: &Device) -> Result<(GptConfig, BTreeMap<String, Tensor>)> {
    let config = read_gpt2_config(&dir.join("config.json"))?;
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(&path, format!("not a safetensors file: {e}")))?;
    let mut raw: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, view) in st.tensors() {
        let key = name.strip_prefix("transformer.").unwrap_or(&name).to_string();
        let dtype = match view.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            d => return Err(bad(&path, format!("tensor `{name}` has dtype {d:?} (F32, F16 or BF16 expected)"))),
        };
        let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)
            .map_err(|e| bad(&path, format!("tensor `{name}`: {e}")))?;
        raw.insert(key, t.to_dtype(DType::F32)?);
    }
    // The causal-mask buffers older transformers versions save.
    raw.retain(|k, _| !(k.starts_with("h.") && (k.ends_with(".attn.bias") || k.ends_with(".attn.masked_bias"))));
    let (c, m, hs) = (config.n_embd, config.mlp[0], config.head_size);
    let mut take = |key: &str, shape: &[usize]| -> Result<Tensor> {
        let t = raw.remove(key).ok_or_else(|| bad(&path, format!("missing tensor `{key}`")))?;
        if t.dims() != shape {
            return Err(bad(&path, format!("tensor `{key}` has shape {:?}, expected {shape:?}", t.dims())));
        }
        Ok(t)
    };
    let mut out = BTreeMap::new();
    out.insert("wte.weight".to_string(), take("wte.weight", &[config.vocab_size, c])?);
    out.insert("wpe.weight".to_string(), take("wpe.weight", &[config.block_size, c])?);
    out.insert("ln_f.weight".to_string(), take("ln_f.weight", &[c])?);
    out.insert("ln_f.bias".to_string(), take("ln_f.bias", &[c])?);
    let t = |x: Tensor| -> Result<Tensor> { Ok(x.t()?.contiguous()?) };
    for l in 0..config.n_layer() {
        let h = |s: &str| format!("h.{l}.{s}");
        let ours = |s: &str| GptConfig::block(l, s);
        for (theirs, mine) in [("ln_1", "ln1"), ("ln_2", "ln2")] {
            out.insert(ours(&format!("{mine}.weight")), take(&h(&format!("{theirs}.weight")), &[c])?);
            out.insert(ours(&format!("{mine}.bias")), take(&h(&format!("{theirs}.bias")), &[c])?);
        }
        // After head pruning a layer's attention is `a = H_l·hs` wide.
        let a = config.heads[l] * hs;
        let w = take(&h("attn.c_attn.weight"), &[c, 3 * a])?;
        let b = take(&h("attn.c_attn.bias"), &[3 * a])?;
        for (i, x) in ["q", "k", "v"].iter().enumerate() {
            out.insert(ours(&format!("attn.{x}.weight")), t(w.narrow(1, i * a, a)?)?);
            out.insert(ours(&format!("attn.{x}.bias")), b.narrow(0, i * a, a)?.contiguous()?);
        }
        out.insert(ours("attn.proj.weight"), t(take(&h("attn.c_proj.weight"), &[a, c])?)?);
        out.insert(ours("attn.proj.bias"), take(&h("attn.c_proj.bias"), &[c])?);
        out.insert(ours("mlp.fc.weight"), t(take(&h("mlp.c_fc.weight"), &[c, m])?)?);
        out.insert(ours("mlp.fc.bias"), take(&h("mlp.c_fc.bias"), &[m])?);
        out.insert(ours("mlp.proj.weight"), t(take(&h("mlp.c_proj.weight"), &[m, c])?)?);
        out.insert(ours("mlp.proj.bias"), take(&h("mlp.c_proj.bias"), &[c])?);
    }
    if let Some(head) = raw.remove("lm_head.weight") {
        let wte = &out["wte.weight"];
        let same = head.dims() == wte.dims() && (&head - wte)?.abs()?.max_all()?.to_scalar::<f32>()? == 0.0;
        if !same {
            return Err(bad(&path, "lm_head.weight differs from wte.weight: untied heads are not supported".into()));
        }
    }
    if let Some(k) = raw.keys().next() {
        return Err(bad(&path, format!("unknown tensor `{k}`")));
    }
    let out = out.into_iter().map(|(k, v)| Ok((k, v.to_device(device)?))).collect::<Result<_>>()?;
    Ok((config, out))
}

/// What [`import_gpt2`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Imported {
    /// The run directory.
    pub out_dir: std::path::PathBuf,
    /// The architecture read.
    pub config: GptConfig,
    /// `D` of the function-preserving gates (`None`: ungated).
    pub depth: Option<usize>,
    /// Where the tokenizer came from (`None`: the directory has none).
    pub tokenizer: Option<String>,
}

/// Imports the transformers GPT-2 directory `hf_dir` as a language-model run in `out_dir`
/// (which must not exist or be empty): gates `D = depth` initialized to the balanced
/// factorization of each head and MLP neuron (the gated model computes exactly the imported
/// function), the tokenizer from `tokenizer.json` or `vocab.json` + `merges.txt` when present.
/// `corpus` is the text later `train` calls fine-tune on.
pub fn import_gpt2(hf_dir: &Path, out_dir: &Path, depth: Option<usize>, corpus: Option<String>) -> Result<Imported> {
    use crate::lm::run::{LM_RUN_KIND, LmRunConfig, TextSpec, save_run};
    use crate::lm::tokenizer::{LmTokenizer, TokenizerSpec};
    if out_dir.exists() && std::fs::read_dir(out_dir).map_err(|e| Error::io(out_dir, e))?.next().is_some() {
        return Err(Error::RunDir { dir: out_dir.into(), message: "is not empty; choose a new directory".into() });
    }
    let (config, tensors) = read_gpt2_dir(hf_dir, &Device::Cpu)?;
    let model =
        crate::model::Gpt::gated_from_tensors(config.clone(), &tensors, depth, crate::layers::GateInit::Balanced)?;
    let (tokenizer, spec) = if hf_dir.join("tokenizer.json").exists() {
        let p = hf_dir.join("tokenizer.json");
        (Some(LmTokenizer::from_file(&p)?), TokenizerSpec::File { path: p.display().to_string() })
    } else if hf_dir.join("vocab.json").exists() && hf_dir.join("merges.txt").exists() {
        let (v, m) = (hf_dir.join("vocab.json"), hf_dir.join("merges.txt"));
        let spec = TokenizerSpec::Gpt2 { vocab: v.display().to_string(), merges: m.display().to_string() };
        (Some(LmTokenizer::gpt2(&v, &m)?), spec)
    } else {
        (None, TokenizerSpec::Char)
    };
    if let Some(t) = &tokenizer {
        t.check_model_vocab(config.vocab_size)?;
    }
    let run = LmRunConfig {
        kind: LM_RUN_KIND.into(),
        architecture: crate::model::Architecture::Gpt(config.clone()),
        depth,
        text: TextSpec { corpus, tokenizer: spec.clone(), val_fraction: 0.1 },
        train: crate::lm::LmTrainConfig { depth, ..Default::default() },
        steps_done: 0,
        origin: format!("import-gpt2 {}", hf_dir.display()),
    };
    save_run(out_dir, &run, &model, tokenizer.as_ref())?;
    let tokenizer = tokenizer.map(|_| match spec {
        TokenizerSpec::File { path } => path,
        TokenizerSpec::Gpt2 { vocab, merges } => format!("{vocab} + {merges}"),
        _ => String::new(),
    });
    Ok(Imported { out_dir: out_dir.into(), config, depth, tokenizer })
}

//! Writing a [`Gpt`](crate::model::Gpt)'s weights as a transformers GPT-2 directory
//! (`config.json` + `model.safetensors` + `tokenizer.json`) that `GPT2LMHeadModel.from_pretrained`
//! loads — the inverse of [`read_gpt2_dir`](crate::lm::gpt2::read_gpt2_dir).
//!
//! transformers' GPT-2 has one head count `n_head` (head size `n_embd / n_head`) and one MLP
//! width `n_inner` for every layer. A pruned model fits it this way:
//!
//! * **Heads**: transformers 4.x prunes heads per layer through the config's `pruned_heads`
//!   (`{"layer": [removed heads]}`): at load time `GPT2Attention.prune_heads` shrinks `c_attn` to
//!   `[C, 3·H_l·hs]` and `c_proj` to `[H_l·hs, C]` before the weights are read. We write the
//!   original indices of the removed heads (from the export's kept indices when known) and the
//!   kept heads' weights in their original order. transformers 5 removed head pruning, so such a
//!   directory loads in transformers 4.x only; an unpruned model loads in both.
//! * **A block with no head left** gets one zero head (q, k, v rows and biases and its `c_proj`
//!   rows all zero): its attention output is exactly zero, so the function is unchanged, and
//!   transformers' attention never sees zero heads (which it cannot reshape).
//! * **MLP widths that differ per block** are padded with zero neurons up to the widest block
//!   (`c_fc` column and bias zero, `c_proj` row zero): `gelu(0) = 0`, so a padded neuron adds
//!   exactly nothing. Padding costs the compute the pruning saved in the narrower blocks; the
//!   record says how many neurons were added.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::lm::tokenizer::LmTokenizer;
use crate::model::GptConfig;
use crate::train::checkpoint::{atomic_write, save_tensors};

/// What [`write_gpt2_dir`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gpt2Written {
    /// The directory.
    pub out_dir: PathBuf,
    /// `n_head` of the config (heads of an unpruned layer).
    pub n_head: usize,
    /// Heads of each layer as written (including a zero head added to an empty layer).
    pub heads: Vec<usize>,
    /// The `pruned_heads` of the config: original indices of each layer's removed heads.
    pub pruned_heads: Vec<Vec<usize>>,
    /// Layers that had no head left and got one zero head.
    pub zero_head_layers: Vec<usize>,
    /// `n_inner` of the config (the widest block's MLP; at least 1).
    pub n_inner: usize,
    /// Zero neurons added to make every MLP `n_inner` wide, in total.
    pub padded_neurons: usize,
    /// A `tokenizer.json` was written.
    pub tokenizer: bool,
}

fn bad(dir: &Path, message: String) -> Error {
    Error::data(dir.display().to_string(), message)
}

/// Writes the GPT described by `config` with the effective (folded, ungated) `weights` — keys
/// as [`GptConfig::block`] names them, as `detached` runs and compacted exports hold them — to
/// the new or empty directory `out_dir` as a transformers GPT-2 model. `kept` holds a compacted
/// export's kept groups by dim name: `kept["blocks.{l}.heads"]` lists the original indices of
/// layer `l`'s kept heads (in the order of the weights); a layer without an entry keeps its
/// first `heads[l]` indices (a run: all of them). Every file is written atomically.
pub fn write_gpt2_dir(
    config: &GptConfig,
    weights: &BTreeMap<String, Tensor>,
    kept: &BTreeMap<String, Vec<usize>>,
    tokenizer: Option<&LmTokenizer>,
    out_dir: &Path,
) -> Result<Gpt2Written> {
    config.check()?;
    if out_dir.exists() && std::fs::read_dir(out_dir).map_err(|e| Error::io(out_dir, e))?.next().is_some() {
        return Err(Error::RunDir { dir: out_dir.into(), message: "is not empty; choose a new directory".into() });
    }
    let (c, hs, n_layer) = (config.n_embd, config.head_size, config.n_layer());
    if !c.is_multiple_of(hs) {
        return Err(bad(
            out_dir,
            format!("n_embd {c} is not a multiple of the head size {hs}: GPT-2 needs head size = n_embd / n_head"),
        ));
    }
    let n_head = c / hs;
    if let Some(l) = config.heads.iter().position(|&h| h > n_head) {
        return Err(bad(
            out_dir,
            format!("block {l} has {} heads, more than n_embd / head size = {n_head}", config.heads[l]),
        ));
    }
    let kept_heads: Vec<Vec<usize>> = (0..n_layer)
        .map(|l| kept.get(&GptConfig::heads_dim(l)).cloned().unwrap_or_else(|| (0..config.heads[l]).collect()))
        .collect();
    for (l, k) in kept_heads.iter().enumerate() {
        if k.len() != config.heads[l] || k.iter().any(|&i| i >= n_head) || k.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad(
                out_dir,
                format!(
                    "block {l}: kept heads {k:?} do not fit {} heads of {n_head} (ascending, each once)",
                    config.heads[l]
                ),
            ));
        }
    }
    let n_inner = config.mlp.iter().copied().max().unwrap_or(0).max(1);
    let get = |key: String| -> Result<Tensor> {
        let t = weights.get(&key).ok_or_else(|| bad(out_dir, format!("missing tensor `{key}`")))?;
        Ok(t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?)
    };
    // Our linear weights are `[out, in]`; GPT-2's Conv1D stores `[in, out]`.
    let conv1d = |t: Tensor| -> Result<Tensor> { Ok(t.t()?.contiguous()?) };
    let mut out: Vec<(String, Tensor)> = Vec::new();
    let mut put = |k: &str, t: Tensor| out.push((format!("transformer.{k}"), t));
    put("wte.weight", get("wte.weight".into())?);
    put("wpe.weight", get("wpe.weight".into())?);
    put("ln_f.weight", get("ln_f.weight".into())?);
    put("ln_f.bias", get("ln_f.bias".into())?);
    let (mut heads, mut pruned_heads, mut zero_head_layers, mut padded_neurons) = (vec![], vec![], vec![], 0);
    for (l, kept) in kept_heads.iter().enumerate() {
        let ours = |s: &str| GptConfig::block(l, s);
        let h = |s: &str| format!("h.{l}.{s}");
        for (theirs, mine) in [("ln_1", "ln1"), ("ln_2", "ln2")] {
            put(&h(&format!("{theirs}.weight")), get(ours(&format!("{mine}.weight")))?);
            put(&h(&format!("{theirs}.bias")), get(ours(&format!("{mine}.bias")))?);
        }
        let (mut q, mut k, mut v) =
            (get(ours("attn.q.weight"))?, get(ours("attn.k.weight"))?, get(ours("attn.v.weight"))?);
        let (mut qb, mut kb, mut vb) =
            (get(ours("attn.q.bias"))?, get(ours("attn.k.bias"))?, get(ours("attn.v.bias"))?);
        let mut proj = get(ours("attn.proj.weight"))?;
        let mut written = kept.clone();
        if kept.is_empty() {
            // One zero head in place of none (see the module docs); it takes index 0.
            let z = |s: &[usize]| Tensor::zeros(s, DType::F32, &Device::Cpu);
            (q, k, v) = (z(&[hs, c])?, z(&[hs, c])?, z(&[hs, c])?);
            (qb, kb, vb) = (z(&[hs])?, z(&[hs])?, z(&[hs])?);
            proj = z(&[c, hs])?;
            written = vec![0];
            zero_head_layers.push(l);
        }
        let a = written.len() * hs;
        for (name, t) in [("q", &q), ("k", &k), ("v", &v)] {
            if t.dims() != [a, c] {
                return Err(bad(
                    out_dir,
                    format!(
                        "tensor `{}` has shape {:?}, expected {:?}",
                        ours(&format!("attn.{name}.weight")),
                        t.dims(),
                        [a, c]
                    ),
                ));
            }
        }
        put(&h("attn.c_attn.weight"), conv1d(Tensor::cat(&[&q, &k, &v], 0)?)?);
        put(&h("attn.c_attn.bias"), Tensor::cat(&[&qb, &kb, &vb], 0)?);
        put(&h("attn.c_proj.weight"), conv1d(proj)?);
        put(&h("attn.c_proj.bias"), get(ours("attn.proj.bias"))?);
        pruned_heads.push((0..n_head).filter(|i| !written.contains(i)).collect::<Vec<_>>());
        heads.push(written.len());
        // The MLP, padded with zero neurons to n_inner.
        let m = config.mlp[l];
        let pad = n_inner - m;
        padded_neurons += pad;
        let (mut fc, mut fcb, mut mp) =
            (get(ours("mlp.fc.weight"))?, get(ours("mlp.fc.bias"))?, get(ours("mlp.proj.weight"))?);
        if pad > 0 {
            fc = Tensor::cat(&[&fc, &Tensor::zeros((pad, c), DType::F32, &Device::Cpu)?], 0)?;
            fcb = Tensor::cat(&[&fcb, &Tensor::zeros(pad, DType::F32, &Device::Cpu)?], 0)?;
            mp = Tensor::cat(&[&mp, &Tensor::zeros((c, pad), DType::F32, &Device::Cpu)?], 1)?;
        }
        put(&h("mlp.c_fc.weight"), conv1d(fc)?);
        put(&h("mlp.c_fc.bias"), fcb);
        put(&h("mlp.c_proj.weight"), conv1d(mp)?);
        put(&h("mlp.c_proj.bias"), get(ours("mlp.proj.bias"))?);
    }
    let pruned: serde_json::Map<String, serde_json::Value> = pruned_heads
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.is_empty())
        .map(|(l, p)| (l.to_string(), json!(p)))
        .collect();
    let cfg = json!({
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": c,
        "n_head": n_head,
        "n_layer": n_layer,
        "n_inner": n_inner,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "scale_attn_weights": true,
        "tie_word_embeddings": true,
        "pruned_heads": pruned,
    });
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    save_tensors(&out_dir.join("model.safetensors"), &out, meta)?;
    if let Some(t) = tokenizer {
        t.save(&out_dir.join("tokenizer.json"))?;
    }
    let bytes = serde_json::to_vec_pretty(&cfg).map_err(|e| bad(out_dir, e.to_string()))?;
    atomic_write(&out_dir.join("config.json"), &bytes)?;
    Ok(Gpt2Written {
        out_dir: out_dir.into(),
        n_head,
        heads,
        pruned_heads,
        zero_head_layers,
        n_inner,
        padded_neurons,
        tokenizer: tokenizer.is_some(),
    })
}

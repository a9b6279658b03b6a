//! [`Gpt`]: the model of a [`GptConfig`], gated or not, with a KV cache for generation.
//!
//! The forward runs on one map of effective tensors (`ω ⊙ Πγ` for gate-set members, built
//! once per call so gradients reach `ω` and `γ`); training, scoring, generation and the
//! compacted model all go through [`forward_with`]. Dropout (training only) is applied to the
//! embeddings and to each attention and MLP output before it joins the stream.

use std::collections::BTreeMap;

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use dgating_core::Structure;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::gates::{GateSet, scale_member};
use crate::layers::GateInit;
use crate::model::gpt::GptConfig;
use crate::model::{Architecture, Model};
use crate::ops::{LAYER_NORM_EPS, causal_attention, gelu, layer_norm, linear};
use crate::params::{ParamRole, ParamStore};

/// Keys and values of every block for the positions seen so far (generation).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    blocks: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A GPT (see [`GptConfig`] for the layout). `Clone` shares the variables.
#[derive(Debug, Clone)]
pub struct Gpt {
    config: GptConfig,
    vars: BTreeMap<String, Var>,
    sets: Vec<GateSet>,
}

fn normal(rng: &mut StdRng, n: usize, std: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect()
}

impl Gpt {
    /// nanoGPT's initialization (seeded): weights and embeddings `N(0, 0.02²)`, the two output
    /// projections of each block `N(0, 0.02² / (2·n_layer))`, biases 0, LayerNorms `(1, 0)`.
    /// `depth = Some(D)` D-gates every gate set, gates 1 ([`GateInit::Ones`]) or balanced.
    pub fn new(
        config: GptConfig,
        depth: Option<usize>,
        init: GateInit,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        config.check()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let proj_std = 0.02 / (2.0 * config.n_layer() as f64).sqrt();
        let mut tensors = BTreeMap::new();
        for (key, shape) in Architecture::Gpt(config.clone()).structure()?.tensors() {
            let n: usize = shape.iter().product();
            let values = if key.ends_with(".bias") {
                vec![0.0; n]
            } else if key.contains("ln") {
                vec![1.0; n]
            } else if key.ends_with("proj.weight") {
                normal(&mut rng, n, proj_std)
            } else {
                normal(&mut rng, n, 0.02)
            };
            tensors.insert(key, Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?);
        }
        Self::gated_from_tensors(config, &tensors, depth, init)
    }

    /// The model with the given tensors (copied); `depth = Some(D)` D-gates every gate set
    /// from them without changing the function: gates 1 ([`GateInit::Ones`]) or the balanced
    /// factorization of each group.
    pub fn gated_from_tensors(
        config: GptConfig,
        tensors: &BTreeMap<String, Tensor>,
        depth: Option<usize>,
        init: GateInit,
    ) -> Result<Self> {
        config.check()?;
        let structure = Architecture::Gpt(config.clone()).structure()?;
        let mut vars = BTreeMap::new();
        for (key, shape) in structure.tensors() {
            let t = tensors
                .get(&key)
                .ok_or_else(|| Error::Model { what: "gpt".into(), message: format!("missing tensor `{key}`") })?;
            if t.dims() != shape.as_slice() {
                return Err(Error::Shape { op: key, expected: shape, actual: t.dims().to_vec() });
            }
            vars.insert(key, Var::from_tensor(&t.copy()?)?);
        }
        let (dtype, device) = {
            let t = vars["wte.weight"].as_tensor();
            (t.dtype(), t.device().clone())
        };
        let mut sets = vec![];
        for d in structure.dims() {
            let Some(layout) = d.group_layout()? else { continue };
            let set = GateSet::new(d.name.clone(), GptConfig::gates_key(&d.name), layout);
            sets.push(super::factorize(set, depth, dtype, &device)?);
        }
        let model = Self { config, vars, sets };
        super::balance_new_gates(&model, depth, init)?;
        Ok(model)
    }

    /// The ungated model with the given tensors (copied).
    pub fn from_tensors(config: GptConfig, tensors: &BTreeMap<String, Tensor>) -> Result<Self> {
        Self::gated_from_tensors(config, tensors, None, GateInit::Ones)
    }

    /// The architecture.
    pub fn config(&self) -> &GptConfig {
        &self.config
    }

    /// The device of the variables.
    pub fn device(&self) -> &Device {
        self.vars["wte.weight"].device()
    }

    /// The dtype of the variables.
    pub fn dtype(&self) -> DType {
        self.vars["wte.weight"].dtype()
    }

    /// Every tensor of the function the model computes (`ω ⊙ Πγ` for gate-set members),
    /// differentiable with respect to the variables.
    pub fn effective(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out: BTreeMap<String, Tensor> =
            self.vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        for set in &self.sets {
            let Some(prod) = set.product()? else { continue };
            for m in set.layout().members() {
                if let Some(t) = out.get_mut(&m.name) {
                    *t = scale_member(t, &prod, m)?;
                }
            }
        }
        Ok(out)
    }

    /// Logits `[B, T, vocab]` for token ids `[B, T]` with dropout `p` (training; `p = 0`: the
    /// plain forward).
    pub fn forward_train(&self, ids: &Tensor, dropout: f64) -> Result<Tensor> {
        forward_with(&self.config, &self.effective()?, ids, None, dropout)
    }
}

fn lin(x: &Tensor, w: &BTreeMap<String, Tensor>, layer: &str) -> Result<Tensor> {
    let (b, t, c) = x.dims3()?;
    let weight = &w[&GptConfig::key(layer, "weight")];
    let bias = &w[&GptConfig::key(layer, "bias")];
    let y = linear(&x.reshape((b * t, c))?, weight, Some(bias), layer)?;
    Ok(y.reshape((b, t, weight.dim(0)?))?)
}

fn ln(x: &Tensor, w: &BTreeMap<String, Tensor>, layer: &str) -> Result<Tensor> {
    layer_norm(x, &w[&GptConfig::key(layer, "weight")], &w[&GptConfig::key(layer, "bias")], LAYER_NORM_EPS)
}

fn drop(x: Tensor, p: f64) -> Result<Tensor> {
    if p > 0.0 { Ok(candle_nn::ops::dropout(&x, p as f32)?) } else { Ok(x) }
}

/// The GPT forward on effective tensors `w` (keys of [`GptConfig`]): logits `[B, T, vocab]`
/// for ids `[B, T]` (`u32`). With a `cache`, the ids continue the cached positions (their
/// keys and values are appended); `dropout > 0` only for training.
pub fn forward_with(
    config: &GptConfig,
    w: &BTreeMap<String, Tensor>,
    ids: &Tensor,
    mut cache: Option<&mut KvCache>,
    dropout: f64,
) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    let offset = cache.as_ref().map_or(0, |c| c.len);
    if t == 0 || offset + t > config.block_size {
        return Err(Error::Config(format!(
            "{} positions (after {offset} cached) for a context of {} (block_size)",
            t, config.block_size
        )));
    }
    let wte = &w["wte.weight"];
    let c = config.n_embd;
    let tok = wte.embedding(&ids.flatten_all()?)?.reshape((b, t, c))?;
    let pos = w["wpe.weight"].narrow(0, offset, t)?;
    let mut x = drop(tok.broadcast_add(&pos)?, dropout)?;
    if let Some(cache) = cache.as_deref_mut() {
        cache.blocks.resize(config.n_layer(), None);
    }
    let hs = config.head_size;
    for l in 0..config.n_layer() {
        let blk = |s: &str| GptConfig::block(l, s);
        let heads = config.heads[l];
        let y = if heads == 0 {
            w[&GptConfig::key(&blk("attn.proj"), "bias")].reshape((1, 1, c))?.broadcast_as((b, t, c))?.contiguous()?
        } else {
            let h = ln(&x, w, &blk("ln1"))?;
            let split =
                |y: Tensor| -> Result<Tensor> { Ok(y.reshape((b, t, heads, hs))?.transpose(1, 2)?.contiguous()?) };
            let q = split(lin(&h, w, &blk("attn.q"))?)?;
            let mut k = split(lin(&h, w, &blk("attn.k"))?)?;
            let mut v = split(lin(&h, w, &blk("attn.v"))?)?;
            if let Some(cache) = cache.as_deref_mut() {
                if let Some((pk, pv)) = &cache.blocks[l] {
                    k = Tensor::cat(&[pk, &k], 2)?;
                    v = Tensor::cat(&[pv, &v], 2)?;
                }
                cache.blocks[l] = Some((k.clone(), v.clone()));
            }
            let a = causal_attention(&q, &k, &v)?.transpose(1, 2)?.contiguous()?.reshape((b, t, heads * hs))?;
            lin(&a, w, &blk("attn.proj"))?
        };
        x = (x + drop(y, dropout)?)?;
        let y = if config.mlp[l] == 0 {
            w[&GptConfig::key(&blk("mlp.proj"), "bias")].reshape((1, 1, c))?.broadcast_as((b, t, c))?.contiguous()?
        } else {
            let h = ln(&x, w, &blk("ln2"))?;
            lin(&gelu(&lin(&h, w, &blk("mlp.fc"))?)?, w, &blk("mlp.proj"))?
        };
        x = (x + drop(y, dropout)?)?;
    }
    if let Some(cache) = cache {
        cache.len += t;
    }
    let x = ln(&x, w, "ln_f")?;
    let logits = x.reshape((b * t, c))?.matmul(&wte.t()?)?;
    Ok(logits.reshape((b, t, config.vocab_size))?)
}

/// Logits of the last position of `[B, T, vocab]` logits, as `[B, vocab]`.
pub fn last_logits(logits: &Tensor) -> Result<Tensor> {
    let t = logits.dim(1)?;
    Ok(logits.i((.., t - 1, ..))?.contiguous()?)
}

impl Model for Gpt {
    /// Logits `[B, T, vocab]` for token ids `[B, T]` (`u32`).
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.forward_train(ids, 0.0)
    }

    fn params(&self) -> Result<ParamStore> {
        let mut store = ParamStore::new();
        for (key, var) in &self.vars {
            let role = self.sets.iter().find(|s| s.has_member(key)).map_or(ParamRole::Ungated, |s| s.role_of(key));
            store.push(key.clone(), var.clone(), role)?;
        }
        for set in &self.sets {
            set.register(&mut store)?;
        }
        Ok(store)
    }

    fn gate_sets(&self) -> Vec<GateSet> {
        self.sets.clone()
    }

    fn structure(&self) -> Result<Structure> {
        Architecture::Gpt(self.config.clone()).structure()
    }

    fn architecture(&self) -> Option<Architecture> {
        Some(Architecture::Gpt(self.config.clone()))
    }
}

/// Checks that ids `[B, T]` are below the vocabulary size (an embedding lookup out of range
/// is an error, not a panic).
pub fn check_ids(ids: &[u32], vocab_size: usize) -> Result<()> {
    if let Some((i, &id)) = ids.iter().enumerate().find(|(_, id)| **id as usize >= vocab_size) {
        return Err(Error::Config(format!("token id {id} at position {i} is outside the vocabulary of {vocab_size}")));
    }
    Ok(())
}

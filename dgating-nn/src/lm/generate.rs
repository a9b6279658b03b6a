//! Text generation with a KV cache: greedy, or sampling with temperature and top-k (seeded).
//!
//! The prompt is run once through the model, filling the cache; each new token then costs one
//! position. A prompt longer than the context (`block_size`) is an error. When prompt + new
//! tokens exceed the context, the window slides: the last `block_size − 1` tokens are re-run
//! without cache (positions are absolute, so cached keys cannot be shifted), as nanoGPT does.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::gpt::GptConfig;
use crate::model::gpt_model::{KvCache, check_ids, forward_with, last_logits};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// `0` = greedy (argmax); otherwise logits are divided by it before the softmax.
    pub temperature: f64,
    /// Sample only among the `k` most likely tokens (`None`: all).
    pub top_k: Option<usize>,
    /// Seed of the sampler.
    pub seed: u64,
}

impl Sampling {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, top_k: None, seed: 0 }
    }

    fn check(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) || self.top_k == Some(0) {
            return Err(Error::Config(format!(
                "temperature must be finite and >= 0 and top-k >= 1, got {} and {:?}",
                self.temperature, self.top_k
            )));
        }
        Ok(())
    }
}

/// Index of the largest value (first on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

fn choose(logits: &[f32], s: &Sampling, rng: &mut StdRng) -> u32 {
    if s.temperature == 0.0 {
        return argmax(logits) as u32;
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(s.top_k.unwrap_or(logits.len()).min(logits.len()));
    let m = logits[order[0]] as f64;
    let w: Vec<f64> = order.iter().map(|&i| ((logits[i] as f64 - m) / s.temperature).exp()).collect();
    let mut r = rng.random::<f64>() * w.iter().sum::<f64>();
    for (&i, &wi) in order.iter().zip(&w) {
        if r < wi {
            return i as u32;
        }
        r -= wi;
    }
    order[order.len() - 1] as u32
}

/// Continues `prompt` by `max_new` tokens with the effective tensors `w` (e.g.
/// [`Gpt::effective`](crate::model::Gpt::effective), detached) of a model of `config`.
/// Returns the new tokens only.
pub fn generate(
    config: &GptConfig,
    w: &BTreeMap<String, Tensor>,
    prompt: &[u32],
    max_new: usize,
    sampling: &Sampling,
) -> Result<Vec<u32>> {
    sampling.check()?;
    if prompt.is_empty() {
        return Err(Error::Config("the prompt has no tokens".into()));
    }
    if prompt.len() > config.block_size {
        return Err(Error::Config(format!(
            "the prompt has {} tokens, more than the model's context of {} (block_size); shorten it",
            prompt.len(),
            config.block_size
        )));
    }
    check_ids(prompt, config.vocab_size)?;
    let device = w["wte.weight"].device().clone();
    let mut rng = StdRng::seed_from_u64(sampling.seed);
    let mut context: Vec<u32> = prompt.to_vec();
    let mut cache = KvCache::new();
    let mut pending: Vec<u32> = prompt.to_vec();
    let mut out = Vec::with_capacity(max_new);
    for _ in 0..max_new {
        if cache.len() + pending.len() > config.block_size {
            // Slide the window: re-run the last block_size − 1 tokens without the old cache.
            cache = KvCache::new();
            pending = context[context.len() + 1 - config.block_size..].to_vec();
        }
        let ids = Tensor::from_vec(pending.clone(), (1, pending.len()), &device)?;
        let logits = forward_with(config, w, &ids, Some(&mut cache), 0.0)?;
        let last = last_logits(&logits)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let next = choose(&last, sampling, &mut rng);
        out.push(next);
        context.push(next);
        pending = vec![next];
    }
    Ok(out)
}

//! Mean next-token negative log-likelihood of a token sequence.
//!
//! The sequence is cut into consecutive windows of at most `block_size + 1` tokens that
//! overlap by one (the last token of a window is the first input of the next), so every token
//! after the first is predicted exactly once, from the tokens of its own window before it.
//! For a sequence that fits the context this is exactly transformers' `labels = input_ids`
//! loss.

use std::collections::BTreeMap;

use candle_core::{D, DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::gpt::GptConfig;
use crate::model::gpt_model::{check_ids, forward_with};

/// What [`score_tokens`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Mean negative log-likelihood per predicted token (nats).
    pub mean_nll: f64,
    /// `exp(mean_nll)`.
    pub perplexity: f64,
    /// Tokens predicted (sequence length − 1).
    pub tokens: usize,
}

/// Summed NLL (f64) and count of `targets` under logits `[B, T, V]`.
pub fn nll_sum(logits: &Tensor, targets: &Tensor) -> Result<f64> {
    let (b, t, v) = logits.dims3()?;
    let logits = logits.to_dtype(DType::F32)?.reshape((b * t, v))?;
    let lse = logits.log_sum_exp(D::Minus1)?;
    let picked = logits.gather(&targets.reshape((b * t, 1))?, 1)?.squeeze(1)?;
    Ok((lse - picked)?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?)
}

/// Scores `tokens` with the effective tensors `w` of a model of `config`, `batch` windows per
/// forward.
pub fn score_tokens(config: &GptConfig, w: &BTreeMap<String, Tensor>, tokens: &[u32], batch: usize) -> Result<Score> {
    if tokens.len() < 2 {
        return Err(Error::Config(format!("scoring needs >= 2 tokens, got {}", tokens.len())));
    }
    check_ids(tokens, config.vocab_size)?;
    let device = w["wte.weight"].device().clone();
    let span = config.block_size;
    let starts: Vec<usize> = (0..tokens.len() - 1).step_by(span).collect();
    let mut total = 0.0;
    // Full windows in batches, the (shorter) last window on its own.
    let full: Vec<usize> = starts.iter().copied().filter(|&s| s + span < tokens.len()).collect();
    for chunk in full.chunks(batch.max(1)) {
        let mut x = Vec::with_capacity(chunk.len() * span);
        let mut y = Vec::with_capacity(chunk.len() * span);
        for &s in chunk {
            x.extend_from_slice(&tokens[s..s + span]);
            y.extend_from_slice(&tokens[s + 1..s + span + 1]);
        }
        let x = Tensor::from_vec(x, (chunk.len(), span), &device)?;
        let y = Tensor::from_vec(y, (chunk.len(), span), &device)?;
        total += nll_sum(&forward_with(config, w, &x, None, 0.0)?, &y)?;
    }
    if let Some(&s) = starts.iter().find(|&&s| s + span >= tokens.len()) {
        let n = tokens.len() - 1 - s;
        let x = Tensor::from_vec(tokens[s..s + n].to_vec(), (1, n), &device)?;
        let y = Tensor::from_vec(tokens[s + 1..].to_vec(), (1, n), &device)?;
        total += nll_sum(&forward_with(config, w, &x, None, 0.0)?, &y)?;
    }
    let n = tokens.len() - 1;
    let mean_nll = total / n as f64;
    Ok(Score { mean_nll, perplexity: mean_nll.exp(), tokens: n })
}

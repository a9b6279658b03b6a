//! Language modelling around [`Gpt`](crate::model::Gpt): generation with a KV cache, scoring
//! (mean NLL), corpora and tokenizers, and the training loop with the head-collapse recipe.

pub mod generate;
pub mod score;

pub use generate::{Sampling, argmax, generate};
pub use score::{Score, score_tokens};

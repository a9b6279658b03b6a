//! Language modelling around [`Gpt`](crate::model::Gpt): generation with a KV cache, scoring
//! (mean NLL), corpora and tokenizers, and the training loop with the head-collapse recipe.

pub mod corpus;
pub mod generate;
pub mod gpt2;
pub mod gpt2_export;
pub mod run;
pub mod score;
pub mod tokenizer;
pub mod train;

pub use corpus::{BUILTIN_CORPORA, Corpus, MOBY_DICK};
pub use generate::{Sampling, argmax, generate};
pub use score::{Score, score_tokens};
pub use tokenizer::{LmTokenizer, TokenizerSpec};
pub use train::{GateOptim, LmMetrics, LmTrainConfig, train_lm};

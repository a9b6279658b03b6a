//! # dgating-nn
//!
//! candle-based D-Gated layers, models and the training engine. The only crate of the
//! workspace that depends on a tensor framework (`core ← nn ← prune ← bench/cli`). CPU by
//! default; CUDA kernels behind the `cuda` feature.

pub mod error;

pub use error::{Error, Result};

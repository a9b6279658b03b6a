//! # dgating-prune
//!
//! Finds zeroed D-Gating groups, folds the gates into the weights, collapses layers into
//! smaller dense ones and exports/imports them as safetensors + JSON config
//! (`core ← nn ← prune ← bench/cli`).

pub mod error;

pub use error::{Error, Result};

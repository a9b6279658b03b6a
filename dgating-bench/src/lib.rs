//! # dgating-bench
//!
//! The experiment harness that reproduces the paper's comparisons, plus criterion
//! benchmarks (`cargo bench -p dgating-bench`). Sits on top of the workspace
//! (`core ← nn ← prune ← bench`). Each experiment takes a serde config and returns a serde
//! report that embeds the config, so every number can be reproduced.

pub mod error;
pub mod experiments;
pub mod sweep;

pub use error::{Error, Result};
pub use experiments::synthetic_recovery::{RecoveryConfig, RecoveryReport, RecoveryRow};

//! Experiments: each takes a serde config and returns a serde report.

pub mod lenet_sparsity;
pub mod synthetic_recovery;

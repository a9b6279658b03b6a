//! Experiments: each takes a serde config and returns a serde report.

pub mod synthetic_recovery;

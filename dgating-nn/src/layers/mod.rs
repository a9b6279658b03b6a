//! Layers: thin wrappers around a dense kernel and, when gated, a gate set.

pub mod linear;

pub use linear::{GateInit, GateSite, GatedLinear};

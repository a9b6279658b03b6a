//! Layers: thin wrappers around a dense kernel and, when they have groups, a handle to the
//! [`GateSet`](crate::GateSet) those groups belong to.

pub mod linear;

pub use linear::{GateInit, GateSite, GatedLinear};
pub mod conv;

pub use conv::GatedConv2d;

//! # dgating-nn
//!
//! candle-based D-Gated layers, models and the training engine. The only crate of the
//! workspace that depends on a tensor framework (`core ← nn ← prune ← bench/cli`). CPU by
//! default; CUDA kernels behind the `cuda` feature.

pub mod data;
pub mod error;
pub mod gates;
pub mod layers;
pub mod loss;
pub mod model;
pub mod ops;
pub mod optim;
pub mod params;
pub mod runtime;
pub mod tensor_util;
pub mod train;

pub use error::{Error, Result};
pub use gates::GateSet;
pub use layers::{GateInit, GateSite, GatedLinear};
pub use model::{Architecture, Mlp, MlpConfig, Model, Network, ResidualMlp, ResidualMlpConfig, effective_tensors};
pub use params::{Param, ParamRole, ParamStore};
pub use train::{Mode, TrainConfig, Trainer};

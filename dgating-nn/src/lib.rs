//! # dgating-nn
//!
//! candle-based D-Gated layers, models and the training engine. The only crate of the
//! workspace that depends on a tensor framework (`core ← nn ← prune ← bench/cli`). CPU by
//! default (`TrainConfig::device`); CUDA kernels behind the `cuda` feature.
//!
//! A model is described once: its [`Architecture`] (serde, tagged `"type"`) rebuilds it at any
//! sizes and gives its [`Structure`](dgating_core::Structure) (what can shrink, and every tensor
//! slice coupled to it); its [`GateSet`]s hold the groups of each dim and their gates, shared by
//! every layer whose slices they are. The training engine, the metrics and `dgating-prune` work
//! on those and never on a model type (docs/METHOD.md §3).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use dgating_nn::{Architecture, GateInit, Model, effective_tensors};
//!
//! // A residual MLP: one gate set for the stream (rows of every layer that writes it), one
//! // for each block's hidden neurons.
//! let arch = Architecture::preset("residual-mlp", 4, 2)?;
//! let model = arch.build(Some(3), GateInit::Ones, 0, DType::F32, &Device::Cpu)?;
//! let dims: Vec<String> = model.gate_sets().iter().map(|s| s.dim().to_string()).collect();
//! assert_eq!(dims, ["stream", "blocks.0.hidden", "blocks.1.hidden"]);
//! assert_eq!(model.structure()?.dim("stream").unwrap().size, 32);
//! // Gates start at 1: the effective weights are the stored ones.
//! let w = &effective_tensors(&model)?["head.weight"];
//! assert_eq!(w.dims(), &[2, 32]);
//! let y = model.forward(&Tensor::zeros((5, 4), DType::F32, &Device::Cpu)?)?;
//! assert_eq!(y.dims(), &[5, 2]);
//! # Ok::<(), dgating_nn::Error>(())
//! ```

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

#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod data;
pub mod devices;
pub mod error;
pub mod gates;
pub mod layers;
pub mod lm;
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
pub use model::{
    Architecture, Mlp, MlpConfig, Model, Network, ResidualMlp, ResidualMlpConfig, architecture_of, device_of,
    effective_tensors,
};
pub use params::{Param, ParamRole, ParamStore};
pub use train::{Mode, TrainConfig, Trainer};

//! Models and the interface the training engine needs from them.

pub mod mlp;

use candle_core::Tensor;

use crate::error::Result;
use crate::layers::GatedLinear;
use crate::params::ParamStore;

pub use mlp::{Mlp, MlpConfig};

/// What the training engine needs from a model.
pub trait Model {
    /// Logits (classification) or predictions `[batch, outputs]` for `x` of `[batch, inputs]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    /// All trainable variables with their roles.
    fn params(&self) -> Result<ParamStore>;
    /// The layers that carry structured groups (gated or not), in order.
    fn group_layers(&self) -> Vec<&GatedLinear>;
}

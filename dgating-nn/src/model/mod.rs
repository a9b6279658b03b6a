//! Models, the interface every part of the workspace needs from them, and [`Architecture`]:
//! the serde description a model is rebuilt from at any sizes.
//!
//! A model adds its forward, its [`Structure`] (what can shrink and which tensor slices go with
//! it) and one tensor-key helper. Everything else — metrics, prox, magnitude masks, the direct
//! penalty, pruning, compaction, export — works on [`GateSet`]s, the structure and tensors by
//! key ([`effective_tensors`]), never on a model type.

pub mod arch;
pub mod convnet;
pub mod gpt;
pub mod gpt_model;
pub mod image;
pub mod mlp;
pub mod residual;
pub mod resnet;
pub mod vision;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use dgating_core::Structure;

use crate::error::Result;
use crate::gates::{GateSet, scale_member};
use crate::layers::GateInit;
use crate::params::{ParamRole, ParamStore};

pub use arch::{Architecture, INPUTS, Network, OUTPUTS, PRESETS};
pub use convnet::{ConvLayer, ConvNet, ConvNetConfig};
pub use gpt::{GptConfig, HeadGroup};
pub use gpt_model::{Gpt, KvCache};
pub use image::ImageShape;
pub use mlp::{Mlp, MlpConfig};
pub use residual::{ResidualMlp, ResidualMlpConfig};
pub use resnet::{ResNet, ResNetConfig, ResStage};
pub use vision::CONV_PRESETS;

/// The factorization a built-in model's constructor gives each gate set: `D − 1` unit gates
/// (function-preserving) when `depth` is given, none for an ungated model.
pub(crate) fn factorize(set: GateSet, depth: Option<usize>, dtype: DType, device: &Device) -> Result<GateSet> {
    match depth {
        Some(d) => set.with_unit_gates(d, dtype, device),
        None => Ok(set),
    }
}

/// Balances every gate set of a freshly built gated model when `init` asks for it; nothing for
/// an ungated model or unit gates.
pub(crate) fn balance_new_gates<M: Model + ?Sized>(model: &M, depth: Option<usize>, init: GateInit) -> Result<()> {
    if depth.is_some() && init == GateInit::Balanced {
        let store = model.params()?;
        for set in model.gate_sets() {
            set.balance(&store)?;
        }
    }
    Ok(())
}

/// What the training engine, metrics and pruning need from a model.
pub trait Model {
    /// Logits (classification) or predictions `[batch, outputs]` for `x` of `[batch, inputs]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    /// The forward of a training step. Models whose layers behave differently while training
    /// (batch norm: batch statistics, running averages updated) override it; the default is
    /// [`Model::forward`], which is then the evaluation-mode function.
    fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        self.forward(x)
    }
    /// The same function for inference (no gradient needed). Models may take a faster path
    /// (the dense MLP runs its layers on plain buffers); the default is [`Model::forward`].
    fn infer(&self, x: &Tensor) -> Result<Tensor> {
        self.forward(x)
    }
    /// All trainable variables with their roles.
    fn params(&self) -> Result<ParamStore>;
    /// The gate sets (at most one per dim), in structure order; `Clone`s share the variables.
    fn gate_sets(&self) -> Vec<GateSet>;
    /// What can shrink, and every tensor slice coupled to it.
    fn structure(&self) -> Result<Structure>;
    /// The built-in architecture at the model's current sizes, if the model is one of ours.
    /// A model of your own returns `None` (the default): training, metrics, pruning plans and
    /// `dgating_prune::cut_tensors` need only the methods above; what needs
    /// an [`Architecture`] (rebuilding a compacted model, the `dgating-compact` export) says so.
    fn architecture(&self) -> Option<Architecture> {
        None
    }
}

/// `model`'s [`Architecture`], or an error that says the operation needs a built-in one.
pub fn architecture_of<M: Model + ?Sized>(model: &M) -> Result<Architecture> {
    model.architecture().ok_or_else(|| crate::Error::Model {
        what: "model".into(),
        message: "has no built-in Architecture: rebuilding it at new sizes and the dgating-compact export need one; \
                  cut its tensors with dgating_prune::cut_tensors and rebuild it with your own code"
            .into(),
    })
}

/// The device `model`'s parameters live on (the CPU for a model without parameters).
pub fn device_of<M: Model + ?Sized>(model: &M) -> Result<Device> {
    Ok(model.params()?.iter().next().map_or(Device::Cpu, |p| p.var.device().clone()))
}

/// Every tensor of the function `model` computes, by key: the ungated variables as they are,
/// gate-set members as `ω ⊙ Πγ`. Detached copies (own storage, never aliasing the model).
pub fn effective_tensors<M: Model + ?Sized>(model: &M) -> Result<BTreeMap<String, Tensor>> {
    let store = model.params()?;
    let mut out: BTreeMap<String, Tensor> = store
        .iter()
        .filter(|p| p.role != ParamRole::Gate)
        .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
        .collect();
    for set in model.gate_sets() {
        let Some(prod) = set.product()? else { continue };
        for m in set.layout().members() {
            if let Some(t) = out.get_mut(&m.name) {
                *t = scale_member(t, &prod, m)?;
            }
        }
    }
    out.into_iter().map(|(k, t)| Ok((k, t.copy()?.detach()))).collect()
}

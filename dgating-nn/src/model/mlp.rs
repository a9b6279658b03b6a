//! [`Mlp`]: a ReLU multi-layer perceptron whose input features and/or hidden neurons are
//! the groups; linear and logistic models are the zero-hidden-layer case.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layers::{GateInit, GateSite, GatedLinear};
use crate::model::Model;
use crate::params::ParamStore;

/// The architecture of an [`Mlp`]: enough to rebuild it at any sizes (stored in
/// `config.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Input features.
    pub input_dim: usize,
    /// Hidden widths (empty: a linear / logistic model).
    pub hidden: Vec<usize>,
    /// Outputs (classes, or 1 for regression).
    pub output_dim: usize,
    /// Input features are groups (columns of the first weight).
    pub group_inputs: bool,
    /// Hidden neurons are groups (rows + bias entries of every hidden layer).
    pub group_hidden: bool,
}

/// Names of the presets accepted by [`MlpConfig::preset`].
pub const MLP_PRESETS: &[&str] = &["lenet-300-100", "mlp", "linear"];

impl MlpConfig {
    /// LeNet-300-100 (784-300-100-10) with hidden neurons as groups, as in the paper.
    pub fn lenet_300_100() -> Self {
        Self { input_dim: 784, hidden: vec![300, 100], output_dim: 10, group_inputs: false, group_hidden: true }
    }

    /// A preset by name for `input_dim` features and `output_dim` outputs:
    /// `lenet-300-100` (needs 784 inputs, 10 outputs), `mlp` (one hidden layer of 64, input
    /// features as groups), `linear` (no hidden layer, input features as groups).
    pub fn preset(name: &str, input_dim: usize, output_dim: usize) -> Result<Self> {
        let cfg = match name {
            "lenet-300-100" => {
                let c = Self::lenet_300_100();
                if input_dim != c.input_dim || output_dim != c.output_dim {
                    return Err(Error::Config(format!(
                        "lenet-300-100 needs 784 inputs and 10 classes, the data has {input_dim} and {output_dim}"
                    )));
                }
                c
            }
            "mlp" => Self { input_dim, hidden: vec![64], output_dim, group_inputs: true, group_hidden: false },
            "linear" => Self { input_dim, hidden: vec![], output_dim, group_inputs: true, group_hidden: false },
            other => {
                return Err(Error::UnknownName { kind: "model", name: other.into(), known: MLP_PRESETS.join(", ") });
            }
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Rejects zero sizes and a first layer asked to group both inputs and outputs.
    pub fn check(&self) -> Result<()> {
        if self.input_dim == 0 || self.output_dim == 0 || self.hidden.contains(&0) {
            return Err(Error::Config(format!(
                "MLP sizes must be >= 1, got inputs {}, hidden {:?}, outputs {}",
                self.input_dim, self.hidden, self.output_dim
            )));
        }
        if self.group_inputs && self.group_hidden && !self.hidden.is_empty() {
            return Err(Error::Config(
                "an MLP groups either input features or hidden neurons of its first layer, not both".into(),
            ));
        }
        Ok(())
    }

    /// Layer widths `[input, hidden.., output]`.
    pub fn widths(&self) -> Vec<usize> {
        std::iter::once(self.input_dim).chain(self.hidden.iter().copied()).chain([self.output_dim]).collect()
    }

    /// The gate site of layer `l`.
    pub fn site(&self, l: usize) -> GateSite {
        let last = self.hidden.len();
        if l == 0 && self.group_inputs {
            GateSite::Inputs
        } else if l < last && self.group_hidden {
            GateSite::Outputs
        } else {
            GateSite::None
        }
    }
}

/// A ReLU MLP of [`GatedLinear`] layers named `layers.{l}`. `Clone` shares the variables
/// (see [`GatedLinear`]).
#[derive(Debug, Clone)]
pub struct Mlp {
    config: MlpConfig,
    layers: Vec<GatedLinear>,
}

impl Mlp {
    /// Builds the model with seeded initialization; `depth = Some(D)` gates every layer that
    /// has a gate site, with `ω` = the dense initialization and all gates 1 (so the gated and
    /// dense models of one seed start as the same function).
    pub fn new(config: MlpConfig, depth: Option<usize>, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
        Self::with_gate_init(config, depth, GateInit::Ones, seed, dtype, device)
    }

    /// [`Mlp::new`] with a choice of [`GateInit`].
    pub fn with_gate_init(
        config: MlpConfig,
        depth: Option<usize>,
        init: GateInit,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        config.check()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let widths = config.widths();
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(l, w)| {
                let site = config.site(l);
                let d = if site == GateSite::None { None } else { depth };
                GatedLinear::new(format!("layers.{l}"), w[0], w[1], true, site, d, init, &mut rng, dtype, device)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { config, layers })
    }

    /// Builds the model from given layers (e.g. loaded from a checkpoint).
    pub fn from_layers(config: MlpConfig, layers: Vec<GatedLinear>) -> Result<Self> {
        config.check()?;
        let widths = config.widths();
        if layers.len() + 1 != widths.len()
            || layers.iter().zip(widths.windows(2)).any(|(l, w)| l.in_dim() != w[0] || l.out_dim() != w[1])
        {
            return Err(Error::Config(format!("layers do not match the architecture {widths:?}")));
        }
        Ok(Self { config, layers })
    }

    /// The architecture.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// The layers.
    pub fn layers(&self) -> &[GatedLinear] {
        &self.layers
    }
}

impl Model for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            h = if l < last { layer.forward_relu(&h)? } else { layer.forward(&h)? };
        }
        Ok(h)
    }

    fn params(&self) -> Result<ParamStore> {
        let mut store = ParamStore::new();
        for layer in &self.layers {
            layer.register(&mut store)?;
        }
        Ok(store)
    }

    fn group_layers(&self) -> Vec<&GatedLinear> {
        self.layers.iter().filter(|l| l.site() != GateSite::None).collect()
    }
}

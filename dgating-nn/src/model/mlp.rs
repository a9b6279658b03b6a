//! [`Mlp`]: a ReLU multi-layer perceptron whose input features and/or hidden neurons are
//! the groups; linear and logistic models are the zero-hidden-layer case.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use dgating_core::{Dim, Slice};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gates::GateSet;
use crate::layers::linear::init_uniform;
use crate::layers::{GateInit, GateSite, GatedLinear};
use crate::model::{Architecture, INPUTS, Model, OUTPUTS};
use crate::ops;
use crate::params::ParamStore;
use crate::tensor_util::cpu_f32;

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

    /// The tensor key of layer `l`'s `part` (`weight`, `bias`, `gates`): `layers.{l}.{part}`.
    pub fn key(l: usize, part: &str) -> String {
        format!("layers.{l}.{part}")
    }

    /// The dim layer `l`'s groups belong to, if it has a gate site.
    fn site_dim(&self, l: usize) -> Option<String> {
        match self.site(l) {
            GateSite::Inputs => Some(INPUTS.into()),
            GateSite::Outputs => Some(format!("hidden.{l}")),
            GateSite::None => None,
        }
    }

    /// `inputs` (columns of layer 0), `hidden.{i}` (rows and bias entries of layer `i`, columns
    /// of layer `i + 1`) and `outputs`.
    pub(crate) fn dims(&self) -> Vec<Dim> {
        let w = self.widths();
        let n = w.len() - 1;
        let weight = |l: usize| (Self::key(l, "weight"), vec![w[l + 1], w[l]]);
        let mut dims = Vec::with_capacity(n + 1);
        let (k0, s0) = weight(0);
        dims.push(Dim::new(INPUTS, w[0], true, vec![Slice::new(k0, s0, 1, self.group_inputs)]));
        for l in 0..n {
            let (k, s) = weight(l);
            let group = l + 1 < n && self.group_hidden;
            let mut slices = vec![Slice::new(k, s, 0, group), Slice::new(Self::key(l, "bias"), [w[l + 1]], 0, group)];
            if l + 1 < n {
                let (kn, sn) = weight(l + 1);
                slices.push(Slice::new(kn, sn, 1, false));
                dims.push(Dim::new(format!("hidden.{l}"), w[l + 1], true, slices));
            } else {
                dims.push(Dim::new(OUTPUTS, w[l + 1], false, slices));
            }
        }
        dims
    }

    /// The config with each dim's size from `size(name)`.
    pub(crate) fn resized(&self, size: impl Fn(&str) -> usize) -> Self {
        Self {
            input_dim: size(INPUTS),
            hidden: (0..self.hidden.len()).map(|l| size(&format!("hidden.{l}"))).collect(),
            output_dim: size(OUTPUTS),
            ..self.clone()
        }
    }

    /// `Σ_l 2·in_l·out_l`.
    pub(crate) fn flops_per_sample(&self) -> usize {
        self.widths().windows(2).map(|w| 2 * w[0] * w[1]).sum()
    }

    /// The gate set of layer `l`'s groups (no factors), if it has a gate site.
    fn gate_set(&self, l: usize) -> Result<Option<GateSet>> {
        let Some(dim) = self.site_dim(l) else { return Ok(None) };
        let dims = self.dims();
        let d = dims
            .iter()
            .find(|d| d.name == dim)
            .ok_or_else(|| Error::Model { what: "mlp".into(), message: format!("no dim `{dim}`") })?;
        Ok(d.group_layout()?.map(|layout| GateSet::new(dim, Self::key(l, "gates"), layout)))
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
        let mut layers = Vec::with_capacity(widths.len() - 1);
        for (l, w) in widths.windows(2).enumerate() {
            let prefix = format!("layers.{l}");
            let (weight, bias) = init_uniform(&prefix, w[0], w[1], true, &mut rng, dtype, device)?;
            let layer = match config.gate_set(l)? {
                None => GatedLinear::from_tensors(prefix, weight, bias, GateSite::None, None)?,
                Some(set) => {
                    let set = match depth {
                        Some(d) => set.with_unit_gates(d, dtype, device)?,
                        None => set,
                    };
                    let layer = GatedLinear::with_gate_set(prefix, weight, bias, config.site(l), set)?;
                    if let (Some(_), GateInit::Balanced, Some(set)) = (depth, init, layer.gate_set()) {
                        let mut store = ParamStore::new();
                        layer.register(&mut store)?;
                        set.balance(&store)?;
                    }
                    layer
                }
            };
            layers.push(layer);
        }
        Ok(Self { config, layers })
    }

    /// The ungated model with the given tensors (`layers.{l}.weight`, `layers.{l}.bias`;
    /// copied), gate sets without factors where the config has groups.
    pub fn from_tensors(config: MlpConfig, tensors: &BTreeMap<String, Tensor>) -> Result<Self> {
        config.check()?;
        let n = config.widths().len() - 1;
        let get = |key: String| {
            tensors
                .get(&key)
                .cloned()
                .ok_or_else(|| Error::Model { what: "mlp".into(), message: format!("missing tensor `{key}`") })
        };
        let layers = (0..n)
            .map(|l| {
                let (w, b) = (get(MlpConfig::key(l, "weight"))?, get(MlpConfig::key(l, "bias"))?);
                let prefix = format!("layers.{l}");
                match config.gate_set(l)? {
                    Some(set) => GatedLinear::with_gate_set(prefix, w, Some(b), config.site(l), set),
                    None => GatedLinear::from_tensors(prefix, w, Some(b), GateSite::None, None),
                }
            })
            .collect::<Result<Vec<_>>>()?;
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

    /// [`Model::infer`] on plain `f32` buffers borrowed from CPU tensors: the kernels of
    /// `ops::linear_relu` / `ops::linear` without a candle op per layer (the per-op cost
    /// dominates tiny compacted layers at batch 1; docs/PERFORMANCE.md). `None` when a layer is
    /// gated or `x` or a weight is not a contiguous CPU `f32` tensor.
    fn infer_f32(&self, x: &Tensor) -> Result<Option<Tensor>> {
        if self.layers.iter().any(|l| l.depth().is_some()) || x.rank() != 2 {
            return Ok(None);
        }
        let (xs, xl) = x.storage_and_layout();
        let guards: Vec<_> = self
            .layers
            .iter()
            .map(|l| (l.weight_var().as_tensor().storage_and_layout(), l.bias_var().map(|b| b.storage_and_layout())))
            .collect();
        let Some(input) = cpu_f32(&xs, xl) else { return Ok(None) };
        let mut weights = Vec::with_capacity(guards.len());
        for ((ws, wl), b) in &guards {
            let Some(w) = cpu_f32(ws, wl) else { return Ok(None) };
            let b = match b {
                Some((bs, bl)) => match cpu_f32(bs, bl) {
                    Some(b) => Some(b),
                    None => return Ok(None),
                },
                None => None,
            };
            weights.push((w, b));
        }
        let widths = self.config.widths();
        if x.dim(1)? != widths[0] {
            return Err(Error::Input { op: "mlp".into(), expected: widths[0], actual: x.dims().to_vec() });
        }
        let last = weights.len() - 1;
        let mut h: Option<Vec<f32>> = None;
        for (l, (w, b)) in weights.into_iter().enumerate() {
            let inp = h.as_deref().unwrap_or(input);
            h = Some(ops::linear_forward_f32(inp, w, b, (widths[l], widths[l + 1]), l < last)?);
        }
        Ok(Some(Tensor::from_vec(h.unwrap_or_default(), (x.dim(0)?, widths[last + 1]), x.device())?))
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

    fn infer(&self, x: &Tensor) -> Result<Tensor> {
        match self.infer_f32(x)? {
            Some(y) => Ok(y),
            None => self.forward(x),
        }
    }

    fn params(&self) -> Result<ParamStore> {
        let mut store = ParamStore::new();
        for layer in &self.layers {
            layer.register(&mut store)?;
        }
        Ok(store)
    }

    fn gate_sets(&self) -> Vec<GateSet> {
        self.layers.iter().filter_map(|l| l.gate_set().cloned()).collect()
    }

    fn structure(&self) -> Result<dgating_core::Structure> {
        Architecture::Mlp(self.config.clone()).structure()
    }

    fn architecture(&self) -> Option<Architecture> {
        Some(Architecture::Mlp(self.config.clone()))
    }
}

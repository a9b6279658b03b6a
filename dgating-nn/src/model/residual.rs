//! [`ResidualMlp`]: `h = x W_inᵀ + b_in`, then per block `h ← h + fc2(relu(fc1(h)))`, then a
//! linear head. The stream width is shared by the input projection, every block's `fc2` (which
//! write it) and every `fc1` and the head (which read it): a stream channel is dead only if
//! *every* writer's row is zero, so its group is one gate row spanning all writers — one
//! [`GateSet`] over several layers. Each block's hidden neurons are groups of their own.
//!
//! Tensor keys ([`ResidualMlpConfig::key`]): `input.{weight,bias}`,
//! `blocks.{k}.fc1.{weight,bias}`, `blocks.{k}.fc2.{weight,bias}`, `head.{weight,bias}`; gate
//! matrices `stream.gates` and `blocks.{k}.fc1.gates`.

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
use crate::params::ParamStore;

/// Name of the stream dim.
pub const STREAM: &str = "stream";

/// The architecture of a [`ResidualMlp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidualMlpConfig {
    /// Input features.
    pub input_dim: usize,
    /// Stream width.
    pub width: usize,
    /// Hidden width of each block.
    pub blocks: Vec<usize>,
    /// Outputs.
    pub output_dim: usize,
    /// Stream channels are groups (rows + bias entries of the input projection and every `fc2`).
    pub group_stream: bool,
    /// Each block's hidden neurons are groups (rows + bias entries of its `fc1`).
    pub group_hidden: bool,
}

impl ResidualMlpConfig {
    /// Rejects zero sizes.
    pub fn check(&self) -> Result<()> {
        if self.input_dim == 0 || self.width == 0 || self.output_dim == 0 || self.blocks.contains(&0) {
            return Err(Error::Config(format!("residual MLP sizes must be >= 1: {self:?}")));
        }
        Ok(())
    }

    /// The key of `part` (`weight`, `bias`, `gates`) of layer `layer` (`input`,
    /// `blocks.{k}.fc1`, `blocks.{k}.fc2`, `head`, or `stream` for the stream's gates).
    pub fn key(layer: &str, part: &str) -> String {
        format!("{layer}.{part}")
    }

    fn fc(k: usize, i: usize) -> String {
        format!("blocks.{k}.fc{i}")
    }

    fn hidden_dim(k: usize) -> String {
        format!("blocks.{k}.hidden")
    }

    pub(crate) fn dims(&self) -> Vec<Dim> {
        let (w, key) = (self.width, Self::key);
        let (gs, gh) = (self.group_stream, self.group_hidden);
        let mut stream = vec![
            Slice::new(key("input", "weight"), [w, self.input_dim], 0, gs),
            Slice::new(key("input", "bias"), [w], 0, gs),
        ];
        let mut dims = vec![Dim::new(
            INPUTS,
            self.input_dim,
            true,
            vec![Slice::new(key("input", "weight"), [w, self.input_dim], 1, false)],
        )];
        let mut hidden = vec![];
        for (k, &h) in self.blocks.iter().enumerate() {
            let (fc1, fc2) = (Self::fc(k, 1), Self::fc(k, 2));
            stream.push(Slice::new(key(&fc2, "weight"), [w, h], 0, gs));
            stream.push(Slice::new(key(&fc2, "bias"), [w], 0, gs));
            stream.push(Slice::new(key(&fc1, "weight"), [h, w], 1, false));
            hidden.push(Dim::new(
                Self::hidden_dim(k),
                h,
                true,
                vec![
                    Slice::new(key(&fc1, "weight"), [h, w], 0, gh),
                    Slice::new(key(&fc1, "bias"), [h], 0, gh),
                    Slice::new(key(&fc2, "weight"), [w, h], 1, false),
                ],
            ));
        }
        stream.push(Slice::new(key("head", "weight"), [self.output_dim, w], 1, false));
        dims.push(Dim::new(STREAM, w, true, stream));
        dims.extend(hidden);
        dims.push(Dim::new(
            OUTPUTS,
            self.output_dim,
            false,
            vec![
                Slice::new(key("head", "weight"), [self.output_dim, w], 0, false),
                Slice::new(key("head", "bias"), [self.output_dim], 0, false),
            ],
        ));
        dims
    }

    pub(crate) fn resized(&self, size: impl Fn(&str) -> usize) -> Self {
        Self {
            input_dim: size(INPUTS),
            width: size(STREAM),
            blocks: (0..self.blocks.len()).map(|k| size(&Self::hidden_dim(k))).collect(),
            output_dim: size(OUTPUTS),
            ..self.clone()
        }
    }

    pub(crate) fn flops_per_sample(&self) -> usize {
        2 * (self.input_dim * self.width
            + self.blocks.iter().map(|h| 2 * h * self.width).sum::<usize>()
            + self.width * self.output_dim)
    }

    /// The gate sets (no factors): the stream's, then each block's hidden neurons'.
    fn gate_sets(&self) -> Result<BTreeMap<String, GateSet>> {
        let mut out = BTreeMap::new();
        for d in self.dims() {
            let Some(layout) = d.group_layout()? else { continue };
            let key = if d.name == STREAM {
                Self::key(STREAM, "gates")
            } else {
                Self::key(&d.name.replace(".hidden", ".fc1"), "gates")
            };
            out.insert(d.name.clone(), GateSet::new(d.name, key, layout));
        }
        Ok(out)
    }
}

/// A residual ReLU MLP (see the module docs). `Clone` shares the variables.
#[derive(Debug, Clone)]
pub struct ResidualMlp {
    config: ResidualMlpConfig,
    input: GatedLinear,
    blocks: Vec<(GatedLinear, GatedLinear)>,
    head: GatedLinear,
    sets: Vec<GateSet>,
}

impl ResidualMlp {
    /// Seeded initialization (PyTorch's default per layer); `depth = Some(D)` D-gates every
    /// gate set, gates 1 ([`GateInit::Ones`]) or balanced.
    pub fn new(
        config: ResidualMlpConfig,
        depth: Option<usize>,
        init: GateInit,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        config.check()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tensors = BTreeMap::new();
        let mut draw = |name: &str, i: usize, o: usize| -> Result<()> {
            let (w, b) = init_uniform(name, i, o, true, &mut rng, dtype, device)?;
            tensors.insert(ResidualMlpConfig::key(name, "weight"), w);
            if let Some(b) = b {
                tensors.insert(ResidualMlpConfig::key(name, "bias"), b);
            }
            Ok(())
        };
        draw("input", config.input_dim, config.width)?;
        for (k, &h) in config.blocks.iter().enumerate() {
            draw(&ResidualMlpConfig::fc(k, 1), config.width, h)?;
            draw(&ResidualMlpConfig::fc(k, 2), h, config.width)?;
        }
        draw("head", config.width, config.output_dim)?;
        let model = Self::assemble(config, &tensors, |set| super::factorize(set, depth, dtype, device))?;
        super::balance_new_gates(&model, depth, init)?;
        Ok(model)
    }

    /// The ungated model with the given tensors (copied).
    pub fn from_tensors(config: ResidualMlpConfig, tensors: &BTreeMap<String, Tensor>) -> Result<Self> {
        config.check()?;
        Self::assemble(config, tensors, Ok)
    }

    fn assemble(
        config: ResidualMlpConfig,
        tensors: &BTreeMap<String, Tensor>,
        factorize: impl Fn(GateSet) -> Result<GateSet>,
    ) -> Result<Self> {
        let mut sets = BTreeMap::new();
        for (name, set) in config.gate_sets()? {
            sets.insert(name, factorize(set)?);
        }
        let get = |key: String| {
            tensors
                .get(&key)
                .cloned()
                .ok_or_else(|| Error::Model { what: "residual_mlp".into(), message: format!("missing tensor `{key}`") })
        };
        let layer = |name: &str, set: Option<&GateSet>| -> Result<GatedLinear> {
            let w = get(ResidualMlpConfig::key(name, "weight"))?;
            let b = Some(get(ResidualMlpConfig::key(name, "bias"))?);
            match set {
                Some(s) => GatedLinear::with_gate_set(name, w, b, GateSite::Outputs, s.clone()),
                None => GatedLinear::from_tensors(name, w, b, GateSite::None, None),
            }
        };
        let stream = sets.get(STREAM);
        let input = layer("input", stream)?;
        let blocks = (0..config.blocks.len())
            .map(|k| {
                let hidden = sets.get(&ResidualMlpConfig::hidden_dim(k));
                Ok((layer(&ResidualMlpConfig::fc(k, 1), hidden)?, layer(&ResidualMlpConfig::fc(k, 2), stream)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let head = layer("head", None)?;
        // Structure order: the stream, then the blocks.
        let mut ordered: Vec<GateSet> = sets.remove(STREAM).into_iter().collect();
        for k in 0..config.blocks.len() {
            ordered.extend(sets.remove(&ResidualMlpConfig::hidden_dim(k)));
        }
        Ok(Self { config, input, blocks, head, sets: ordered })
    }

    /// The architecture.
    pub fn config(&self) -> &ResidualMlpConfig {
        &self.config
    }
}

impl Model for ResidualMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.input.forward(x)?;
        for (fc1, fc2) in &self.blocks {
            h = (&h + fc2.forward(&fc1.forward_relu(&h)?)?)?;
        }
        self.head.forward(&h)
    }

    fn params(&self) -> Result<ParamStore> {
        let mut store = ParamStore::new();
        self.input.register(&mut store)?;
        for (fc1, fc2) in &self.blocks {
            fc1.register(&mut store)?;
            fc2.register(&mut store)?;
        }
        self.head.register(&mut store)?;
        Ok(store)
    }

    fn gate_sets(&self) -> Vec<GateSet> {
        self.sets.clone()
    }

    fn structure(&self) -> Result<dgating_core::Structure> {
        Architecture::ResidualMlp(self.config.clone()).structure()
    }

    fn architecture(&self) -> Option<Architecture> {
        Some(Architecture::ResidualMlp(self.config.clone()))
    }
}

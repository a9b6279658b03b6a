//! [`ResNet`]: the CIFAR-style residual network of He et al. (2016) — a 3×3 stem conv, stages
//! of basic blocks `relu(bn2(conv2(relu(bn1(conv1(h))))) + shortcut(h))`, global average
//! pooling and a linear head. Every stage after the first starts with a block of stride 2
//! whose shortcut is a 1×1 conv + batch norm (option B); the other shortcuts are identities.
//!
//! A stage's *stream* channels are one dim (`stages.{s}.stream`) written by every producer of
//! the sum — the stem (stage 0) or the projection shortcut (later stages) and every block's
//! `conv2` + `bn2` — and read by every block's `conv1`, the next stage's first block and
//! shortcut, or the head. A stream channel is dead only if *every* writer's BN scale and shift
//! is zero: then, by induction over the blocks, the channel is 0 throughout the stage. So its
//! group is one gate row over all writers' BN vectors — one [`GateSet`] spanning the stage.
//! Each block's inner channels (`stages.{s}.blocks.{k}.inner`: `conv1`'s outputs) are a dim of
//! their own, grouped by `bn1`'s scale and shift.
//!
//! Tensor keys: `stem.weight`, `stem.bn.*`, `stages.{s}.shortcut.weight`,
//! `stages.{s}.shortcut.bn.*`, `stages.{s}.blocks.{k}.conv{1,2}.weight`,
//! `stages.{s}.blocks.{k}.conv{1,2}.bn.*` (`bn.*` = `bn.{weight,bias,running_mean,running_var}`),
//! `head.{weight,bias}`; gate matrices `{dim}.gates`.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use dgating_core::{Dim, Slice};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gates::GateSet;
use crate::layers::conv::{GatedConv2d, conv_key, init_conv};
use crate::layers::linear::init_uniform;
use crate::layers::{GateInit, GateSite, GatedLinear};
use crate::model::image::{ImageShape, scaled};
use crate::model::{Architecture, INPUTS, Model, OUTPUTS};
use crate::ops::{self, Conv2dParams};
use crate::params::ParamStore;

/// One stage: its stream width and the inner width of each block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResStage {
    /// Stream channels.
    pub width: usize,
    /// Inner channels of each block.
    pub blocks: Vec<usize>,
}

/// The architecture of a [`ResNet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// The input images.
    pub input: ImageShape,
    /// The stages (stage `s > 0` halves the spatial size).
    pub stages: Vec<ResStage>,
    /// Outputs.
    pub output_dim: usize,
    /// Stream channels are groups (BN scale and shift of every writer).
    pub group_stream: bool,
    /// Inner block channels are groups (BN scale and shift of `bn1`).
    pub group_inner: bool,
}

const BN_PARTS: [&str; 4] = ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"];

impl ResNetConfig {
    /// `resnet20` (3 blocks per stage) or `resnet56` (9): stages of 16, 32, 64 channels times
    /// `width`, inner widths equal to the stream's; streams and inner channels gated.
    pub fn preset(name: &str, input: ImageShape, output_dim: usize, width: f64) -> Result<Self> {
        if !(width.is_finite() && width > 0.0) {
            return Err(Error::Config(format!("width multiplier must be finite and > 0, got {width}")));
        }
        let n = match name {
            "resnet20" => 3,
            "resnet56" => 9,
            _ => {
                return Err(Error::UnknownName {
                    kind: "resnet preset",
                    name: name.into(),
                    known: "resnet20, resnet56".into(),
                });
            }
        };
        let stages = [16, 32, 64]
            .iter()
            .map(|&c| ResStage { width: scaled(c, width), blocks: vec![scaled(c, width); n] })
            .collect();
        let c = Self { input, stages, output_dim, group_stream: true, group_inner: true };
        c.check()?;
        Ok(c)
    }

    /// Rejects zero sizes and inputs too small for the stages.
    pub fn check(&self) -> Result<()> {
        self.input.check()?;
        let zero = self.stages.iter().any(|s| s.width == 0 || s.blocks.is_empty() || s.blocks.contains(&0));
        if self.output_dim == 0 || self.stages.is_empty() || zero {
            return Err(Error::Config(format!("resnet sizes must be >= 1 (and >= 1 block per stage): {self:?}")));
        }
        let min = 1usize << (self.stages.len() - 1);
        if self.input.height < min || self.input.width < min {
            return Err(Error::Config(format!("{} stages need inputs of at least {min}x{min}", self.stages.len())));
        }
        Ok(())
    }

    fn stream(s: usize) -> String {
        format!("stages.{s}.stream")
    }

    fn block(s: usize, k: usize) -> String {
        format!("stages.{s}.blocks.{k}")
    }

    fn inner(s: usize, k: usize) -> String {
        format!("{}.inner", Self::block(s, k))
    }

    fn shortcut(s: usize) -> String {
        format!("stages.{s}.shortcut")
    }

    /// Every conv: `(prefix, in, out, kernel)`.
    fn convs(&self) -> Vec<(String, usize, usize, usize)> {
        let mut out = vec![("stem".to_string(), self.input.channels, self.stages[0].width, 3)];
        for (s, st) in self.stages.iter().enumerate() {
            if s > 0 {
                out.push((Self::shortcut(s), self.stages[s - 1].width, st.width, 1));
            }
            for (k, &inner) in st.blocks.iter().enumerate() {
                out.push((
                    format!("{}.conv1", Self::block(s, k)),
                    if s > 0 && k == 0 { self.stages[s - 1].width } else { st.width },
                    inner,
                    3,
                ));
                out.push((format!("{}.conv2", Self::block(s, k)), inner, st.width, 3));
            }
        }
        out
    }

    pub(crate) fn dims(&self) -> Vec<Dim> {
        let convs: BTreeMap<String, (usize, usize, usize)> =
            self.convs().into_iter().map(|(p, i, o, k)| (p, (i, o, k))).collect();
        let wshape = |p: &str| {
            let (i, o, k) = convs[p];
            [o, i, k, k]
        };
        // `p`'s output channels: the filters and BN vectors (scale and shift are the group).
        let writer = |p: &str, group: bool| -> Vec<Slice> {
            let o = wshape(p)[0];
            let mut s = vec![Slice::new(conv_key(p, "weight"), wshape(p), 0, false)];
            for (n, part) in BN_PARTS.iter().enumerate() {
                s.push(Slice::new(conv_key(p, part), [o], 0, group && n < 2));
            }
            s
        };
        let reader = |p: &str| Slice::new(conv_key(p, "weight"), wshape(p), 1, false);
        let mut dims = vec![Dim::new(INPUTS, self.input.features(), false, vec![])];
        let last = self.stages.len() - 1;
        for (s, st) in self.stages.iter().enumerate() {
            let first = if s == 0 { "stem".to_string() } else { Self::shortcut(s) };
            let mut stream = writer(&first, self.group_stream);
            let mut inner_dims = vec![];
            for (k, &inner) in st.blocks.iter().enumerate() {
                let b = Self::block(s, k);
                let (c1, c2) = (format!("{b}.conv1"), format!("{b}.conv2"));
                stream.extend(writer(&c2, self.group_stream));
                if k > 0 {
                    stream.push(reader(&c1));
                }
                let mut inner_slices = writer(&c1, self.group_inner);
                inner_slices.push(reader(&c2));
                inner_dims.push(Dim::new(Self::inner(s, k), inner, true, inner_slices));
            }
            if s < last {
                stream.push(reader(&format!("{}.conv1", Self::block(s + 1, 0))));
                stream.push(reader(&Self::shortcut(s + 1)));
            } else {
                stream.push(Slice::new("head.weight", [self.output_dim, st.width], 1, false));
            }
            // Stage 0's first block reads the stem's output: the same stream.
            if s == 0 {
                stream.push(reader(&format!("{}.conv1", Self::block(0, 0))));
            }
            dims.push(Dim::new(Self::stream(s), st.width, true, stream));
            dims.extend(inner_dims);
        }
        let w = self.stages[last].width;
        dims.push(Dim::new(
            OUTPUTS,
            self.output_dim,
            false,
            vec![
                Slice::new("head.weight", [self.output_dim, w], 0, false),
                Slice::new("head.bias", [self.output_dim], 0, false),
            ],
        ));
        dims
    }

    pub(crate) fn resized(&self, size: impl Fn(&str) -> usize) -> Self {
        let stages = self
            .stages
            .iter()
            .enumerate()
            .map(|(s, st)| ResStage {
                width: size(&Self::stream(s)),
                blocks: (0..st.blocks.len()).map(|k| size(&Self::inner(s, k))).collect(),
            })
            .collect();
        Self { stages, output_dim: size(OUTPUTS), ..self.clone() }
    }

    pub(crate) fn flops_per_sample(&self) -> usize {
        let (mut h, mut w) = (self.input.height, self.input.width);
        let mut macs = 0;
        for (p, i, o, k) in self.convs() {
            // The first conv of a later stage (conv1 of block 0, and the shortcut) halves the map.
            if p.starts_with("stages.") && !p.starts_with("stages.0.") && p.ends_with(".shortcut") {
                h = h.div_ceil(2);
                w = w.div_ceil(2);
            }
            macs += h * w * i * o * k * k;
        }
        macs += self.stages[self.stages.len() - 1].width * self.output_dim;
        2 * macs
    }

    fn gate_sets(&self) -> Result<Vec<GateSet>> {
        let mut out = vec![];
        for d in self.dims() {
            let Some(layout) = d.group_layout()? else { continue };
            let key = format!("{}.gates", d.name);
            out.push(GateSet::new(d.name, key, layout));
        }
        Ok(out)
    }
}

#[derive(Debug, Clone)]
struct Block {
    conv1: GatedConv2d,
    conv2: GatedConv2d,
    shortcut: Option<GatedConv2d>,
}

/// A CIFAR-style ResNet (see the module docs). `Clone` shares the variables.
#[derive(Debug, Clone)]
pub struct ResNet {
    config: ResNetConfig,
    stem: GatedConv2d,
    blocks: Vec<Block>,
    head: GatedLinear,
    sets: Vec<GateSet>,
}

impl ResNet {
    /// Seeded initialization (PyTorch's defaults; batch norm at scale 1, shift 0);
    /// `depth = Some(D)` D-gates every gate set, gates 1 or balanced.
    pub fn new(
        config: ResNetConfig,
        depth: Option<usize>,
        init: GateInit,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        config.check()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tensors = BTreeMap::new();
        for (p, i, o, k) in config.convs() {
            tensors.extend(init_conv(&p, i, o, k, true, &mut rng, dtype, device)?);
        }
        let w = config.stages[config.stages.len() - 1].width;
        let (hw, hb) = init_uniform("head", w, config.output_dim, true, &mut rng, dtype, device)?;
        tensors.insert("head.weight".into(), hw);
        tensors.insert("head.bias".into(), hb.expect("bias asked for"));
        let model = Self::assemble(config, &tensors, |set| super::factorize(set, depth, dtype, device))?;
        super::balance_new_gates(&model, depth, init)?;
        Ok(model)
    }

    /// The ungated model with the given tensors (copied).
    pub fn from_tensors(config: ResNetConfig, tensors: &BTreeMap<String, Tensor>) -> Result<Self> {
        config.check()?;
        Self::assemble(config, tensors, Ok)
    }

    fn assemble(
        config: ResNetConfig,
        tensors: &BTreeMap<String, Tensor>,
        factorize: impl Fn(GateSet) -> Result<GateSet>,
    ) -> Result<Self> {
        let sets = config.gate_sets()?.into_iter().map(factorize).collect::<Result<Vec<_>>>()?;
        let set = |dim: &str| sets.iter().find(|s| s.dim() == dim).cloned();
        let get = |key: String| {
            tensors
                .get(&key)
                .ok_or_else(|| Error::Model { what: "resnet".into(), message: format!("missing tensor `{key}`") })
        };
        let conv = |p: &str, stride: usize, pad: usize, gate: Option<GateSet>| -> Result<GatedConv2d> {
            let bn = [
                get(conv_key(p, BN_PARTS[0]))?,
                get(conv_key(p, BN_PARTS[1]))?,
                get(conv_key(p, BN_PARTS[2]))?,
                get(conv_key(p, BN_PARTS[3]))?,
            ];
            GatedConv2d::from_tensors(
                p,
                Conv2dParams::new(stride, pad),
                get(conv_key(p, "weight"))?,
                None,
                Some(bn),
                gate,
            )
        };
        let stem = conv("stem", 1, 1, set(&ResNetConfig::stream(0)))?;
        let mut blocks = vec![];
        for (s, st) in config.stages.iter().enumerate() {
            let stream = set(&ResNetConfig::stream(s));
            for k in 0..st.blocks.len() {
                let b = ResNetConfig::block(s, k);
                let stride = if s > 0 && k == 0 { 2 } else { 1 };
                let shortcut =
                    if s > 0 && k == 0 { Some(conv(&ResNetConfig::shortcut(s), 2, 0, stream.clone())?) } else { None };
                blocks.push(Block {
                    conv1: conv(&format!("{b}.conv1"), stride, 1, set(&ResNetConfig::inner(s, k)))?,
                    conv2: conv(&format!("{b}.conv2"), 1, 1, stream.clone())?,
                    shortcut,
                });
            }
        }
        let (hw, hb) = (get("head.weight".into())?.clone(), get("head.bias".into())?.clone());
        let head = GatedLinear::from_tensors("head", hw, Some(hb), GateSite::None, None)?;
        Ok(Self { config, stem, blocks, head, sets })
    }

    /// The architecture.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    fn run(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let x = self.config.input.to_images(x, "resnet")?;
        let mut h = self.stem.forward(&x, training, true)?;
        for b in &self.blocks {
            let inner = b.conv1.forward(&h, training, true)?;
            let out = b.conv2.forward(&inner, training, false)?;
            let skip = match &b.shortcut {
                Some(sc) => sc.forward(&h, training, false)?,
                None => h.clone(),
            };
            h = ops::relu(&(out + skip)?)?;
        }
        self.head.forward(&ops::global_avg_pool(&h)?)
    }
}

impl Model for ResNet {
    /// Evaluation mode: batch norm with its running statistics.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, false)
    }

    fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, true)
    }

    fn params(&self) -> Result<ParamStore> {
        let mut store = ParamStore::new();
        self.stem.register(&mut store)?;
        for b in &self.blocks {
            if let Some(sc) = &b.shortcut {
                sc.register(&mut store)?;
            }
            b.conv1.register(&mut store)?;
            b.conv2.register(&mut store)?;
        }
        self.head.register(&mut store)?;
        Ok(store)
    }

    fn gate_sets(&self) -> Vec<GateSet> {
        self.sets.clone()
    }

    fn structure(&self) -> Result<dgating_core::Structure> {
        Architecture::ResNet(self.config.clone()).structure()
    }

    fn architecture(&self) -> Option<Architecture> {
        Some(Architecture::ResNet(self.config.clone()))
    }
}

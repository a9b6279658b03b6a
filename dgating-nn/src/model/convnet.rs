//! [`ConvNet`]: a plain chain of convolutions (each followed by ReLU, optionally batch norm
//! before it) and pooling layers, then global average pooling or a flatten, then a ReLU MLP
//! classifier — LeNet-5 and the CIFAR-style VGG nets.
//!
//! The output channels of each conv are a dim (`convs.{i}`); its groups, when gated, are the
//! filters and biases (no batch norm) or BN's scale and shift (with batch norm; see
//! [`GatedConv2d`]). Removing channel `c` also removes input channel `c` of the next conv, or —
//! for the last conv — the classifier columns it feeds: one column after global pooling, the
//! block of `H·W` columns of its map after a flatten. Hidden classifier neurons are dims
//! `fc.{k}` as in an MLP.
//!
//! Tensor keys: `convs.{i}.weight`, `convs.{i}.bias` or `convs.{i}.bn.{weight,bias,
//! running_mean,running_var}`, `fc.{k}.{weight,bias}`, `head.{weight,bias}`; gate matrices
//! `convs.{i}.gates`, `fc.{k}.gates`.

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

/// One layer of the feature extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConvLayer {
    /// A square convolution followed by ReLU (batch norm in between when `batch_norm`).
    Conv {
        /// Output channels.
        out: usize,
        /// Kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding per side.
        padding: usize,
        /// Batch norm after the convolution (the conv then has no bias).
        batch_norm: bool,
        /// The output channels are groups.
        gated: bool,
    },
    /// `size × size` max pooling with stride `size`.
    MaxPool {
        /// Window and stride.
        size: usize,
    },
    /// `size × size` average pooling with stride `size`.
    AvgPool {
        /// Window and stride.
        size: usize,
    },
}

/// The architecture of a [`ConvNet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvNetConfig {
    /// The input images.
    pub input: ImageShape,
    /// The feature extractor.
    pub layers: Vec<ConvLayer>,
    /// Global average pooling before the classifier (else a flatten of the last map).
    pub global_pool: bool,
    /// Hidden widths of the classifier.
    pub hidden: Vec<usize>,
    /// The classifier's hidden neurons are groups.
    pub group_hidden: bool,
    /// Outputs.
    pub output_dim: usize,
}

/// Channels and spatial size after each layer.
#[derive(Debug, Clone, Copy)]
struct MapShape {
    c: usize,
    h: usize,
    w: usize,
}

impl ConvNetConfig {
    /// `lenet5` (two 5×5 convs without batch norm, 6 and 16 channels, max pooling, a 120-84
    /// classifier on the flattened map; 28×28 inputs are padded by 2 in the first conv), `vgg11`
    /// or `vgg16` (CIFAR-style: 3×3 convs with batch norm, five max pools — the fourth is
    /// dropped for 28×28 inputs, which would otherwise shrink to nothing — global average
    /// pooling, one linear layer). `width` multiplies every channel count and hidden width.
    /// The first conv is ungated; every other conv and hidden neuron is a group.
    pub fn preset(name: &str, input: ImageShape, output_dim: usize, width: f64) -> Result<Self> {
        if !(width.is_finite() && width > 0.0) {
            return Err(Error::Config(format!("width multiplier must be finite and > 0, got {width}")));
        }
        let conv = |i: usize, out: usize, kernel: usize, padding: usize, batch_norm: bool| ConvLayer::Conv {
            out: scaled(out, width),
            kernel,
            stride: 1,
            padding,
            batch_norm,
            gated: i > 0,
        };
        let c = match name {
            "lenet5" => Self {
                input,
                layers: vec![
                    conv(0, 6, 5, if input.height < 32 { 2 } else { 0 }, false),
                    ConvLayer::MaxPool { size: 2 },
                    conv(1, 16, 5, 0, false),
                    ConvLayer::MaxPool { size: 2 },
                ],
                global_pool: false,
                hidden: vec![scaled(120, width), scaled(84, width)],
                group_hidden: true,
                output_dim,
            },
            "vgg11" | "vgg16" => {
                let plan: &[usize] = if name == "vgg11" {
                    &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0]
                } else {
                    &[64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0]
                };
                let (mut layers, mut convs, mut pools) = (vec![], 0, 0);
                for &c in plan {
                    if c == 0 {
                        pools += 1;
                        if !(pools == 4 && input.height < 32) {
                            layers.push(ConvLayer::MaxPool { size: 2 });
                        }
                    } else {
                        layers.push(conv(convs, c, 3, 1, true));
                        convs += 1;
                    }
                }
                Self { input, layers, global_pool: true, hidden: vec![], group_hidden: false, output_dim }
            }
            _ => {
                return Err(Error::UnknownName {
                    kind: "conv net preset",
                    name: name.into(),
                    known: "lenet5, vgg11, vgg16".into(),
                });
            }
        };
        c.check()?;
        Ok(c)
    }

    /// Rejects zero sizes and layers that do not fit the maps they get.
    pub fn check(&self) -> Result<()> {
        self.input.check()?;
        if self.output_dim == 0 || self.hidden.contains(&0) {
            return Err(Error::Config(format!("conv net sizes must be >= 1: {self:?}")));
        }
        if self.conv_count() == 0 {
            return Err(Error::Config("a conv net needs at least one conv layer".into()));
        }
        self.maps().map(|_| ())
    }

    fn conv_count(&self) -> usize {
        self.layers.iter().filter(|l| matches!(l, ConvLayer::Conv { .. })).count()
    }

    /// The map after each layer (input first).
    fn maps(&self) -> Result<Vec<MapShape>> {
        let mut m = MapShape { c: self.input.channels, h: self.input.height, w: self.input.width };
        let mut out = vec![m];
        for (i, l) in self.layers.iter().enumerate() {
            let bad = |what: String| Error::Config(format!("conv net layer {i} ({l:?}): {what}"));
            m = match *l {
                ConvLayer::Conv { out, kernel, stride, padding, .. } => {
                    if out == 0 || kernel == 0 || stride == 0 {
                        return Err(bad("sizes must be >= 1".into()));
                    }
                    let (hp, wp) = (m.h + 2 * padding, m.w + 2 * padding);
                    if hp < kernel || wp < kernel {
                        return Err(bad(format!("the kernel does not fit a {}x{} map", m.h, m.w)));
                    }
                    MapShape { c: out, h: (hp - kernel) / stride + 1, w: (wp - kernel) / stride + 1 }
                }
                ConvLayer::MaxPool { size } | ConvLayer::AvgPool { size } => {
                    if size == 0 || m.h < size || m.w < size {
                        return Err(bad(format!("a {size}x{size} pool does not fit a {}x{} map", m.h, m.w)));
                    }
                    MapShape { c: m.c, h: m.h / size, w: m.w / size }
                }
            };
            out.push(m);
        }
        Ok(out)
    }

    fn conv_name(i: usize) -> String {
        format!("convs.{i}")
    }

    fn fc_name(k: usize) -> String {
        format!("fc.{k}")
    }

    /// `(in, out)` of each classifier layer (hidden ones, then the head).
    fn classifier(&self, last: MapShape) -> Vec<(String, usize, usize)> {
        let mut inp = if self.global_pool { last.c } else { last.c * last.h * last.w };
        let mut out = vec![];
        for (k, &h) in self.hidden.iter().enumerate() {
            out.push((Self::fc_name(k), inp, h));
            inp = h;
        }
        out.push(("head".to_string(), inp, self.output_dim));
        out
    }

    pub(crate) fn dims(&self) -> Result<Vec<Dim>> {
        let maps = self.maps()?;
        let last = *maps.last().expect("maps has the input");
        let convs: Vec<(usize, ConvLayer, MapShape)> = self
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(l, ConvLayer::Conv { .. }))
            .map(|(i, l)| (i, *l, maps[i]))
            .collect();
        let fcs = self.classifier(last);
        let mut dims = vec![Dim::new(INPUTS, self.input.features(), false, vec![])];
        for (n, &(_, layer, inp)) in convs.iter().enumerate() {
            let ConvLayer::Conv { out, kernel, batch_norm, gated, .. } = layer else { unreachable!() };
            let p = Self::conv_name(n);
            let wshape = [out, inp.c, kernel, kernel];
            let mut s = vec![Slice::new(conv_key(&p, "weight"), wshape, 0, gated && !batch_norm)];
            if batch_norm {
                s.push(Slice::new(conv_key(&p, "bn.weight"), [out], 0, gated));
                s.push(Slice::new(conv_key(&p, "bn.bias"), [out], 0, gated));
                s.push(Slice::new(conv_key(&p, "bn.running_mean"), [out], 0, false));
                s.push(Slice::new(conv_key(&p, "bn.running_var"), [out], 0, false));
            } else {
                s.push(Slice::new(conv_key(&p, "bias"), [out], 0, gated));
            }
            // The consumer: the next conv's input channels, or the classifier's columns.
            match convs.get(n + 1) {
                Some(&(_, ConvLayer::Conv { out: o2, kernel: k2, .. }, _)) => {
                    s.push(Slice::new(conv_key(&Self::conv_name(n + 1), "weight"), [o2, out, k2, k2], 1, false));
                }
                _ => {
                    let (name, inp, o) = &fcs[0];
                    let block = if self.global_pool { 1 } else { last.h * last.w };
                    s.push(Slice::new(format!("{name}.weight"), [*o, *inp], 1, false).with_block(block));
                }
            }
            dims.push(Dim::new(p, out, true, s));
        }
        for (k, win) in fcs.windows(2).enumerate() {
            let ((name, inp, h), (next, _, o2)) = (&win[0], &win[1]);
            let g = self.group_hidden;
            dims.push(Dim::new(
                Self::fc_name(k),
                *h,
                true,
                vec![
                    Slice::new(format!("{name}.weight"), [*h, *inp], 0, g),
                    Slice::new(format!("{name}.bias"), [*h], 0, g),
                    Slice::new(format!("{next}.weight"), [*o2, *h], 1, false),
                ],
            ));
        }
        let (_, inp, o) = fcs.last().expect("the head");
        dims.push(Dim::new(
            OUTPUTS,
            *o,
            false,
            vec![Slice::new("head.weight", [*o, *inp], 0, false), Slice::new("head.bias", [*o], 0, false)],
        ));
        Ok(dims)
    }

    pub(crate) fn resized(&self, size: impl Fn(&str) -> usize) -> Self {
        let mut n = 0;
        let layers = self
            .layers
            .iter()
            .map(|l| match *l {
                ConvLayer::Conv { kernel, stride, padding, batch_norm, gated, .. } => {
                    let out = size(&Self::conv_name(n));
                    n += 1;
                    ConvLayer::Conv { out, kernel, stride, padding, batch_norm, gated }
                }
                other => other,
            })
            .collect();
        Self {
            layers,
            hidden: (0..self.hidden.len()).map(|k| size(&Self::fc_name(k))).collect(),
            output_dim: size(OUTPUTS),
            ..self.clone()
        }
    }

    pub(crate) fn flops_per_sample(&self) -> usize {
        let Ok(maps) = self.maps() else { return 0 };
        let mut macs = 0;
        for (i, l) in self.layers.iter().enumerate() {
            if let ConvLayer::Conv { kernel, .. } = l {
                let (inp, out) = (maps[i], maps[i + 1]);
                macs += out.c * out.h * out.w * inp.c * kernel * kernel;
            }
        }
        macs += self.classifier(*maps.last().expect("input")).iter().map(|(_, i, o)| i * o).sum::<usize>();
        2 * macs
    }

    fn gate_sets(&self) -> Result<BTreeMap<String, GateSet>> {
        let mut out = BTreeMap::new();
        for d in self.dims()? {
            let Some(layout) = d.group_layout()? else { continue };
            let key = format!("{}.gates", d.name);
            out.insert(d.name.clone(), GateSet::new(d.name, key, layout));
        }
        Ok(out)
    }
}

#[derive(Debug, Clone)]
enum Stage {
    Conv(GatedConv2d),
    MaxPool(usize),
    AvgPool(usize),
}

/// A plain conv net (see the module docs). `Clone` shares the variables.
#[derive(Debug, Clone)]
pub struct ConvNet {
    config: ConvNetConfig,
    stages: Vec<Stage>,
    fcs: Vec<GatedLinear>,
    head: GatedLinear,
    sets: Vec<GateSet>,
}

impl ConvNet {
    /// Seeded initialization (PyTorch's defaults; batch norm at scale 1, shift 0);
    /// `depth = Some(D)` D-gates every gate set, gates 1 or balanced.
    pub fn new(
        config: ConvNetConfig,
        depth: Option<usize>,
        init: GateInit,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        config.check()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tensors = BTreeMap::new();
        let maps = config.maps()?;
        let mut n = 0;
        for (i, l) in config.layers.iter().enumerate() {
            if let ConvLayer::Conv { out, kernel, batch_norm, .. } = *l {
                let p = ConvNetConfig::conv_name(n);
                tensors.extend(init_conv(&p, maps[i].c, out, kernel, batch_norm, &mut rng, dtype, device)?);
                n += 1;
            }
        }
        for (name, i, o) in config.classifier(*maps.last().expect("input")) {
            let (w, b) = init_uniform(&name, i, o, true, &mut rng, dtype, device)?;
            tensors.insert(format!("{name}.weight"), w);
            tensors.insert(format!("{name}.bias"), b.expect("bias asked for"));
        }
        let model = Self::assemble(config, &tensors, |set| super::factorize(set, depth, dtype, device))?;
        super::balance_new_gates(&model, depth, init)?;
        Ok(model)
    }

    /// The ungated model with the given tensors (copied).
    pub fn from_tensors(config: ConvNetConfig, tensors: &BTreeMap<String, Tensor>) -> Result<Self> {
        config.check()?;
        Self::assemble(config, tensors, Ok)
    }

    fn assemble(
        config: ConvNetConfig,
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
                .ok_or_else(|| Error::Model { what: "conv_net".into(), message: format!("missing tensor `{key}`") })
        };
        let mut stages = vec![];
        let mut n = 0;
        for l in &config.layers {
            stages.push(match *l {
                ConvLayer::Conv { stride, padding, batch_norm, .. } => {
                    let p = ConvNetConfig::conv_name(n);
                    n += 1;
                    let w = get(conv_key(&p, "weight"))?;
                    let (bias, bn) = if batch_norm {
                        let v = |part: &str| get(conv_key(&p, part));
                        (None, Some([v("bn.weight")?, v("bn.bias")?, v("bn.running_mean")?, v("bn.running_var")?]))
                    } else {
                        (Some(get(conv_key(&p, "bias"))?), None)
                    };
                    let gate = sets.get(&p).cloned();
                    Stage::Conv(GatedConv2d::from_tensors(&p, Conv2dParams::new(stride, padding), w, bias, bn, gate)?)
                }
                ConvLayer::MaxPool { size } => Stage::MaxPool(size),
                ConvLayer::AvgPool { size } => Stage::AvgPool(size),
            });
        }
        let linear = |name: &str| -> Result<GatedLinear> {
            let (w, b) = (get(format!("{name}.weight"))?.clone(), Some(get(format!("{name}.bias"))?.clone()));
            match sets.get(name) {
                Some(s) => GatedLinear::with_gate_set(name, w, b, GateSite::Outputs, s.clone()),
                None => GatedLinear::from_tensors(name, w, b, GateSite::None, None),
            }
        };
        let fcs = (0..config.hidden.len()).map(|k| linear(&ConvNetConfig::fc_name(k))).collect::<Result<Vec<_>>>()?;
        let head = linear("head")?;
        // Structure order: convs, then classifier.
        let mut ordered = vec![];
        for k in 0..n {
            ordered.extend(sets.remove(&ConvNetConfig::conv_name(k)));
        }
        for k in 0..config.hidden.len() {
            ordered.extend(sets.remove(&ConvNetConfig::fc_name(k)));
        }
        Ok(Self { config, stages, fcs, head, sets: ordered })
    }

    /// The architecture.
    pub fn config(&self) -> &ConvNetConfig {
        &self.config
    }

    fn run(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let mut h = self.config.input.to_images(x, "conv net")?;
        for (i, s) in self.stages.iter().enumerate() {
            let name = || format!("layers.{i}");
            h = match s {
                Stage::Conv(c) => c.forward(&h, training, true)?,
                Stage::MaxPool(k) => ops::max_pool2d(&h, *k, *k, &name())?,
                Stage::AvgPool(k) => ops::avg_pool2d(&h, *k, *k, &name())?,
            };
        }
        h = if self.config.global_pool { ops::global_avg_pool(&h)? } else { ops::flatten(&h)? };
        for fc in &self.fcs {
            h = fc.forward_relu(&h)?;
        }
        self.head.forward(&h)
    }
}

impl Model for ConvNet {
    /// Evaluation mode: batch norm with its running statistics.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, false)
    }

    fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, true)
    }

    fn params(&self) -> Result<ParamStore> {
        let mut store = ParamStore::new();
        for s in &self.stages {
            if let Stage::Conv(c) = s {
                c.register(&mut store)?;
            }
        }
        for fc in &self.fcs {
            fc.register(&mut store)?;
        }
        self.head.register(&mut store)?;
        Ok(store)
    }

    fn gate_sets(&self) -> Vec<GateSet> {
        self.sets.clone()
    }

    fn structure(&self) -> Result<dgating_core::Structure> {
        Architecture::ConvNet(self.config.clone()).structure()
    }

    fn architecture(&self) -> Option<Architecture> {
        Some(Architecture::ConvNet(self.config.clone()))
    }
}

//! [`Architecture`]: which model, at which sizes — tagged by `"type"` in `config.json` — and
//! [`Network`], a model of any architecture.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use dgating_core::Structure;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gates::GateSet;
use crate::layers::GateInit;
use crate::model::{
    ConvNet, ConvNetConfig, Gpt, GptConfig, Mlp, MlpConfig, Model, ResNet, ResNetConfig, ResidualMlp, ResidualMlpConfig,
};
use crate::params::ParamStore;

/// Name of the input-feature dim of every architecture.
pub const INPUTS: &str = "inputs";
/// Name of the output dim of every architecture (never removable).
pub const OUTPUTS: &str = "outputs";

/// A model description from which the model is rebuilt at any sizes (stored in a run's and
/// an export's `config.json`, tagged by `"type"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Architecture {
    /// A ReLU MLP ([`Mlp`]).
    Mlp(MlpConfig),
    /// A residual ReLU MLP ([`ResidualMlp`]).
    ResidualMlp(ResidualMlpConfig),
    /// A plain conv net: LeNet-5, VGG ([`ConvNet`]).
    ConvNet(ConvNetConfig),
    /// A CIFAR-style ResNet ([`ResNet`]).
    #[serde(rename = "resnet")]
    ResNet(ResNetConfig),
    /// A GPT decoder ([`Gpt`]): input = token ids, output = next-token logits.
    Gpt(GptConfig),
}

impl From<GptConfig> for Architecture {
    fn from(c: GptConfig) -> Self {
        Self::Gpt(c)
    }
}

impl From<MlpConfig> for Architecture {
    fn from(c: MlpConfig) -> Self {
        Self::Mlp(c)
    }
}

impl From<ResidualMlpConfig> for Architecture {
    fn from(c: ResidualMlpConfig) -> Self {
        Self::ResidualMlp(c)
    }
}

/// Names of the presets accepted by [`Architecture::preset`].
pub const PRESETS: &[&str] = &["lenet-300-100", "mlp", "linear", "residual-mlp"];

impl Architecture {
    /// A preset by name for `input_dim` features and `output_dim` outputs: the MLP presets of
    /// [`MlpConfig::preset`], and `residual-mlp` (stream width 32, two blocks of 32 hidden
    /// neurons, stream channels and hidden neurons as groups).
    pub fn preset(name: &str, input_dim: usize, output_dim: usize) -> Result<Self> {
        if name == "residual-mlp" {
            let c = ResidualMlpConfig {
                input_dim,
                width: 32,
                blocks: vec![32, 32],
                output_dim,
                group_stream: true,
                group_hidden: true,
            };
            c.check()?;
            return Ok(Self::ResidualMlp(c));
        }
        match MlpConfig::preset(name, input_dim, output_dim) {
            Err(Error::UnknownName { kind, name, .. }) => {
                Err(Error::UnknownName { kind, name, known: PRESETS.join(", ") })
            }
            other => Ok(Self::Mlp(other?)),
        }
    }

    /// The plain ReLU MLP of `widths = [inputs, hidden.., outputs]` with no groups (what a
    /// `dgating-compact-v1` file describes).
    pub fn from_widths(widths: &[usize]) -> Result<Self> {
        if widths.len() < 2 {
            return Err(Error::Config(format!("an MLP needs >= 2 widths, got {widths:?}")));
        }
        let c = MlpConfig {
            input_dim: widths[0],
            hidden: widths[1..widths.len() - 1].to_vec(),
            output_dim: widths[widths.len() - 1],
            group_inputs: false,
            group_hidden: false,
        };
        c.check()?;
        Ok(Self::Mlp(c))
    }

    /// Rejects sizes and flags the model cannot be built with.
    pub fn check(&self) -> Result<()> {
        match self {
            Self::Mlp(c) => c.check(),
            Self::ResidualMlp(c) => c.check(),
            Self::ConvNet(c) => c.check(),
            Self::ResNet(c) => c.check(),
            Self::Gpt(c) => c.check(),
        }
    }

    /// Input features (for a GPT: the vocabulary size).
    pub fn input_dim(&self) -> usize {
        match self {
            Self::Mlp(c) => c.input_dim,
            Self::ResidualMlp(c) => c.input_dim,
            Self::ConvNet(c) => c.input.features(),
            Self::ResNet(c) => c.input.features(),
            Self::Gpt(c) => c.vocab_size,
        }
    }

    /// Outputs (for a GPT: logits per position, the vocabulary size).
    pub fn output_dim(&self) -> usize {
        match self {
            Self::Mlp(c) => c.output_dim,
            Self::ResidualMlp(c) => c.output_dim,
            Self::ConvNet(c) => c.output_dim,
            Self::ResNet(c) => c.output_dim,
            Self::Gpt(c) => c.vocab_size,
        }
    }

    /// What can shrink and every tensor slice coupled to it.
    pub fn structure(&self) -> Result<Structure> {
        self.check()?;
        Ok(Structure::new(match self {
            Self::Mlp(c) => c.dims(),
            Self::ResidualMlp(c) => c.dims(),
            Self::ConvNet(c) => c.dims()?,
            Self::ResNet(c) => c.dims(),
            Self::Gpt(c) => c.dims(),
        })?)
    }

    /// The same architecture with the dims named in `sizes` resized (the others keep theirs).
    pub fn resized(&self, sizes: &BTreeMap<String, usize>) -> Result<Self> {
        let known = self.structure()?.sizes();
        if let Some(name) = sizes.keys().find(|n| !known.contains_key(*n)) {
            return Err(Error::Model { what: "architecture".into(), message: format!("no dim `{name}`") });
        }
        let size = |name: &str| sizes.get(name).copied().unwrap_or(known[name]);
        let a = match self {
            Self::Mlp(c) => Self::Mlp(c.resized(size)),
            Self::ResidualMlp(c) => Self::ResidualMlp(c.resized(size)),
            Self::ConvNet(c) => Self::ConvNet(c.resized(size)),
            Self::ResNet(c) => Self::ResNet(c.resized(size)),
            Self::Gpt(c) => Self::Gpt(c.resized(size)),
        };
        a.check()?;
        Ok(a)
    }

    /// Multiply-adds of one sample's forward, as FLOPs (`2` per multiply-add); for a GPT one
    /// token at full context ([`GptConfig::flops_per_token`]).
    pub fn flops_per_sample(&self) -> usize {
        match self {
            Self::Mlp(c) => c.flops_per_sample(),
            Self::ResidualMlp(c) => c.flops_per_sample(),
            Self::ConvNet(c) => c.flops_per_sample(),
            Self::ResNet(c) => c.flops_per_sample(),
            Self::Gpt(c) => c.flops_per_token(),
        }
    }

    /// A freshly initialized model (seeded); `depth = Some(D)` D-gates every gate set.
    pub fn build(
        &self,
        depth: Option<usize>,
        init: GateInit,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Network> {
        Ok(match self {
            Self::Mlp(c) => Network::Mlp(Mlp::with_gate_init(c.clone(), depth, init, seed, dtype, device)?),
            Self::ResidualMlp(c) => {
                Network::ResidualMlp(Box::new(ResidualMlp::new(c.clone(), depth, init, seed, dtype, device)?))
            }
            Self::ConvNet(c) => Network::ConvNet(Box::new(ConvNet::new(c.clone(), depth, init, seed, dtype, device)?)),
            Self::ResNet(c) => Network::ResNet(Box::new(ResNet::new(c.clone(), depth, init, seed, dtype, device)?)),
            Self::Gpt(c) => Network::Gpt(Box::new(Gpt::new(c.clone(), depth, init, seed, dtype, device)?)),
        })
    }

    /// The ungated model with the given tensors (copied): exactly the keys and shapes of
    /// [`Architecture::structure`].
    pub fn from_tensors(&self, tensors: &BTreeMap<String, Tensor>) -> Result<Network> {
        let expected = self.structure()?.tensors();
        for (key, shape) in &expected {
            let t = tensors.get(key).ok_or_else(|| Error::Model {
                what: "architecture".into(),
                message: format!("missing tensor `{key}`"),
            })?;
            if t.dims() != shape.as_slice() {
                return Err(Error::Shape { op: key.clone(), expected: shape.clone(), actual: t.dims().to_vec() });
            }
        }
        if let Some(key) = tensors.keys().find(|k| !expected.contains_key(*k)) {
            return Err(Error::Model { what: "architecture".into(), message: format!("unknown tensor `{key}`") });
        }
        Ok(match self {
            Self::Mlp(c) => Network::Mlp(Mlp::from_tensors(c.clone(), tensors)?),
            Self::ResidualMlp(c) => Network::ResidualMlp(Box::new(ResidualMlp::from_tensors(c.clone(), tensors)?)),
            Self::ConvNet(c) => Network::ConvNet(Box::new(ConvNet::from_tensors(c.clone(), tensors)?)),
            Self::ResNet(c) => Network::ResNet(Box::new(ResNet::from_tensors(c.clone(), tensors)?)),
            Self::Gpt(c) => Network::Gpt(Box::new(Gpt::from_tensors(c.clone(), tensors)?)),
        })
    }
}

/// Deserializes an [`Architecture`], also from run configs written before it was tagged (a bare
/// MLP description without `"type"`), so older run directories keep loading.
pub fn deserialize_compat<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Architecture, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Compat {
        Tagged(Architecture),
        Legacy(MlpConfig),
    }
    Ok(match Compat::deserialize(d)? {
        Compat::Tagged(a) => a,
        Compat::Legacy(c) => Architecture::Mlp(c),
    })
}

/// A model of any [`Architecture`].
#[derive(Debug, Clone)]
pub enum Network {
    /// A ReLU MLP.
    Mlp(Mlp),
    /// A residual ReLU MLP (boxed: it holds a layer per block side).
    ResidualMlp(Box<ResidualMlp>),
    /// A plain conv net.
    ConvNet(Box<ConvNet>),
    /// A CIFAR-style ResNet.
    ResNet(Box<ResNet>),
    /// A GPT decoder (boxed).
    Gpt(Box<Gpt>),
}

impl Network {
    fn inner(&self) -> &dyn Model {
        match self {
            Self::Mlp(m) => m,
            Self::ResidualMlp(m) => m.as_ref(),
            Self::ConvNet(m) => m.as_ref(),
            Self::ResNet(m) => m.as_ref(),
            Self::Gpt(m) => m.as_ref(),
        }
    }
}

impl Model for Network {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.inner().forward(x)
    }
    fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        self.inner().forward_train(x)
    }
    fn infer(&self, x: &Tensor) -> Result<Tensor> {
        self.inner().infer(x)
    }
    fn params(&self) -> Result<ParamStore> {
        self.inner().params()
    }
    fn gate_sets(&self) -> Vec<GateSet> {
        self.inner().gate_sets()
    }
    fn structure(&self) -> Result<Structure> {
        self.inner().structure()
    }
    fn architecture(&self) -> Option<Architecture> {
        self.inner().architecture()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(deserialize_with = "deserialize_compat")]
        model: Architecture,
    }

    #[test]
    fn architectures_are_tagged_and_untagged_mlps_still_read() {
        let a = Architecture::preset("residual-mlp", 5, 2).unwrap();
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["type"], "residual_mlp");
        assert_eq!(serde_json::from_value::<Architecture>(json.clone()).unwrap(), a);
        let h: Holder = serde_json::from_value(serde_json::json!({ "model": json })).unwrap();
        assert_eq!(h.model, a);
        let legacy = serde_json::json!({"model": {"input_dim": 3, "hidden": [4], "output_dim": 2,
            "group_inputs": true, "group_hidden": false}});
        let h: Holder = serde_json::from_value(legacy).unwrap();
        assert_eq!(
            h.model,
            Architecture::Mlp(MlpConfig {
                input_dim: 3,
                hidden: vec![4],
                output_dim: 2,
                group_inputs: true,
                group_hidden: false
            })
        );
        assert!(serde_json::from_value::<Architecture>(serde_json::json!({"type": "gpt"})).is_err());
    }

    #[test]
    fn resizing_follows_the_structure() {
        let a = Architecture::preset("residual-mlp", 5, 2).unwrap();
        let sizes = BTreeMap::from([("stream".to_string(), 7), ("blocks.1.hidden".to_string(), 3)]);
        let Architecture::ResidualMlp(c) = a.resized(&sizes).unwrap() else { panic!("type changed") };
        assert_eq!((c.width, c.blocks.clone(), c.input_dim), (7, vec![32, 3], 5));
        assert!(a.resized(&BTreeMap::from([("nope".to_string(), 1)])).is_err());
        assert!(a.resized(&BTreeMap::from([("stream".to_string(), 0)])).is_err());
        assert!(matches!(Architecture::preset("gpt", 3, 2), Err(Error::UnknownName { .. })));
    }
}

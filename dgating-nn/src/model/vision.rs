//! The conv-net presets as [`Architecture`]s.

use crate::error::{Error, Result};
use crate::model::{Architecture, ConvNetConfig, ImageShape, ResNetConfig};

/// Names accepted by [`Architecture::conv_preset`].
pub const CONV_PRESETS: &[&str] = &["lenet5", "vgg11", "vgg16", "resnet20", "resnet56"];

impl Architecture {
    /// A conv-net preset for `input` images and `output_dim` classes with channel widths
    /// multiplied by `width`: `lenet5`, `vgg11`, `vgg16` ([`ConvNetConfig::preset`]), `resnet20`,
    /// `resnet56` ([`ResNetConfig::preset`]).
    pub fn conv_preset(name: &str, input: ImageShape, output_dim: usize, width: f64) -> Result<Self> {
        match name {
            "lenet5" | "vgg11" | "vgg16" => Ok(Self::ConvNet(ConvNetConfig::preset(name, input, output_dim, width)?)),
            "resnet20" | "resnet56" => Ok(Self::ResNet(ResNetConfig::preset(name, input, output_dim, width)?)),
            _ => Err(Error::UnknownName { kind: "conv net preset", name: name.into(), known: CONV_PRESETS.join(", ") }),
        }
    }

    /// The images a conv net reads; `None` for the other architectures.
    pub fn image_shape(&self) -> Option<ImageShape> {
        match self {
            Self::ConvNet(c) => Some(c.input),
            Self::ResNet(c) => Some(c.input),
            _ => None,
        }
    }
}

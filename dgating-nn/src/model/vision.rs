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

impl ImageShape {
    /// The image shape of rows of `features` pixels, for the sizes the conv presets take:
    /// 784 (1×28×28), 1024 (1×32×32), 2352 (3×28×28), 3072 (3×32×32).
    pub fn infer(features: usize) -> Result<Self> {
        Ok(match features {
            784 => Self::new(1, 28, 28),
            1024 => Self::new(1, 32, 32),
            2352 => Self::new(3, 28, 28),
            3072 => Self::new(3, 32, 32),
            _ => {
                return Err(Error::Config(format!(
                    "conv nets read 28x28 or 32x32 images with 1 or 3 channels (784, 1024, 2352 or 3072 features \
                     per row, channel-major); this data has {features} features per row"
                )));
            }
        })
    }
}

impl Architecture {
    /// The architecture a run's `--model` names for data of `features` columns and
    /// `output_dim` outputs: an MLP preset ([`Architecture::preset`]), or a conv preset with an
    /// optional width multiplier after `@` (`vgg11@0.25`) for images whose shape follows from
    /// the number of features ([`ImageShape::infer`]).
    pub fn named(spec: &str, features: usize, output_dim: usize) -> Result<Self> {
        let (name, width) = match spec.split_once('@') {
            Some((n, w)) => {
                let w: f64 = w.parse().map_err(|_| Error::Config(format!("`{spec}`: width `{w}` is not a number")))?;
                (n, Some(w))
            }
            None => (spec, None),
        };
        if CONV_PRESETS.contains(&name) {
            return Self::conv_preset(name, ImageShape::infer(features)?, output_dim, width.unwrap_or(1.0));
        }
        if width.is_some() {
            return Err(Error::Config(format!("`{spec}`: a width multiplier applies to the conv presets only")));
        }
        match Self::preset(name, features, output_dim) {
            Err(Error::UnknownName { kind, name, known }) => {
                Err(Error::UnknownName { kind, name, known: format!("{known}, {}", CONV_PRESETS.join(", ")) })
            }
            other => other,
        }
    }
}

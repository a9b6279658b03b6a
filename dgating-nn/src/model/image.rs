//! [`ImageShape`]: the input of a conv net, and turning a batch of rows into NCHW images with
//! an error that names the image size when it does not fit.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Channels, height and width of the images a conv net reads. Rows of a data set are images
/// flattened channel-major (`C·H·W` features: all of channel 0 row by row, then channel 1, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageShape {
    /// Channels (1 grey, 3 RGB).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl ImageShape {
    /// `channels × height × width`.
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        Self { channels, height, width }
    }

    /// Features per flattened image.
    pub fn features(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Rejects empty images.
    pub fn check(&self) -> Result<()> {
        if self.features() == 0 {
            return Err(Error::Config(format!("an image needs channels, height, width >= 1, got {self}")));
        }
        Ok(())
    }

    /// `x` as `[batch, C, H, W]`: rows of `C·H·W` features, or images of this shape already.
    /// Anything else is an error that names the model and both shapes.
    pub fn to_images(&self, x: &Tensor, model: &str) -> Result<Tensor> {
        let bad = || Error::Model {
            what: format!("{model} input"),
            message: format!(
                "the model reads images of {self} ({} features per row, or [batch, {}, {}, {}]), got a batch of shape {:?}",
                self.features(),
                self.channels,
                self.height,
                self.width,
                x.dims()
            ),
        };
        match x.dims() {
            [b, f] if *f == self.features() => Ok(x.reshape((*b, self.channels, self.height, self.width))?),
            [_, c, h, w] if (*c, *h, *w) == (self.channels, self.height, self.width) => Ok(x.clone()),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

/// `round(c · width)`, at least 1: a channel count under a width multiplier.
pub fn scaled(c: usize, width: f64) -> usize {
    ((c as f64 * width).round() as usize).max(1)
}

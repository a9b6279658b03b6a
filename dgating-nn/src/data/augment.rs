//! Image augmentation for training batches (random crop with zero padding, horizontal flip)
//! and per-channel normalization statistics.

use candle_core::{DType, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{Dataset, Standardizer};
use crate::error::{Error, Result};
use crate::model::ImageShape;

/// What is done to each training image, freshly at random every time it is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Augment {
    /// Pad by this many zeros on every side, then crop back to the original size at a random
    /// offset (0: no crop).
    pub crop_padding: usize,
    /// Mirror left-right with probability 1/2.
    pub hflip: bool,
}

impl Augment {
    /// Whether it changes anything.
    pub fn is_identity(&self) -> bool {
        self.crop_padding == 0 && !self.hflip
    }

    /// The augmented batch `x` (`[batch, C·H·W]` rows of `shape` images), drawn from `seed`.
    pub fn apply(&self, x: &Tensor, shape: ImageShape, seed: u64) -> Result<Tensor> {
        if self.is_identity() {
            return Ok(x.clone());
        }
        let (n, f) = x.dims2()?;
        if f != shape.features() {
            return Err(Error::Input {
                op: "augmentation".into(),
                expected: shape.features(),
                actual: x.dims().to_vec(),
            });
        }
        let v = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; v.len()];
        let mut rng = StdRng::seed_from_u64(seed);
        let (c, h, w) = (shape.channels, shape.height, shape.width);
        let p = self.crop_padding as isize;
        for (src, dst) in v.chunks_exact(f).zip(out.chunks_exact_mut(f)) {
            let mut offset = || if p > 0 { rng.random_range(-(p as i64)..=p as i64) as isize } else { 0 };
            let (dy, dx) = (offset(), offset());
            let flip = self.hflip && rng.random_bool(0.5);
            for ch in 0..c {
                for y in 0..h {
                    let sy = y as isize + dy;
                    if sy < 0 || sy >= h as isize {
                        continue;
                    }
                    for xo in 0..w {
                        let xs = if flip { w - 1 - xo } else { xo } as isize + dx;
                        if xs >= 0 && xs < w as isize {
                            dst[(ch * h + y) * w + xo] = src[(ch * h + sy as usize) * w + xs as usize];
                        }
                    }
                }
            }
        }
        Ok(Tensor::from_vec(out, (n, f), x.device())?.to_dtype(x.dtype())?)
    }
}

impl Standardizer {
    /// Per-channel statistics of images of `channels` channels (rows channel-major): every
    /// pixel of a channel gets the channel's mean and population standard deviation over all
    /// images and positions — the usual image normalization, stored like any standardizer.
    pub fn fit_channels(data: &Dataset, channels: usize) -> Result<Self> {
        let p = data.num_features;
        if channels == 0 || !p.is_multiple_of(channels) || data.is_empty() {
            return Err(Error::data(data.name.clone(), format!("cannot split {p} features into {channels} channels")));
        }
        let plane = p / channels;
        let mut stats = vec![(0.0f64, 0.0f64); channels];
        for row in data.features.chunks_exact(p) {
            for (ch, px) in row.chunks_exact(plane).enumerate() {
                for &v in px {
                    stats[ch].0 += f64::from(v);
                    stats[ch].1 += f64::from(v) * f64::from(v);
                }
            }
        }
        let count = (data.len() * plane) as f64;
        let (mut mean, mut std) = (Vec::with_capacity(p), Vec::with_capacity(p));
        for (s, q) in stats {
            let m = s / count;
            let sd = (q / count - m * m).max(0.0).sqrt();
            let sd = if sd > 1e-12 { sd } else { 1.0 };
            mean.extend(std::iter::repeat_n(m as f32, plane));
            std.extend(std::iter::repeat_n(sd as f32, plane));
        }
        Ok(Self { mean, std })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn crops_shift_and_flips_mirror() {
        let shape = ImageShape::new(1, 2, 3);
        let x = Tensor::new(&[[1f32, 2., 3., 4., 5., 6.]], &Device::Cpu).unwrap();
        let flip = Augment { crop_padding: 0, hflip: true };
        let seen: Vec<Vec<f32>> =
            (0..16).map(|s| flip.apply(&x, shape, s).unwrap().flatten_all().unwrap().to_vec1().unwrap()).collect();
        assert!(seen.contains(&vec![3., 2., 1., 6., 5., 4.]) && seen.contains(&vec![1., 2., 3., 4., 5., 6.]));
        let crop = Augment { crop_padding: 1, hflip: false };
        for s in 0..16 {
            let y: Vec<f32> = crop.apply(&x, shape, s).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            // Every output pixel is 0 (padding) or the input pixel at one common offset.
            assert!(y.iter().all(|v| *v == 0.0 || (1.0..=6.0).contains(v)), "{y:?}");
        }
        assert!(crop.apply(&x, ImageShape::new(1, 3, 3), 0).is_err());
        assert!(Augment::default().is_identity());
    }

    #[test]
    fn channel_statistics_are_shared_by_the_pixels_of_a_channel() {
        let d = crate::data::builtin("mnist-10k").unwrap();
        let s = Standardizer::fit_channels(&d, 1).unwrap();
        assert_eq!(s.mean.len(), 784);
        assert!(s.mean.iter().all(|&m| m == s.mean[0]) && s.std.iter().all(|&v| v == s.std[0]));
        assert!((0.1..0.15).contains(&s.mean[0]), "{}", s.mean[0]);
        assert!(Standardizer::fit_channels(&d, 3).is_err());
    }
}

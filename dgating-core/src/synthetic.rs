//! A seeded generator of group-sparse linear problems with known support.

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::GroupLayout;
use crate::solver::problem::{LinearProblem, Loss};

/// What to generate. `x_ik ~ N(0, 1)`; each of `active_groups` randomly chosen groups gets
/// coefficients with random sign and magnitude in `[1, 2]`; `y = xβ + N(0, noise_std²)` for
/// squared loss, `y ~ Bernoulli(σ(xβ))` for logistic loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupSparseSpec {
    /// `n`.
    pub samples: usize,
    /// `J`.
    pub groups: usize,
    /// Features per group.
    pub group_size: usize,
    /// Groups with non-zero coefficients (`<= groups`).
    pub active_groups: usize,
    /// Gaussian noise standard deviation (squared loss only).
    pub noise_std: f64,
    /// Loss (and so how `y` is drawn).
    pub loss: Loss,
    /// RNG seed: the same spec gives the same data, bit for bit.
    pub seed: u64,
}

/// A generated problem and its ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSparseData {
    /// The problem (no intercept: the truth has none).
    pub problem: LinearProblem,
    /// Blocks of `group_size` consecutive features.
    pub layout: GroupLayout,
    /// The true coefficients.
    pub coef: Vec<f64>,
    /// `true` for the active groups.
    pub support: Vec<bool>,
}

impl GroupSparseSpec {
    /// Generates the data.
    pub fn generate(&self) -> Result<GroupSparseData> {
        if self.active_groups > self.groups {
            return Err(Error::InvalidParameter {
                what: "active groups",
                value: self.active_groups as f64,
                reason: "must be <= groups",
            });
        }
        if !self.noise_std.is_finite() || self.noise_std < 0.0 {
            return Err(Error::InvalidParameter {
                what: "noise std",
                value: self.noise_std,
                reason: "must be finite and >= 0",
            });
        }
        let layout = GroupLayout::blocks("coef", self.groups, self.group_size)?;
        let p = self.groups * self.group_size;
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut support = vec![false; self.groups];
        for j in sample(&mut rng, self.groups, self.active_groups) {
            support[j] = true;
        }
        let mut coef = vec![0.0; p];
        for (j, _) in support.iter().enumerate().filter(|(_, a)| **a) {
            for c in &mut coef[j * self.group_size..(j + 1) * self.group_size] {
                let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                *c = sign * rng.random_range(1.0..=2.0);
            }
        }
        let x: Vec<f64> = (0..self.samples * p).map(|_| rng.sample(StandardNormal)).collect();
        let y = x
            .chunks_exact(p)
            .map(|row| {
                let z: f64 = row.iter().zip(&coef).map(|(a, b)| a * b).sum();
                match self.loss {
                    Loss::Squared => z + self.noise_std * rng.sample::<f64, _>(StandardNormal),
                    Loss::Logistic => f64::from(u8::from(rng.random::<f64>() < 1.0 / (1.0 + (-z).exp()))),
                }
            })
            .collect();
        let problem = LinearProblem::new(x, y, p, self.loss, false)?;
        Ok(GroupSparseData { problem, layout, coef, support })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GroupSparseSpec {
        GroupSparseSpec {
            samples: 20,
            groups: 6,
            group_size: 3,
            active_groups: 2,
            noise_std: 0.1,
            loss: Loss::Squared,
            seed: 7,
        }
    }

    #[test]
    fn deterministic_and_has_the_asked_support() {
        let a = spec().generate().unwrap();
        let b = spec().generate().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.support.iter().filter(|s| **s).count(), 2);
        let norms = a.layout.group_norms(&[&a.coef]).unwrap();
        for (n, s) in norms.iter().zip(&a.support) {
            assert_eq!(*n > 0.0, *s);
        }
        let c = GroupSparseSpec { seed: 8, ..spec() }.generate().unwrap();
        assert_ne!(a.coef, c.coef);
    }

    #[test]
    fn too_many_active_groups_is_an_error() {
        assert!(GroupSparseSpec { active_groups: 7, ..spec() }.generate().is_err());
    }
}

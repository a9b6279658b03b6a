//! [`Standardizer`]: per-feature `(x − mean) / std` with training statistics.

use serde::{Deserialize, Serialize};

use super::Dataset;
use crate::error::{Error, Result};

/// Per-feature mean and standard deviation of a training set, applied unchanged to test data
/// and at inference. Serializable because a trained model's config must carry it: a model is
/// only meaningful on inputs scaled the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Per-feature mean.
    pub mean: Vec<f32>,
    /// Per-feature population standard deviation; `1` for a constant column, so that it maps
    /// to `0` instead of dividing by zero.
    pub std: Vec<f32>,
}

impl Standardizer {
    /// The training statistics of `data` (accumulated in `f64`). Errors on an empty data set,
    /// which has none.
    pub fn fit(data: &Dataset) -> Result<Self> {
        let (n, p) = (data.len(), data.num_features);
        if n == 0 {
            return Err(Error::data(data.name.clone(), "cannot fit a standardizer on zero samples"));
        }
        let mut mean = vec![0.0f64; p];
        for row in data.features.chunks_exact(p) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0f64; p];
        for row in data.features.chunks_exact(p) {
            for ((v, &x), m) in var.iter_mut().zip(row).zip(&mean) {
                *v += (f64::from(x) - m).powi(2);
            }
        }
        let std = var
            .iter()
            .zip(&mean)
            .map(|(v, m)| {
                let s = (v / n as f64).sqrt();
                // Rounding noise of a constant column is about eps·|mean|: treat it as zero.
                if s.is_finite() && s > 10.0 * f64::EPSILON * m.abs().max(f64::MIN_POSITIVE) { s as f32 } else { 1.0 }
            })
            .collect();
        Ok(Self { mean: mean.into_iter().map(|m| m as f32).collect(), std })
    }

    /// Number of features it was fitted on.
    pub fn num_features(&self) -> usize {
        self.mean.len()
    }

    /// Standardizes `data` in place. Errors if its feature count differs from the fitted one or
    /// a result is not finite.
    pub fn apply(&self, data: &mut Dataset) -> Result<()> {
        if data.num_features != self.num_features() {
            return Err(Error::Config(format!(
                "standardizer fitted on {} features applied to `{}` with {}",
                self.num_features(),
                data.name,
                data.num_features
            )));
        }
        self.apply_rows(&mut data.features)
    }

    /// Standardizes a row-major `[n, num_features]` buffer in place (inputs at inference).
    pub fn apply_rows(&self, features: &mut [f32]) -> Result<()> {
        let p = self.num_features();
        if self.std.len() != p {
            return Err(Error::Config(format!("standardizer has {p} means but {} stds", self.std.len())));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::Config(format!("standardizer std {s} is not finite and positive")));
        }
        if p == 0 || !features.len().is_multiple_of(p) {
            return Err(Error::Config(format!("{} values are not rows of {p} features", features.len())));
        }
        for row in features.chunks_exact_mut(p) {
            for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = ((f64::from(*x) - f64::from(*m)) / f64::from(*s)) as f32;
            }
        }
        if features.iter().any(|x| !x.is_finite()) {
            return Err(Error::Config("standardized features are not finite".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Targets;

    /// Column 0 varies, column 1 is constant at 1e4.
    fn data() -> Dataset {
        let features = vec![1.0, 1e4, 2.0, 1e4, 3.0, 1e4, 10.0, 1e4];
        let names = vec!["a".into(), "c".into()];
        Dataset::new("d", features, 2, names, Targets::Values(vec![0.0; 4])).unwrap()
    }

    #[test]
    fn train_statistics_become_mean_zero_std_one() {
        let mut d = data();
        let s = Standardizer::fit(&d).unwrap();
        assert_eq!(s.mean, vec![4.0, 1e4]);
        assert!((s.std[0] - 12.5f32.sqrt()).abs() < 1e-6);
        s.apply(&mut d).unwrap();
        let col: Vec<f32> = d.features.iter().step_by(2).copied().collect();
        let mean = col.iter().sum::<f32>() / 4.0;
        let var = col.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{mean} {var}");
    }

    #[test]
    fn a_constant_column_maps_to_zero() {
        let mut d = data();
        let s = Standardizer::fit(&d).unwrap();
        assert_eq!(s.std[1], 1.0);
        s.apply(&mut d).unwrap();
        assert!(d.features.iter().skip(1).step_by(2).all(|&x| x == 0.0));
    }

    #[test]
    fn mismatches_and_empty_data_are_errors() {
        let s = Standardizer::fit(&data()).unwrap();
        let mut other = Dataset::new("o", vec![1.0], 1, vec!["x".into()], Targets::Values(vec![0.0])).unwrap();
        assert!(matches!(s.apply(&mut other), Err(Error::Config(_))));
        assert!(s.apply_rows(&mut [1.0, 2.0, 3.0]).is_err());
        assert!(Standardizer::fit(&data().subset(&[])).is_err());
        let broken = Standardizer { mean: vec![0.0], std: vec![0.0] };
        assert!(broken.apply_rows(&mut [1.0]).is_err());
    }

    #[test]
    fn serde_round_trip() {
        let s = Standardizer::fit(&data()).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Standardizer>(&json).unwrap(), s);
    }
}

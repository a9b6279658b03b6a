//! [`Threshold`]: the read-out that turns group norms into a kept-group mask.
//!
//! D-Gating drives unneeded groups towards 0 geometrically but never to exact zero in finite
//! time (docs/METHOD.md §2), so which groups are "zero" is decided by a threshold on `||w_j||`.
//! The default read-out of `dgating prune`, [`ReadOut`](crate::ReadOut), uses a `Threshold`
//! as its floor and adds the [`GapRule`](crate::GapRule).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Keeps group `j` iff `||w_j|| > max(absolute, relative · max_k ||w_k||)`.
///
/// Both parts must be finite and `>= 0`; `relative` must be `< 1` so the largest non-zero
/// group is always kept. A group with norm exactly 0 is never kept.
///
/// ```
/// use dgating_core::Threshold;
/// let t = Threshold::new(1e-3, 0.01)?;
/// assert_eq!(t.keep_mask(&[1.0, 0.02, 0.005, 0.0]), vec![true, true, false, false]);
/// # Ok::<(), dgating_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawThreshold", into = "RawThreshold")]
pub struct Threshold {
    absolute: f64,
    relative: f64,
}

#[derive(Serialize, Deserialize)]
struct RawThreshold {
    absolute: f64,
    relative: f64,
}

impl TryFrom<RawThreshold> for Threshold {
    type Error = Error;
    fn try_from(r: RawThreshold) -> Result<Self> {
        Threshold::new(r.absolute, r.relative)
    }
}

impl From<Threshold> for RawThreshold {
    fn from(t: Threshold) -> Self {
        RawThreshold { absolute: t.absolute, relative: t.relative }
    }
}

impl Threshold {
    /// Validates and builds a threshold.
    pub fn new(absolute: f64, relative: f64) -> Result<Self> {
        if !absolute.is_finite() || absolute < 0.0 {
            return Err(Error::InvalidParameter {
                what: "absolute threshold",
                value: absolute,
                reason: "must be finite and >= 0",
            });
        }
        if !relative.is_finite() || !(0.0..1.0).contains(&relative) {
            return Err(Error::InvalidParameter {
                what: "relative threshold",
                value: relative,
                reason: "must be in [0, 1)",
            });
        }
        Ok(Self { absolute, relative })
    }

    /// Only an absolute cut-off.
    pub fn absolute(absolute: f64) -> Result<Self> {
        Self::new(absolute, 0.0)
    }

    /// Only a cut-off relative to the largest group norm.
    pub fn relative(relative: f64) -> Result<Self> {
        Self::new(0.0, relative)
    }

    /// The absolute part.
    pub fn absolute_part(&self) -> f64 {
        self.absolute
    }

    /// The relative part.
    pub fn relative_part(&self) -> f64 {
        self.relative
    }

    /// The effective cut-off for these norms: `max(absolute, relative · max_j norms_j)`.
    pub fn cutoff(&self, norms: &[f64]) -> f64 {
        let largest = norms.iter().copied().fold(0.0f64, f64::max);
        self.absolute.max(self.relative * largest)
    }

    /// `true` for every kept group. Non-finite norms are kept (never silently dropped):
    /// callers that can meet them should check for them first.
    pub fn keep_mask(&self, norms: &[f64]) -> Vec<bool> {
        let cut = self.cutoff(norms);
        // `n > cut || n.is_nan()`: NaN compares false, so it is kept, never silently dropped.
        norms.iter().map(|&n| n > cut || n.is_nan()).collect()
    }

    /// Number of kept groups.
    pub fn count_kept(&self, norms: &[f64]) -> usize {
        self.keep_mask(norms).into_iter().filter(|&k| k).count()
    }
}

/// Magnitude pruning's mask: removes the `floor(remove_fraction · J)` groups with the
/// smallest norms (ties by index), but always keeps at least one group. `remove_fraction` is
/// the caller's validated target sparsity in `[0, 1)`.
pub fn keep_largest(norms: &[f64], remove_fraction: f64) -> Vec<bool> {
    let remove = (((norms.len() as f64) * remove_fraction).floor() as usize).min(norms.len().saturating_sub(1));
    let mut order: Vec<usize> = (0..norms.len()).collect();
    order.sort_by(|&a, &b| norms[a].total_cmp(&norms[b]).then(a.cmp(&b)));
    let mut keep = vec![true; norms.len()];
    for &j in &order[..remove] {
        keep[j] = false;
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_largest_removes_the_smallest_share_and_keeps_one() {
        assert_eq!(keep_largest(&[3.0, 1.0, 2.0, 1.0], 0.5), [true, false, true, false]);
        assert_eq!(keep_largest(&[1.0, 2.0], 0.99), [false, true]);
        assert_eq!(keep_largest(&[5.0], 0.9), [true]);
        assert!(keep_largest(&[], 0.5).is_empty());
    }

    #[test]
    fn absolute_and_relative_combine() {
        let norms = [10.0, 0.5, 0.05, 0.0];
        assert_eq!(Threshold::absolute(0.1).unwrap().keep_mask(&norms), vec![true, true, false, false]);
        assert_eq!(Threshold::relative(0.1).unwrap().keep_mask(&norms), vec![true, false, false, false]);
        assert_eq!(Threshold::new(0.0, 0.0).unwrap().keep_mask(&norms), vec![true, true, true, false]);
        assert_eq!(Threshold::new(0.01, 0.01).unwrap().count_kept(&norms), 2);
    }

    #[test]
    fn all_zero_keeps_nothing() {
        assert_eq!(Threshold::new(0.0, 0.5).unwrap().keep_mask(&[0.0, 0.0]), vec![false, false]);
    }

    #[test]
    fn invalid_thresholds_are_errors() {
        assert!(Threshold::new(-1.0, 0.0).is_err());
        assert!(Threshold::new(f64::NAN, 0.0).is_err());
        assert!(Threshold::new(0.0, 1.0).is_err());
        assert!(Threshold::new(0.0, -0.1).is_err());
        assert!(serde_json::from_str::<Threshold>(r#"{"absolute":-1,"relative":0}"#).is_err());
    }
}

//! [`GapRule`]: find where the collapsed groups of a layer end and the live ones begin.
//!
//! Under D-Gating the groups the loss does not need shrink geometrically (docs/METHOD.md §2). When
//! training has run long enough they end many decades below the live groups, and the sorted
//! norms of a layer show a *gap*: a large ratio between two consecutive norms. Every cut-off
//! inside the gap gives the same model, so the gap — not a hand-picked number — says which
//! groups are zero. When training stopped mid-collapse (e.g. a cosine schedule whose learning
//! rate reaches 0), the norms form a continuum, there is no gap, and the rule removes nothing;
//! the threshold floor of [`ReadOut`](crate::ReadOut) decides then. docs/EXPERIMENTS.md
//! ("Read-out threshold") has the measured gaps behind [`GapRule::DEFAULT_FACTOR`].

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A ratio between two consecutive sorted group norms of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// Groups with norm `<= lower` (exact zeros included): the groups the gap separates off.
    pub below: usize,
    /// The largest norm below the gap (`> 0`).
    pub lower: f64,
    /// The smallest norm above the gap.
    pub upper: f64,
}

impl Gap {
    /// `upper / lower` (`+inf` if it overflows).
    pub fn ratio(&self) -> f64 {
        self.upper / self.lower
    }
}

/// The finite positive norms, ascending. Zeros have no place on a log scale (they are below
/// every gap); NaN and infinities are no norms a rule can reason about and are skipped.
fn sorted_positive(norms: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = norms.iter().copied().filter(|n| n.is_finite() && *n > 0.0).collect();
    v.sort_by(f64::total_cmp);
    v
}

fn gap_at(norms: &[f64], lower: f64, upper: f64) -> Gap {
    // `<=` is false for NaN, so NaN norms never count as below.
    Gap { below: norms.iter().filter(|&&n| n <= lower).count(), lower, upper }
}

/// The largest ratio between consecutive finite positive norms (the highest one on ties);
/// `None` with fewer than two such norms. A diagnostic: it says how far the layer is from
/// having a gap at all.
pub fn largest_gap(norms: &[f64]) -> Option<Gap> {
    let s = sorted_positive(norms);
    // Scan from the top so that among equal ratios the highest wins, like `GapRule::find`.
    let (lo, hi) =
        s.windows(2).rev().map(|w| (w[0], w[1])).fold(None, |best: Option<(f64, f64)>, (lo, hi)| match best {
            Some((blo, bhi)) if bhi / blo >= hi / lo => Some((blo, bhi)),
            _ => Some((lo, hi)),
        })?;
    Some(gap_at(norms, lo, hi))
}

/// Drops every group below the *highest* gap of at least `factor` in its layer.
///
/// Scanning the sorted norms down from the largest, the first ratio `>= factor` between
/// consecutive norms ends the live groups; everything at or below its lower edge is zero. The
/// highest gap, not the largest, is used because collapse is not uniform: groups that lost the
/// loss signal early sit decades below those still shrinking, and a large gap *inside* the
/// collapsed mode must not hide the gap that separates it from the live groups. The cut is
/// scale invariant, never removes the largest group, and a layer without such a gap loses
/// nothing.
///
/// ```
/// use dgating_core::GapRule;
/// let rule = GapRule::new(10.0)?;
/// // live 0.3..1.1, collapsed 2e-3..1e-8: the gap 2e-3 -> 0.3 (150x) decides.
/// let norms = [1.1, 1e-8, 0.3, 2e-3, 0.7, 4e-5];
/// assert_eq!(rule.keep_mask(&norms), vec![true, false, true, false, true, false]);
/// // a dense-like layer: ratios of at most 2x, nothing removed.
/// assert_eq!(rule.keep_mask(&[0.5, 0.9, 1.0, 0.6]), vec![true; 4]);
/// # Ok::<(), dgating_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawGapRule", into = "RawGapRule")]
pub struct GapRule {
    factor: f64,
}

#[derive(Serialize, Deserialize)]
struct RawGapRule {
    factor: f64,
}

impl TryFrom<RawGapRule> for GapRule {
    type Error = Error;
    fn try_from(r: RawGapRule) -> Result<Self> {
        GapRule::new(r.factor)
    }
}

impl From<GapRule> for RawGapRule {
    fn from(g: GapRule) -> Self {
        RawGapRule { factor: g.factor }
    }
}

impl GapRule {
    /// The default factor, 10. Measured on 26 layers (docs/EXPERIMENTS.md): inside a set of
    /// live, dense or still-collapsing groups consecutive norms differ by at most 3.9x; where
    /// training finished the collapse, the gap between collapsed and kept groups is at least
    /// 21x. 10 lies between, with a margin of 2.6x below and 2.1x above.
    pub const DEFAULT_FACTOR: f64 = 10.0;

    /// A rule with gap factor `factor`, which must be finite and `> 1` (a factor of 1 would
    /// call every pair of distinct norms a gap).
    pub fn new(factor: f64) -> Result<Self> {
        if !factor.is_finite() || factor <= 1.0 {
            return Err(Error::InvalidParameter {
                what: "gap factor",
                value: factor,
                reason: "must be finite and > 1",
            });
        }
        Ok(Self { factor })
    }

    /// The factor.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The highest gap of at least the factor, or `None` (no gap: nothing to remove).
    pub fn find(&self, norms: &[f64]) -> Option<Gap> {
        let s = sorted_positive(norms);
        let w = s.windows(2).rev().find(|w| w[1] / w[0] >= self.factor)?;
        Some(gap_at(norms, w[0], w[1]))
    }

    /// Groups with norm `<=` this are removed: the lower edge of the gap, or `0` without one
    /// (then only exact zeros go).
    pub fn cutoff(&self, norms: &[f64]) -> f64 {
        self.find(norms).map_or(0.0, |g| g.lower)
    }

    /// `true` for every kept group (norm above the cut-off; NaN is kept, never silently
    /// dropped, as in [`Threshold`](crate::Threshold)).
    pub fn keep_mask(&self, norms: &[f64]) -> Vec<bool> {
        let cut = self.cutoff(norms);
        norms.iter().map(|&n| n > cut || n.is_nan()).collect()
    }
}

impl Default for GapRule {
    fn default() -> Self {
        Self { factor: Self::DEFAULT_FACTOR }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_highest_gap_not_the_largest() {
        // Measured shape (breast-cancer, 60 epochs): a 617x gap inside the collapsed mode,
        // a 52x gap above it. The highest one separates live from collapsed.
        let norms = [0.396, 0.295, 0.136, 0.129, 2.5e-3, 7.6e-4, 2.7e-5, 4.4e-8, 2.3e-8, 3e-12];
        let rule = GapRule::default();
        let g = rule.find(&norms).unwrap();
        assert_eq!((g.lower, g.upper, g.below), (2.5e-3, 0.129, 6));
        assert!((g.ratio() - 51.6).abs() < 0.1);
        let l = largest_gap(&norms).unwrap();
        assert_eq!((l.lower, l.upper, l.below), (3e-12, 2.3e-8, 1));
        assert_eq!(rule.keep_mask(&norms).iter().filter(|&&k| k).count(), 4);
    }

    #[test]
    fn no_gap_keeps_everything_and_zeros_always_go() {
        let rule = GapRule::default();
        let norms = [0.55, 0.6, 1.1, 1.19, 0.0];
        assert!(rule.find(&norms).is_none());
        assert_eq!(rule.cutoff(&norms), 0.0);
        assert_eq!(rule.keep_mask(&norms), vec![true, true, true, true, false]);
        // Zeros are below the gap and counted in `below`.
        let g = rule.find(&[1.0, 1e-3, 0.0]).unwrap();
        assert_eq!((g.below, g.lower), (2, 1e-3));
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let rule = GapRule::default();
        assert!(rule.keep_mask(&[]).is_empty());
        assert_eq!(rule.keep_mask(&[0.5]), vec![true]);
        assert_eq!(rule.keep_mask(&[0.0, 0.0]), vec![false, false]);
        assert!(largest_gap(&[0.5]).is_none());
        // NaN and infinity are skipped by the search and kept by the mask.
        let m = rule.keep_mask(&[f64::NAN, 1.0, 1e-6, f64::INFINITY]);
        assert_eq!(m, vec![true, true, false, true]);
        // Subnormal lower edge: the ratio overflows to +inf, still a gap.
        let g = rule.find(&[1.0, 5e-324]).unwrap();
        assert_eq!(g.ratio(), f64::INFINITY);
    }

    #[test]
    fn invalid_factors_are_errors() {
        for f in [1.0, 0.5, -3.0, f64::NAN, f64::INFINITY] {
            assert!(GapRule::new(f).is_err(), "{f}");
        }
        assert!(serde_json::from_str::<GapRule>(r#"{"factor":1}"#).is_err());
        let g: GapRule = serde_json::from_str(r#"{"factor":20}"#).unwrap();
        assert_eq!(g.factor(), 20.0);
    }
}

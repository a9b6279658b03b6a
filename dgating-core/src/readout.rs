//! [`ReadOut`]: the default decision which groups of a layer are zero — the [`GapRule`] on
//! top of a [`Threshold`] floor.
//!
//! Why both (measured in docs/EXPERIMENTS.md, "Read-out threshold"): when training has
//! finished the collapse, the collapsed groups sit decades below the live ones and any cut in
//! the gap gives the same model; when it has not (LeNet-300-100 after 30 cosine epochs), the
//! norms form a continuum with no gap and a floor relative to the layer's largest norm is the
//! only handle. The default floor, `1e-3` absolute and `3e-2` relative, is the largest
//! relative cut-off at which no measured D-Gating run lost more than 0.3 points of held-out
//! accuracy (5e-2 cost up to 0.55, 1e-1 up to 3.0), while the smallest group of every measured
//! dense model sits at `>= 0.11` of its layer's largest.
//!
//! Since the gap's lower edge is at most `max / factor`, the gap rule can only add removals
//! with norms in `(0.03, 0.1] · max` (default factor 10), and only below an empty band of 10x.
//! On the measured runs the floor always set the cut; the gap is reported per layer because it
//! says whether the cut is robust (a gap: every threshold inside it gives the same model) or a
//! trade-off (no gap: the threshold decides how much of a continuum goes).

use serde::{Deserialize, Serialize};

use crate::gap::{Gap, GapRule, largest_gap};
use crate::threshold::Threshold;

/// Which part of a [`ReadOut`] set a layer's cut-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CutBy {
    /// The threshold floor (no gap, or a gap below the floor).
    Floor,
    /// The gap rule: its gap lies above the floor.
    Gap,
}

/// What a [`ReadOut`] decided for one layer's norms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Groups with norm `<=` this are removed.
    pub cutoff: f64,
    /// Which part set `cutoff`.
    pub by: CutBy,
    /// The gap the rule found (at least its factor), if the read-out has a gap rule and the
    /// layer has such a gap.
    pub gap: Option<Gap>,
    /// The largest ratio between consecutive norms, whatever its size: how far the layer is
    /// from having a gap.
    pub largest_gap: Option<Gap>,
}

impl Decision {
    /// Whether a group of norm `n` is kept (NaN is kept, never silently dropped).
    pub fn keeps(&self, n: f64) -> bool {
        n > self.cutoff || n.is_nan()
    }

    /// `true` for every kept group.
    pub fn keep_mask(&self, norms: &[f64]) -> Vec<bool> {
        norms.iter().map(|&n| self.keeps(n)).collect()
    }
}

/// Keeps group `j` iff `||w_j|| > max(floor cut-off, gap cut-off)`, per layer.
///
/// Without a gap rule it is exactly the [`Threshold`]. Both parts are validated when built, so
/// every `ReadOut` is usable; it is scale invariant when the floor has no absolute part.
///
/// ```
/// use dgating_core::{CutBy, ReadOut};
/// let r = ReadOut::default();
/// // Finished collapse: gap (0.4 -> 1e-6) and floor remove the same groups; the floor is
/// // reported as the cut.
/// let d = r.decide(&[1.0, 0.4, 1e-6, 1e-9]);
/// assert_eq!((d.by, d.keep_mask(&[1.0, 0.4, 1e-6, 1e-9])), (CutBy::Floor, vec![true, true, false, false]));
/// // Collapse stopped half way: no gap, the relative floor 3e-2 removes 0.02.
/// assert_eq!(r.keep_mask(&[1.0, 0.5, 0.2, 0.1, 0.05, 0.02]), vec![true, true, true, true, true, false]);
/// // A gap above the floor (0.9 / 0.08 = 11x) cuts at its lower edge.
/// let d = r.decide(&[1.0, 0.9, 0.08, 0.05]);
/// assert_eq!((d.by, d.cutoff), (CutBy::Gap, 0.08));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReadOut {
    /// The threshold every layer gets.
    pub floor: Threshold,
    /// The gap rule on top (`None`: the floor alone).
    pub gap: Option<GapRule>,
}

impl ReadOut {
    /// Absolute part of the default floor.
    pub const DEFAULT_ABSOLUTE: f64 = 1e-3;
    /// Relative part of the default floor (of the layer's largest group norm).
    pub const DEFAULT_RELATIVE: f64 = 3e-2;

    /// The floor `floor` with the gap rule `gap` on top.
    pub fn new(floor: Threshold, gap: Option<GapRule>) -> Self {
        Self { floor, gap }
    }

    /// The default floor (`1e-3` absolute, `3e-2` relative) as a [`Threshold`].
    pub fn default_floor() -> Threshold {
        Threshold::new(Self::DEFAULT_ABSOLUTE, Self::DEFAULT_RELATIVE).expect("constant threshold is valid")
    }

    /// The cut-off for one layer's norms, which part set it and the gaps seen.
    pub fn decide(&self, norms: &[f64]) -> Decision {
        let floor = self.floor.cutoff(norms);
        let gap = self.gap.and_then(|g| g.find(norms));
        let (cutoff, by) = match gap {
            // Strictly above: at equality the floor already removes the same groups.
            Some(g) if g.lower > floor => (g.lower, CutBy::Gap),
            _ => (floor, CutBy::Floor),
        };
        Decision { cutoff, by, gap, largest_gap: largest_gap(norms) }
    }

    /// `true` for every kept group of one layer.
    pub fn keep_mask(&self, norms: &[f64]) -> Vec<bool> {
        self.decide(norms).keep_mask(norms)
    }
}

impl Default for ReadOut {
    /// The gap rule with factor [`GapRule::DEFAULT_FACTOR`] over the floor
    /// [`ReadOut::default_floor`].
    fn default() -> Self {
        Self { floor: Self::default_floor(), gap: Some(GapRule::default()) }
    }
}

impl From<Threshold> for ReadOut {
    /// The threshold alone, no gap rule.
    fn from(floor: Threshold) -> Self {
        Self { floor, gap: None }
    }
}

impl std::fmt::Display for ReadOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let floor = format!("absolute {:e}, relative {:e}", self.floor.absolute_part(), self.floor.relative_part());
        match self.gap {
            Some(g) => write!(f, "gap rule (factor {}) over the floor {floor}", g.factor()),
            None => write!(f, "threshold {floor} (no gap rule)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_alone_is_the_threshold() {
        let t = Threshold::new(1e-3, 1e-2).unwrap();
        let norms = [1.0, 0.5, 0.02, 0.005, 0.0, 1e-9];
        assert_eq!(ReadOut::from(t).keep_mask(&norms), t.keep_mask(&norms));
        assert_eq!(ReadOut::from(t).decide(&norms).by, CutBy::Floor);
    }

    #[test]
    fn gap_below_the_floor_is_reported_but_the_floor_cuts() {
        let r = ReadOut::default();
        let d = r.decide(&[1.0, 0.02, 1e-7]);
        assert_eq!(d.by, CutBy::Floor);
        assert_eq!(d.gap.unwrap().lower, 0.02);
        assert!((d.cutoff - 0.03).abs() < 1e-15);
        assert_eq!(d.largest_gap.unwrap().lower, 1e-7);
    }

    #[test]
    fn serde_round_trip_and_display() {
        let r = ReadOut::default();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"floor":{"absolute":0.001,"relative":0.03},"gap":{"factor":10.0}}"#);
        assert_eq!(serde_json::from_str::<ReadOut>(&json).unwrap(), r);
        assert!(
            serde_json::from_str::<ReadOut>(r#"{"floor":{"absolute":0,"relative":0},"gap":{"factor":0.5}}"#).is_err()
        );
        assert!(r.to_string().contains("factor 10"));
        assert!(ReadOut::from(Threshold::relative(0.1).unwrap()).to_string().contains("no gap rule"));
    }
}

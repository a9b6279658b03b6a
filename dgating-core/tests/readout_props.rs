//! Property tests of the read-out: the gap rule removes nothing from a layer without a gap,
//! exactly the low mode of a bimodal layer, and does not care about the scale.

use dgating_core::{GapRule, ReadOut, Threshold};
use proptest::prelude::*;

/// Norms whose sorted consecutive ratios are all `< max_step` (a log-space random walk from
/// `10^start`), shuffled: a layer with no gap of `max_step` or more.
fn walk(n: std::ops::Range<usize>, start: std::ops::Range<f64>, max_step: f64) -> impl Strategy<Value = Vec<f64>> {
    let steps = prop::collection::vec(0.0..max_step.log10(), n);
    (start, steps).prop_map(|(s, steps)| {
        let mut x = s;
        let mut v = vec![10f64.powf(x)];
        for d in steps {
            x += d;
            v.push(10f64.powf(x));
        }
        v
    })
}

/// Keep masks as a sorted list of kept values (order-free comparison after shuffling).
fn kept(norms: &[f64], mask: &[bool]) -> Vec<f64> {
    let mut k: Vec<f64> = norms.iter().zip(mask).filter(|(_, m)| **m).map(|(n, _)| *n).collect();
    k.sort_by(f64::total_cmp);
    k
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Dense-like layers (every consecutive ratio below the factor, over up to 9 decades)
    /// lose nothing to the gap rule, nor to a read-out whose floor is 0.
    #[test]
    fn no_gap_means_nothing_removed(
        norms in walk(0..300, -6.0..2.0, 0.99 * GapRule::DEFAULT_FACTOR).prop_shuffle(),
    ) {
        let rule = GapRule::default();
        prop_assert!(rule.find(&norms).is_none());
        prop_assert!(rule.keep_mask(&norms).iter().all(|&k| k));
        let r = ReadOut::new(Threshold::new(0.0, 0.0).unwrap(), Some(rule));
        prop_assert!(r.keep_mask(&norms).iter().all(|&k| k));
    }

    /// Two modes, each with consecutive ratios below 2, separated by at least the factor:
    /// exactly the low mode (and any exact zeros) is removed, whatever the factor.
    #[test]
    fn bimodal_norms_lose_exactly_the_low_mode(
        factor in 2.5f64..100.0,
        low in walk(0..100, -12.0..-1.0, 2.0),
        high_steps in walk(0..100, 0.0..2.0, 2.0),
        separation in 1.001f64..1e6,
        zeros in 0usize..5,
        seed in any::<u64>(),
    ) {
        let top_low = low.iter().copied().fold(0.0, f64::max);
        // `high_steps` starts at >= 1: scale so its smallest is `factor * separation` above the low max.
        let base = high_steps.iter().copied().fold(f64::INFINITY, f64::min);
        let high: Vec<f64> = high_steps.iter().map(|h| h / base * top_low * factor * separation).collect();
        let mut norms: Vec<f64> = low.iter().chain(&high).copied().chain(std::iter::repeat_n(0.0, zeros)).collect();
        // Deterministic shuffle from `seed`.
        let mut s = seed | 1;
        for i in (1..norms.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            norms.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let rule = GapRule::new(factor).unwrap();
        let mask = rule.keep_mask(&norms);
        let mut want = high.clone();
        want.sort_by(f64::total_cmp);
        prop_assert_eq!(kept(&norms, &mask), want);
        let g = rule.find(&norms).unwrap();
        prop_assert_eq!(g.below, low.len() + zeros);
        prop_assert_eq!(g.lower, top_low);
    }

    /// Multiplying every norm by a power of two (exact in floating point) changes no decision
    /// of the gap rule or of a purely relative read-out; the kept set is upward closed and the
    /// largest group is always kept.
    #[test]
    fn scale_invariant_and_monotone(
        norms in prop::collection::vec(prop_oneof![Just(0.0), 1e-12f64..1e3], 1..200),
        k in -60i32..60,
        rel in 0.0f64..0.9,
        factor in 1.5f64..1e4,
    ) {
        let c = 2f64.powi(k);
        let scaled: Vec<f64> = norms.iter().map(|n| n * c).collect();
        let r = ReadOut::new(Threshold::relative(rel).unwrap(), Some(GapRule::new(factor).unwrap()));
        let mask = r.keep_mask(&norms);
        prop_assert_eq!(&mask, &r.keep_mask(&scaled));
        let g = GapRule::new(factor).unwrap();
        prop_assert_eq!(g.keep_mask(&norms), g.keep_mask(&scaled));
        let kept_min = norms.iter().zip(&mask).filter(|(_, m)| **m).map(|(n, _)| *n).fold(f64::INFINITY, f64::min);
        let dropped_max = norms.iter().zip(&mask).filter(|(_, m)| !**m).map(|(n, _)| *n).fold(0.0, f64::max);
        prop_assert!(dropped_max < kept_min || mask.iter().all(|&m| !m));
        let max = norms.iter().copied().fold(0.0, f64::max);
        if max > 0.0 {
            prop_assert!(norms.iter().zip(&mask).any(|(n, m)| *n == max && *m));
        }
    }
}

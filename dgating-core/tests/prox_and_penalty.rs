//! Prox operators against brute force, direct-penalty gradients against finite differences.

use dgating_core::{GroupLayout, direct_penalty_grad, group_penalty, prox_groups, prox_norm};
use proptest::prelude::*;

/// `h(r) = ½(r − ρ)² + t r^q` on a dense grid over `[0, ρ]` (the minimizer lies there).
fn grid_min(rho: f64, t: f64, q: f64) -> f64 {
    let n = 20_000;
    (0..=n)
        .map(|i| rho * i as f64 / n as f64)
        .map(|r| 0.5 * (r - rho).powi(2) + t * r.powf(q))
        .fold(f64::INFINITY, f64::min)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every prox result is at least as good as the best point of a 20 001-point grid.
    #[test]
    fn prox_beats_dense_grid(rho in 0.0f64..10.0, t in 0.0f64..5.0, depth in 2usize..8) {
        let q = 2.0 / depth as f64;
        let r = prox_norm(rho, t, depth).unwrap();
        prop_assert!((0.0..=rho).contains(&r), "r* = {r} outside [0, {rho}]");
        let h = 0.5 * (r - rho).powi(2) + t * r.powf(q);
        let best = grid_min(rho, t, q);
        prop_assert!(h <= best + 1e-12 * (1.0 + best), "D={depth} rho={rho} t={t}: prox {h} vs grid {best}");
    }

    /// The vector prox shrinks each group along its own direction by the scalar prox.
    #[test]
    fn group_prox_is_radial(v in prop::collection::vec(-3.0f64..3.0, 12), t in 0.0f64..2.0, depth in 2usize..6) {
        let layout = GroupLayout::columns("w", 3, 4).unwrap();
        let out = prox_groups(&layout, &[&v], t, depth).unwrap().swap_remove(0);
        let before = layout.group_norms(&[&v]).unwrap();
        let after = layout.group_norms(&[&out]).unwrap();
        for j in 0..4 {
            let expect = prox_norm(before[j], t, depth).unwrap();
            prop_assert!((after[j] - expect).abs() <= 1e-12 * (1.0 + expect));
            for r in layout.spans(0, j) {
                for i in r {
                    // Same direction: out_i = (r*/ρ) v_i.
                    let s = if before[j] > 0.0 { expect / before[j] } else { 0.0 };
                    prop_assert!((out[i] - s * v[i]).abs() <= 1e-12);
                }
            }
        }
    }

    /// The direct-penalty gradient (ε = 0) is the gradient of λ Σ ||w_j||^(2/D) away from 0,
    /// and the ε-smoothed one is the gradient of λ Σ (||w_j||² + ε²)^(1/D).
    #[test]
    fn direct_penalty_grad_matches_finite_differences(
        w in prop::collection::vec(0.2f64..2.0, 6),
        signs in prop::collection::vec(any::<bool>(), 6),
        depth in 2usize..6,
        lambda in 0.0f64..2.0,
        epsilon in prop::sample::select(vec![0.0, 1e-3, 0.5]),
    ) {
        let w: Vec<f64> = w.iter().zip(&signs).map(|(x, s)| if *s { *x } else { -*x }).collect();
        let layout = GroupLayout::rows("w", 3, 2).unwrap();
        let value = |w: &[f64]| -> f64 {
            let sq = layout.group_sq_norms(&[w]).unwrap();
            lambda * sq.iter().map(|n2| (n2 + epsilon * epsilon).powf(1.0 / depth as f64)).sum::<f64>()
        };
        let g = direct_penalty_grad(&layout, &[&w], depth, lambda, epsilon).unwrap().swap_remove(0);
        let h = 1e-6;
        for i in 0..w.len() {
            let (mut p, mut m) = (w.clone(), w.clone());
            p[i] += h;
            m[i] -= h;
            let fd = (value(&p) - value(&m)) / (2.0 * h);
            prop_assert!((fd - g[i]).abs() <= 1e-6 * (1.0 + fd.abs()), "i={i}: fd {fd} vs {}", g[i]);
        }
        if epsilon == 0.0 {
            let direct = lambda * group_penalty(&layout.group_norms(&[&w]).unwrap(), depth).unwrap();
            prop_assert!((direct - value(&w)).abs() <= 1e-12 * (1.0 + direct));
        }
    }
}

#[test]
fn direct_penalty_grad_at_zero_group_is_zero_and_bad_epsilon_is_error() {
    let layout = GroupLayout::rows("w", 2, 2).unwrap();
    let w = [0.0, 0.0, 1.0, 1.0];
    let g = direct_penalty_grad(&layout, &[&w], 3, 1.0, 0.0).unwrap();
    assert_eq!(&g[0][..2], &[0.0, 0.0]);
    assert!(direct_penalty_grad(&layout, &[&w], 3, 1.0, -1.0).is_err());
    assert!(direct_penalty_grad(&layout, &[&w], 3, -1.0, 0.0).is_err());
    assert!(direct_penalty_grad(&layout, &[&w], 1, 1.0, 0.0).is_err());
}

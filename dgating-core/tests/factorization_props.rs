//! Property tests of the factorization math against docs/METHOD.md §2 (f64).

use dgating_core::{
    GateMatrix, GroupLayout, GroupMember, as_slices, balance, compose, compose_backward, factor_penalty, group_penalty,
    imbalance,
};
use proptest::prelude::*;

/// A layout of `j` groups over a `[j*block, cols]` matrix and a `[j*block]` bias, with data.
fn layout_and_weights() -> impl Strategy<Value = (GroupLayout, Vec<f64>, Vec<f64>)> {
    (1usize..6, 1usize..4, 1usize..5).prop_flat_map(|(j, block, cols)| {
        let layout = GroupLayout::new(
            j,
            vec![GroupMember::new("w", [j * block, cols], 0, block), GroupMember::new("b", [j * block], 0, block)],
        )
        .unwrap();
        (
            Just(layout),
            prop::collection::vec(-3.0f64..3.0, j * block * cols),
            prop::collection::vec(-3.0f64..3.0, j * block),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// AM-GM: (1/D)(||ω_j||² + Σγ²) >= ||ω_j Πγ||^(2/D) for any factorization.
    #[test]
    fn am_gm_lower_bound_never_violated(
        (layout, w, b) in layout_and_weights(),
        depth in 2usize..6,
        seed_gates in prop::collection::vec(-2.0f64..2.0, 30),
    ) {
        let j = layout.num_groups();
        let gates = GateMatrix::new(j, depth - 1, seed_gates[..j * (depth - 1)].to_vec()).unwrap();
        let omega = [w.as_slice(), b.as_slice()];
        let composed = compose(&layout, &omega, &gates).unwrap();
        let lower = group_penalty(&layout.group_norms(&as_slices(&composed)).unwrap(), depth).unwrap();
        let upper = factor_penalty(&layout, &omega, &gates).unwrap();
        prop_assert!(upper >= lower - 1e-12 * (1.0 + lower), "factor {upper} < group {lower}");
    }

    /// The bound is attained exactly at the balanced point, which reproduces `w`.
    #[test]
    fn balanced_point_attains_bound_and_preserves_w((layout, w, b) in layout_and_weights(), depth in 2usize..6) {
        let weights = [w.as_slice(), b.as_slice()];
        let f = balance(&layout, &weights, depth).unwrap();
        let back = f.compose(&layout).unwrap();
        for (orig, new) in weights.iter().zip(&back) {
            for (x, y) in orig.iter().zip(new) {
                prop_assert!((x - y).abs() <= 1e-12 * (1.0 + x.abs()), "{x} vs {y}");
            }
        }
        let gated = factor_penalty(&layout, &as_slices(&f.omega), &f.gates).unwrap();
        let direct = group_penalty(&layout.group_norms(&weights).unwrap(), depth).unwrap();
        prop_assert!((gated - direct).abs() <= 1e-12 * (1.0 + direct), "{gated} vs {direct}");
        let imb = imbalance(&layout, &as_slices(&f.omega), &f.gates).unwrap();
        prop_assert!(imb.max_abs <= 1e-12 * (1.0 + direct));
    }

    /// balance(compose(ω, γ)) gives back the same w (any factorization, any signs).
    #[test]
    fn balance_of_compose_leaves_w_unchanged(
        (layout, w, b) in layout_and_weights(),
        depth in 2usize..5,
        g in prop::collection::vec(-2.0f64..2.0, 30),
    ) {
        let j = layout.num_groups();
        let gates = GateMatrix::new(j, depth - 1, g[..j * (depth - 1)].to_vec()).unwrap();
        let composed = compose(&layout, &[&w, &b], &gates).unwrap();
        let rebalanced = balance(&layout, &as_slices(&composed), depth).unwrap().compose(&layout).unwrap();
        for (x, y) in composed.iter().flatten().zip(rebalanced.iter().flatten()) {
            prop_assert!((x - y).abs() <= 1e-12 * (1.0 + x.abs()));
        }
    }

    /// compose_backward against central differences of a random linear functional of w.
    #[test]
    fn compose_backward_matches_finite_differences(
        (layout, w, b) in layout_and_weights(),
        depth in 2usize..5,
        coeff in prop::collection::vec(-1.0f64..1.0, 80),
        g in prop::collection::vec(0.2f64..1.5, 30),
    ) {
        let j = layout.num_groups();
        let gates = GateMatrix::new(j, depth - 1, g[..j * (depth - 1)].to_vec()).unwrap();
        // f(w) = Σ c_i w_i + ½ Σ w_i² : ∂f/∂w = c + w.
        let n = w.len() + b.len();
        let c = &coeff[..n.min(coeff.len())];
        let c: Vec<f64> = (0..n).map(|i| c.get(i).copied().unwrap_or(0.3)).collect();
        let f = |om: &[Vec<f64>], ga: &GateMatrix<f64>| -> f64 {
            let cw = compose(&layout, &as_slices(om), ga).unwrap();
            cw.iter().flatten().zip(&c).map(|(x, ci)| ci * x + 0.5 * x * x).sum()
        };
        let omega = vec![w.clone(), b.clone()];
        let composed = compose(&layout, &as_slices(&omega), &gates).unwrap();
        let mut ci = c.iter();
        let grad_w: Vec<Vec<f64>> = composed.iter().map(|t| t.iter().map(|x| x + ci.next().unwrap()).collect()).collect();
        let (g_omega, g_gates) = compose_backward(&layout, &as_slices(&omega), &gates, &as_slices(&grad_w)).unwrap();
        let h = 1e-6;
        for m in 0..2 {
            for i in 0..omega[m].len() {
                let mut p = omega.clone();
                let mut q = omega.clone();
                p[m][i] += h;
                q[m][i] -= h;
                let fd = (f(&p, &gates) - f(&q, &gates)) / (2.0 * h);
                prop_assert!((fd - g_omega[m][i]).abs() <= 1e-6 * (1.0 + fd.abs()), "omega[{m}][{i}]: fd {fd} vs {}", g_omega[m][i]);
            }
        }
        for k in 0..gates.values().len() {
            let mut p = gates.clone();
            let mut q = gates.clone();
            p.values_mut()[k] += h;
            q.values_mut()[k] -= h;
            let fd = (f(&omega, &p) - f(&omega, &q)) / (2.0 * h);
            prop_assert!((fd - g_gates.values()[k]).abs() <= 1e-6 * (1.0 + fd.abs()), "gate {k}: fd {fd} vs {}", g_gates.values()[k]);
        }
    }
}

#[test]
fn am_gm_tight_only_when_balanced() {
    let layout = GroupLayout::rows("w", 1, 2).unwrap();
    let w = [3.0, 4.0]; // ||w|| = 5
    let gates = GateMatrix::new(1, 2, vec![1.0, 1.0]).unwrap(); // ω = w: unbalanced for D = 3
    let gated = factor_penalty(&layout, &[&w], &gates).unwrap();
    let direct = group_penalty(&[5.0], 3).unwrap();
    assert!((gated - (25.0 + 2.0) / 3.0).abs() < 1e-12);
    assert!(gated > direct + 1.0, "unbalanced factorization must pay more: {gated} vs {direct}");
}

//! Proximal operators of the group penalty `t · ||w_j||^(2/D)` (the `prox` baseline).
//!
//! For one group, `prox(v) = argmin_x ½||x − v||² + t·||x||^q` with `q = 2/D` keeps the
//! direction of `v` and shrinks its norm: `x = (r*/ρ)·v` with `ρ = ||v||` and
//!
//! ```text
//! r* = argmin_{r >= 0}  h(r) = ½ (r − ρ)² + t r^q
//! ```
//!
//! * `D = 2` (`q = 1`): block soft-thresholding, `r* = max(0, ρ − t)`.
//! * `D = 3` (`q = 2/3`): with `r = s³` the stationarity condition is the quartic
//!   `s⁴ − ρ s + 2t/3 = 0`, solved in closed form (Ferrari; same result as Cao, Sun & Xu's
//!   L_{2/3} thresholding formula).
//! * `D = 4` (`q = 1/2`): with `r = s²` it is the cubic `s³ − ρ s + t/2 = 0`, solved in closed
//!   form (trigonometric / Cardano; Xu et al.'s half-thresholding).
//! * other `D`: `h'` is convex on `r > 0`, so the non-zero local minimizer is the unique root
//!   of `h'` right of the inflection point `r₀ = (t q (1 − q))^(1/(2−q))`; it is bracketed and
//!   found by bisection to machine precision.
//!
//! For `D > 2` `h` is non-convex: the candidate is always compared with `r = 0`, and `0` is
//! returned on ties.

use crate::config::check_depth;
use crate::error::{Error, Result};
use crate::layout::GroupLayout;
use crate::scalar::Scalar;

/// `r* = argmin_{r>=0} ½(r − ρ)² + t r^(2/D)` — the scalar prox applied to a group norm.
pub fn prox_norm(rho: f64, t: f64, depth: usize) -> Result<f64> {
    check_depth(depth)?;
    check_nonneg("rho", rho)?;
    check_nonneg("t", t)?;
    if t == 0.0 || rho == 0.0 {
        return Ok(rho);
    }
    Ok(match depth {
        2 => (rho - t).max(0.0),
        3 => accept_if_better(rho, t, 2.0 / 3.0, quartic_candidate(rho, t)),
        4 => accept_if_better(rho, t, 0.5, cubic_candidate(rho, t)),
        _ => prox_norm_bisection(rho, t, 2.0 / depth as f64),
    })
}

/// The generic 1-D solve for any exponent `q ∈ (0, 1)` (exposed to test the closed forms).
pub fn prox_norm_bisection(rho: f64, t: f64, q: f64) -> f64 {
    let dh = |r: f64| r - rho + t * q * r.powf(q - 1.0);
    let r0 = (t * q * (1.0 - q)).powf(1.0 / (2.0 - q));
    if r0 >= rho || dh(r0) >= 0.0 {
        // h' >= 0 on r > 0: h is increasing and 0 is the minimizer.
        return 0.0;
    }
    let (mut lo, mut hi) = (r0, rho); // h'(lo) < 0 < h'(hi) = t q ρ^(q−1)
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if dh(mid) < 0.0 { lo = mid } else { hi = mid }
    }
    accept_if_better(rho, t, q, Some(0.5 * (lo + hi)))
}

/// Applies the group prox with step `t` to every group of `v`.
pub fn prox_groups<T: Scalar>(layout: &GroupLayout, v: &[&[T]], t: f64, depth: usize) -> Result<Vec<Vec<T>>> {
    let norms = layout.group_norms(v)?;
    let scales = norms
        .iter()
        .map(|&rho| Ok(if rho > 0.0 { T::of(prox_norm(rho, t, depth)? / rho) } else { T::zero() }))
        .collect::<Result<Vec<T>>>()?;
    layout.scale_groups(v, &scales)
}

fn check_nonneg(what: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidParameter { what, value, reason: "must be finite and >= 0" })
    }
}

/// Returns `r` if it is strictly better than `0` for `h`, else `0`.
fn accept_if_better(rho: f64, t: f64, q: f64, r: Option<f64>) -> f64 {
    match r {
        // h(r) − h(0) = r(r/2 − ρ) + t r^q, written without the cancelling ρ²/2 terms.
        Some(r) if r > 0.0 && r * (0.5 * r - rho) + t * r.powf(q) < 0.0 => r,
        _ => 0.0,
    }
}

/// `q = 1/2`: the largest root of `s³ − ρ s + t/2 = 0`, as `r = s²`.
fn cubic_candidate(rho: f64, t: f64) -> Option<f64> {
    let s = largest_root_depressed_cubic(-rho, 0.5 * t);
    let f = |s: f64| s * s * s - rho * s + 0.5 * t;
    let df = |s: f64| 3.0 * s * s - rho;
    let s = newton_polish(s, f, df);
    (s > 0.0).then_some(s * s)
}

/// `q = 2/3`: the largest root of `s⁴ − ρ s + c = 0` (`c = 2t/3`), as `r = s³`.
///
/// Ferrari: `(s² + m)² = 2m (s + ρ/(4m))²` once `m` solves the resolvent
/// `m³ − c m − ρ²/8 = 0`; with `a = sqrt(2m)` the positive branch is
/// `s² − a s + m − ρ/(2a) = 0`, whose larger root is `(a + sqrt(2ρ/a − 2m)) / 2`.
fn quartic_candidate(rho: f64, t: f64) -> Option<f64> {
    let c = 2.0 * t / 3.0;
    let m = largest_root_depressed_cubic(-c, -rho * rho / 8.0);
    if m <= 0.0 {
        return None;
    }
    let a = (2.0 * m).sqrt();
    let disc = 2.0 * rho / a - 2.0 * m;
    if disc < 0.0 {
        return None;
    }
    let s = 0.5 * (a + disc.sqrt());
    let s = newton_polish(s, |s| s.powi(4) - rho * s + c, |s| 4.0 * s.powi(3) - rho);
    (s > 0.0).then_some(s * s * s)
}

/// Largest real root of `x³ + p x + c = 0`.
fn largest_root_depressed_cubic(p: f64, c: f64) -> f64 {
    let half_c = 0.5 * c;
    let third_p = p / 3.0;
    let disc = half_c * half_c + third_p * third_p * third_p;
    if disc > 0.0 {
        // One real root (Cardano).
        let sq = disc.sqrt();
        (-half_c + sq).cbrt() + (-half_c - sq).cbrt()
    } else {
        // Three real roots (p < 0): trigonometric form, k = 0 is the largest.
        let r = (-third_p).sqrt();
        let arg = (-half_c / (r * r * r)).clamp(-1.0, 1.0);
        2.0 * r * (arg.acos() / 3.0).cos()
    }
}

/// Two Newton steps to remove the rounding of a closed-form root (never moves it far).
fn newton_polish(mut x: f64, f: impl Fn(f64) -> f64, df: impl Fn(f64) -> f64) -> f64 {
    for _ in 0..2 {
        let d = df(x);
        if d != 0.0 && d.is_finite() {
            let step = f(x) / d;
            if step.is_finite() && step.abs() <= 1e-6 * x.abs().max(1e-300) {
                x -= step;
            }
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(r: f64, rho: f64, t: f64, q: f64) -> f64 {
        0.5 * (r - rho) * (r - rho) + t * r.powf(q)
    }

    #[test]
    fn soft_threshold_for_d2() {
        assert_eq!(prox_norm(3.0, 1.0, 2).unwrap(), 2.0);
        assert_eq!(prox_norm(0.5, 1.0, 2).unwrap(), 0.0);
    }

    #[test]
    fn closed_forms_match_bisection() {
        for &(rho, t) in &[(1.0, 0.1), (2.0, 1.0), (0.7, 0.3), (10.0, 4.0), (1.3, 0.9), (1e-3, 1e-4), (50.0, 1.0)] {
            for (depth, q) in [(3usize, 2.0 / 3.0), (4, 0.5)] {
                let closed = prox_norm(rho, t, depth).unwrap();
                let bis = prox_norm_bisection(rho, t, q);
                // Ties at the threshold can flip between 0 and r*; compare objective values.
                let (hc, hb) = (h(closed, rho, t, q), h(bis, rho, t, q));
                assert!((hc - hb).abs() <= 1e-12 * (1.0 + hc.abs()), "D={depth} rho={rho} t={t}: {closed} vs {bis}");
                assert!((closed - bis).abs() <= 1e-9 * (1.0 + bis), "D={depth} rho={rho} t={t}: {closed} vs {bis}");
            }
        }
    }

    #[test]
    fn zero_below_threshold_for_d4() {
        // Half-thresholding: zero iff ρ <= (54^(1/3)/4)(2t)^(2/3).
        let t: f64 = 0.8;
        let thr = 54f64.cbrt() / 4.0 * (2.0 * t).powf(2.0 / 3.0);
        assert_eq!(prox_norm(thr * 0.999, t, 4).unwrap(), 0.0);
        assert!(prox_norm(thr * 1.001, t, 4).unwrap() > 0.0);
    }

    #[test]
    fn zero_below_threshold_for_d3() {
        // L_{2/3} thresholding: zero iff ρ <= (2/3)(3 (2t)³)^(1/4) (Cao, Sun & Xu, λ = 2t).
        let t: f64 = 0.6;
        let lam = 2.0 * t;
        let thr = 2.0 / 3.0 * (3.0 * lam.powi(3)).powf(0.25);
        assert_eq!(prox_norm(thr * 0.999, t, 3).unwrap(), 0.0);
        assert!(prox_norm(thr * 1.001, t, 3).unwrap() > 0.0);
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(prox_norm(1.0, -0.1, 3).is_err());
        assert!(prox_norm(f64::NAN, 0.1, 3).is_err());
        assert!(prox_norm(1.0, 0.1, 1).is_err());
    }
}

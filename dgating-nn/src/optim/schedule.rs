//! [`Schedule`]: the learning rate as a function of the step.

use serde::{Deserialize, Serialize};

/// A learning-rate schedule over `total` steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// The base rate at every step.
    Constant,
    /// Linear warm-up from `base/warmup` to `base` over `warmup` steps, then cosine decay to 0
    /// at step `total`.
    Cosine {
        /// Warm-up steps.
        warmup: usize,
    },
}

impl Schedule {
    /// The rate at 0-based `step` of `total`.
    pub fn rate(&self, base: f64, step: usize, total: usize) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Cosine { warmup } => {
                if step < warmup {
                    base * (step + 1) as f64 / warmup as f64
                } else {
                    let span = total.saturating_sub(warmup).max(1) as f64;
                    let t = ((step - warmup) as f64 / span).min(1.0);
                    0.5 * base * (1.0 + (std::f64::consts::PI * t).cos())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_warms_up_then_decays() {
        let s = Schedule::Cosine { warmup: 10 };
        assert!((s.rate(1.0, 0, 110) - 0.1).abs() < 1e-12);
        assert!((s.rate(1.0, 9, 110) - 1.0).abs() < 1e-12);
        assert!((s.rate(1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!((s.rate(1.0, 60, 110) - 0.5).abs() < 1e-12);
        assert!(s.rate(1.0, 109, 110) < 1e-3);
        assert_eq!(Schedule::Constant.rate(0.3, 1000, 10), 0.3);
    }
}

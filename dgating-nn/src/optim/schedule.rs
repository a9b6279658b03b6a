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
    /// [`Schedule::Cosine`] that decays to `floor · base` instead of 0 over the first
    /// `1 − tail` of the steps and stays at `floor · base` for the last `tail` share. A dead
    /// group shrinks by `exp(−2λ Σ_t η_t / (1−β))` under D-Gating whatever `D`, and plain cosine
    /// caps `Σ_t η_t` at `base · steps / 2`; the floor and the tail raise it so that the
    /// collapse can finish (docs/EXPERIMENTS.md, "Finishing the collapse").
    CosineFloor {
        /// Warm-up steps.
        warmup: usize,
        /// Final rate as a fraction of the base rate, in `[0, 1]`.
        floor: f64,
        /// Share of all steps spent at the floor at the end, in `[0, 1)`.
        tail: f64,
    },
}

/// How long the warm-up of [`Schedule::Cosine`] is, before the number of steps is known.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "unit", content = "value", rename_all = "snake_case")]
pub enum Warmup {
    /// A number of optimizer steps.
    Steps(usize),
    /// A number of epochs (fractions allowed).
    Epochs(f64),
    /// A fraction of all steps of the run, in `[0, 1)`.
    Fraction(f64),
}

impl Warmup {
    /// Parses `100` (steps), `2ep` / `2epochs` / `0.5ep` (epochs) or `5%` (of all steps).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let bad = || {
            format!(
                "invalid warm-up `{t}`: give steps (`100`), epochs (`2ep`, `0.5epochs`) or a share of all steps (`5%`, 0-99%)"
            )
        };
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            return if (0.0..100.0).contains(&v) { Ok(Self::Fraction(v / 100.0)) } else { Err(bad()) };
        }
        if let Some(e) = t.strip_suffix("epochs").or_else(|| t.strip_suffix("ep")) {
            let v: f64 = e.trim().parse().map_err(|_| bad())?;
            return if v.is_finite() && v >= 0.0 { Ok(Self::Epochs(v)) } else { Err(bad()) };
        }
        t.parse::<usize>().map(Self::Steps).map_err(|_| bad())
    }

    /// Warm-up steps for a run of `total_steps` steps with `steps_per_epoch` per epoch
    /// (never more than the run).
    pub fn steps(&self, steps_per_epoch: usize, total_steps: usize) -> usize {
        let s = match *self {
            Self::Steps(s) => s,
            Self::Epochs(e) => (e * steps_per_epoch as f64).round() as usize,
            Self::Fraction(f) => (f * total_steps as f64).round() as usize,
        };
        s.min(total_steps)
    }
}

impl Schedule {
    /// Rejects a floor outside `[0, 1]` or a tail outside `[0, 1)`.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Schedule::CosineFloor { floor, tail, .. } => {
                if !(0.0..=1.0).contains(&floor) {
                    return Err(format!("the learning-rate floor must be in [0, 1], got {floor}"));
                }
                if !(0.0..1.0).contains(&tail) {
                    return Err(format!("the learning-rate tail must be in [0, 1), got {tail}"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The warm-up steps of a cosine schedule.
    pub fn warmup(&self) -> Option<usize> {
        match *self {
            Schedule::Constant => None,
            Schedule::Cosine { warmup } | Schedule::CosineFloor { warmup, .. } => Some(warmup),
        }
    }

    /// The same schedule with `warmup` warm-up steps (unchanged for [`Schedule::Constant`]).
    pub fn with_warmup(self, warmup: usize) -> Self {
        match self {
            Schedule::Constant => self,
            Schedule::Cosine { .. } => Schedule::Cosine { warmup },
            Schedule::CosineFloor { floor, tail, .. } => Schedule::CosineFloor { warmup, floor, tail },
        }
    }

    /// The rate at 0-based `step` of `total`.
    pub fn rate(&self, base: f64, step: usize, total: usize) -> f64 {
        match *self {
            Schedule::CosineFloor { warmup, floor, tail } => {
                if step < warmup {
                    return base * (step + 1) as f64 / warmup as f64;
                }
                let decay_end = warmup.max(((1.0 - tail) * total as f64).round() as usize);
                if step >= decay_end {
                    return base * floor;
                }
                let span = decay_end.saturating_sub(warmup).max(1) as f64;
                let t = ((step - warmup) as f64 / span).min(1.0);
                base * (floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
            }
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
    fn warmup_parses_steps_epochs_and_fractions() {
        assert_eq!(Warmup::parse("100"), Ok(Warmup::Steps(100)));
        assert_eq!(Warmup::parse("2ep"), Ok(Warmup::Epochs(2.0)));
        assert_eq!(Warmup::parse("0.5epochs"), Ok(Warmup::Epochs(0.5)));
        assert_eq!(Warmup::parse("5%"), Ok(Warmup::Fraction(0.05)));
        for bad in ["-1", "x", "100%", "-2ep", "nanep"] {
            assert!(Warmup::parse(bad).unwrap_err().contains("5%"), "{bad}");
        }
        assert_eq!(Warmup::Fraction(0.05).steps(9, 900), 45);
        assert_eq!(Warmup::Epochs(2.0).steps(9, 900), 18);
        assert_eq!(Warmup::Steps(1000).steps(9, 90), 90);
    }

    #[test]
    fn cosine_floor_decays_to_the_floor_and_holds_it() {
        let s = Schedule::CosineFloor { warmup: 10, floor: 0.2, tail: 0.5 };
        assert!((s.rate(1.0, 0, 210) - 0.1).abs() < 1e-12);
        assert!((s.rate(1.0, 10, 210) - 1.0).abs() < 1e-12);
        // Decay ends at step round(0.5 * 210) = 105; halfway through the decay: (1 + 0.2) / 2.
        let mid = 10 + (105 - 10) / 2;
        assert!((s.rate(1.0, mid, 210) - 0.6).abs() < 0.02, "{}", s.rate(1.0, mid, 210));
        for step in [105, 150, 209] {
            assert!((s.rate(1.0, step, 210) - 0.2).abs() < 1e-12);
        }
        // floor 0, tail 0 is the plain cosine.
        let c = Schedule::CosineFloor { warmup: 10, floor: 0.0, tail: 0.0 };
        for step in [0, 9, 10, 60, 109] {
            assert!((c.rate(1.0, step, 110) - Schedule::Cosine { warmup: 10 }.rate(1.0, step, 110)).abs() < 1e-12);
        }
        assert!(Schedule::CosineFloor { warmup: 0, floor: 1.5, tail: 0.0 }.check().is_err());
        assert!(Schedule::CosineFloor { warmup: 0, floor: 0.5, tail: 1.0 }.check().is_err());
        assert_eq!(s.with_warmup(3).warmup(), Some(3));
    }

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

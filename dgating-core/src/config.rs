//! [`GateConfig`]: the two numbers that define a D-Gating penalty, validated once.
//!
//! # Weight-decay convention (the one place it is stated)
//!
//! The gated objective (docs/METHOD.md, eq. G) is
//!
//! ```text
//! L(v, ω ⊙ Πγ) + (λ/D) · Σ_j ( ||ω_j||² + Σ_d γ_{j,d}² )
//! ```
//!
//! Its gradient with respect to any gate factor `θ` (an entry of `ω` or a `γ`) contains
//! `(2λ/D)·θ`. Every optimizer in this project that "adds `wd·θ` to the gradient" therefore
//! uses `wd = 2λ/D` for gate factors; [`GateConfig::weight_decay`] returns exactly that.
//! Optimizers with *decoupled* decay (AdamW) use the same coefficient but apply it outside
//! the adaptive preconditioner — see `dgating-nn`'s optimizer docs for what that changes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A validated D-Gating configuration: depth `D >= 2` and strength `λ >= 0` (finite).
///
/// Construct with [`GateConfig::new`]; deserialization validates too, so a `GateConfig`
/// value is always usable.
///
/// ```
/// use dgating_core::GateConfig;
/// let cfg = GateConfig::new(3, 0.01)?;
/// assert_eq!(cfg.num_gates(), 2);              // w_j = ω_j · γ_{j,1} · γ_{j,2}
/// assert!((cfg.weight_decay() - 2.0 * 0.01 / 3.0).abs() < 1e-15);
/// assert!(GateConfig::new(1, 0.01).is_err());
/// # Ok::<(), dgating_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawGateConfig", into = "RawGateConfig")]
pub struct GateConfig {
    depth: usize,
    lambda: f64,
}

#[derive(Serialize, Deserialize)]
struct RawGateConfig {
    depth: usize,
    lambda: f64,
}

impl TryFrom<RawGateConfig> for GateConfig {
    type Error = Error;
    fn try_from(raw: RawGateConfig) -> Result<Self> {
        GateConfig::new(raw.depth, raw.lambda)
    }
}

impl From<GateConfig> for RawGateConfig {
    fn from(c: GateConfig) -> Self {
        RawGateConfig { depth: c.depth, lambda: c.lambda }
    }
}

impl GateConfig {
    /// Validates `depth >= 2` and `lambda` finite and `>= 0`.
    pub fn new(depth: usize, lambda: f64) -> Result<Self> {
        check_depth(depth)?;
        if !lambda.is_finite() || lambda < 0.0 {
            return Err(Error::InvalidLambda(lambda));
        }
        Ok(Self { depth, lambda })
    }

    /// `D`: the number of factors per group (one `ω_j` and `D-1` scalar gates).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// `λ`: the strength of the equivalent penalty `λ Σ_j ||w_j||^(2/D)`.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// `D - 1`: scalar gates per group.
    pub fn num_gates(&self) -> usize {
        self.depth - 1
    }

    /// `2/D`: the exponent of the equivalent group penalty.
    pub fn exponent(&self) -> f64 {
        2.0 / self.depth as f64
    }

    /// `2λ/D`: the L2 weight-decay coefficient per gate factor for an optimizer that adds
    /// `wd·θ` to the gradient (see the module docs).
    pub fn weight_decay(&self) -> f64 {
        2.0 * self.lambda / self.depth as f64
    }
}

/// Checks `depth >= 2`; functions that take a bare depth use this.
pub fn check_depth(depth: usize) -> Result<()> {
    if depth < 2 { Err(Error::InvalidDepth(depth)) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_values() {
        assert_eq!(GateConfig::new(0, 1.0), Err(Error::InvalidDepth(0)));
        assert_eq!(GateConfig::new(1, 1.0), Err(Error::InvalidDepth(1)));
        assert!(matches!(GateConfig::new(2, -1e-9), Err(Error::InvalidLambda(_))));
        assert!(matches!(GateConfig::new(2, f64::NAN), Err(Error::InvalidLambda(_))));
        assert!(matches!(GateConfig::new(2, f64::INFINITY), Err(Error::InvalidLambda(_))));
        assert!(GateConfig::new(2, 0.0).is_ok());
    }

    #[test]
    fn serde_validates() {
        let ok: GateConfig = serde_json::from_str(r#"{"depth":4,"lambda":0.5}"#).unwrap();
        assert_eq!(ok.depth(), 4);
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"depth":4,"lambda":0.5}"#);
        let err = serde_json::from_str::<GateConfig>(r#"{"depth":1,"lambda":0.5}"#).unwrap_err();
        assert!(err.to_string().contains("D must be >= 2"), "{err}");
        assert!(serde_json::from_str::<GateConfig>(r#"{"depth":3,"lambda":-2}"#).is_err());
    }

    #[test]
    fn weight_decay_convention() {
        let c = GateConfig::new(4, 0.3).unwrap();
        assert_eq!(c.num_gates(), 3);
        assert!((c.weight_decay() - 0.15).abs() < 1e-15);
        assert!((c.exponent() - 0.5).abs() < 1e-15);
    }
}

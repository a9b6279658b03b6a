//! # dgating-core
//!
//! Framework-free math of D-Gating (Kolb et al., NeurIPS 2025): a group of weights `w_j`
//! is overparameterized as `ω_j · γ_{j,1} ··· γ_{j,D-1}` and trained with plain weight decay,
//! which is equivalent to the non-smooth penalty `λ Σ_j ||w_j||^(2/D)` (docs/METHOD.md). This crate
//! is the bottom of the workspace (`core ← nn ← prune ← bench/cli`): it works on plain
//! `f32`/`f64` slices described by a [`GroupLayout`] and has no tensor framework.
//!
//! ```
//! use dgating_core::{GateConfig, GroupLayout, balance, factor_penalty, group_penalty, as_slices};
//!
//! // Hidden neurons of a 3x4 layer are the groups (rows of W).
//! let layout = GroupLayout::rows("fc.weight", 3, 4)?;
//! let w: Vec<f64> = vec![1.0, 2.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 4.0, 0.0];
//! let cfg = GateConfig::new(3, 0.1)?;
//!
//! // The balanced factorization reproduces w and its factor penalty equals the group penalty.
//! let f = balance(&layout, &[&w], cfg.depth())?;
//! assert!(f.compose(&layout)?[0].iter().zip(&w).all(|(a, b)| (a - b).abs() < 1e-12));
//! let gated = factor_penalty(&layout, &as_slices(&f.omega), &f.gates)?;
//! let direct = group_penalty(&layout.group_norms(&[&w])?, cfg.depth())?;
//! assert!((gated - direct).abs() < 1e-12);
//! # Ok::<(), dgating_core::Error>(())
//! ```

pub mod config;
pub mod error;
pub mod factor;
pub mod gap;
pub mod layout;
pub mod penalty;
pub mod prox;
pub mod readout;
pub mod scalar;
pub mod solver;
pub mod structure;
pub mod synthetic;
pub mod threshold;

pub use config::GateConfig;
pub use error::{Error, Result};
pub use factor::{Factorization, GateMatrix, Imbalance, balance, compose, compose_backward, imbalance};
pub use gap::{Gap, GapRule, largest_gap};
pub use layout::{GroupLayout, GroupMember, as_slices};
pub use penalty::{direct_penalty_grad, factor_penalty, group_penalty};
pub use prox::{prox_groups, prox_norm};
pub use readout::{CutBy, Decision, ReadOut};
pub use scalar::Scalar;
pub use solver::gated::{GatedSolution, GatedState, GdOptions, gated_gradient_descent, gated_step};
pub use solver::problem::{LinearProblem, Loss};
pub use solver::proximal::{ProxOptions, ProxSolution, proximal_gradient};
pub use structure::{Dim, Slice, Structure};
pub use synthetic::{GroupSparseData, GroupSparseSpec};
pub use threshold::Threshold;

#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

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
pub use threshold::{Threshold, keep_largest};

//! Small full-batch reference solvers on linear models: the golden references that model
//! code in `dgating-nn` is tested against.
//!
//! * [`gated`]: gradient descent on the D-Gating factors `(ω, γ)` of a linear model.
//! * [`proximal`]: proximal gradient on the group penalty `λ Σ_j ||w_j||^(2/D)`.

pub mod gated;
pub mod problem;
pub mod proximal;

//! The error type of `dgating-core`.

/// Everything that can go wrong in the core math: invalid configuration, inconsistent
/// layouts and buffers, and solvers that diverge.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// `D` must be an integer `>= 2` (`D = 1` would be the ungated model).
    #[error("gate depth D must be >= 2, got {0}")]
    InvalidDepth(usize),
    /// `lambda` must be finite and non-negative.
    #[error("penalty strength lambda must be finite and >= 0, got {0}")]
    InvalidLambda(f64),
    /// A numeric parameter outside its domain (`what` names it).
    #[error("invalid {what}: {value} ({reason})")]
    InvalidParameter {
        /// Which parameter.
        what: &'static str,
        /// The offending value.
        value: f64,
        /// What was expected.
        reason: &'static str,
    },
    /// A group layout that cannot describe `J >= 1` non-empty groups.
    #[error("invalid group layout for member `{member}`: {reason}")]
    InvalidLayout {
        /// Name of the member tensor.
        member: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A model structure whose dims do not fit its tensors (see [`crate::Structure`]).
    #[error("invalid structure at dim `{dim}`: {reason}")]
    InvalidStructure {
        /// The dim.
        dim: String,
        /// What is wrong.
        reason: String,
    },
    /// A buffer whose length does not match what the layout or problem expects.
    #[error("{context}: expected length {expected}, got {actual}")]
    LengthMismatch {
        /// Which buffer, in which operation.
        context: String,
        /// Length required.
        expected: usize,
        /// Length given.
        actual: usize,
    },
    /// A solver produced a non-finite value.
    #[error("{solver} diverged at iteration {iteration}: objective is {value}")]
    Diverged {
        /// Which solver.
        solver: &'static str,
        /// Iteration at which the objective became non-finite.
        iteration: usize,
        /// The non-finite objective value.
        value: f64,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that `actual == expected`, naming `context` otherwise.
pub(crate) fn check_len(context: impl FnOnce() -> String, expected: usize, actual: usize) -> Result<()> {
    if expected == actual { Ok(()) } else { Err(Error::LengthMismatch { context: context(), expected, actual }) }
}

//! The error type of `dgating-prune`.

/// Errors of planning, compaction, export and import.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The core math rejected an input.
    #[error(transparent)]
    Core(#[from] dgating_core::Error),
    /// The model layer failed.
    #[error(transparent)]
    Nn(#[from] dgating_nn::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

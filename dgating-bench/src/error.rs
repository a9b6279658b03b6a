//! The error type of `dgating-bench`.

/// Errors of the experiment harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The core math rejected an input or diverged.
    #[error(transparent)]
    Core(#[from] dgating_core::Error),
    /// An experiment configuration that cannot run.
    #[error("invalid experiment configuration: {0}")]
    InvalidConfig(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

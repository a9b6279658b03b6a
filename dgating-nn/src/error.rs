//! The error type of `dgating-nn`.

/// Errors of the layers, models and trainer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The core math rejected an input.
    #[error(transparent)]
    Core(#[from] dgating_core::Error),
    /// A tensor operation failed (shape mismatch, device error, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

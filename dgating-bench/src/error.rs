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
    /// Training, data or a run directory failed.
    #[error(transparent)]
    Nn(#[from] dgating_nn::Error),
    /// Pruning, compaction or export failed.
    #[error(transparent)]
    Prune(#[from] dgating_prune::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The error type of `dgating-nn`.

use std::path::PathBuf;

/// Errors of the data loaders, layers, models and trainer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The core math rejected an input.
    #[error(transparent)]
    Core(#[from] dgating_core::Error),
    /// A tensor operation failed (shape mismatch, device error, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A data file or data set with bad content (names the file and, where known, the row
    /// and column).
    #[error("{source_name}: {message}")]
    Data {
        /// File path or built-in data set name.
        source_name: String,
        /// What is wrong, with row/column where known.
        message: String,
    },
    /// A name that is not one of the known ones (model, data set, mode, optimizer, ...).
    #[error("unknown {kind} `{name}` (known: {known})")]
    UnknownName {
        /// What kind of name.
        kind: &'static str,
        /// The name given.
        name: String,
        /// The accepted names, comma-separated.
        known: String,
    },
    /// A configuration value outside its domain (training, data split, architecture sizes).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A model, layer or gate set whose parts do not fit together (names the part).
    #[error("{what}: {message}")]
    Model {
        /// The model part (layer prefix, gate set, architecture).
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor of the wrong shape handed to an operation.
    #[error("{op}: expected shape {expected:?}, got {actual:?}")]
    Shape {
        /// The operation or tensor.
        op: String,
        /// The shape required.
        expected: Vec<usize>,
        /// The shape given.
        actual: Vec<usize>,
    },
    /// An input batch that does not have the features a layer or model reads.
    #[error("{op}: expected input [batch, {expected}], got {actual:?}")]
    Input {
        /// The layer or model.
        op: String,
        /// Features expected.
        expected: usize,
        /// Shape given.
        actual: Vec<usize>,
    },
    /// A value that could not be turned into JSON or read from it.
    #[error("{what}: {source}")]
    Json {
        /// What was (de)serialized.
        what: String,
        /// serde_json's message.
        source: serde_json::Error,
    },
    /// Training produced a NaN or infinite value; the last good checkpoint is kept.
    #[error("non-finite {what} at epoch {epoch}, step {step}; training stopped (last good checkpoint kept)")]
    NonFinite {
        /// Which quantity (loss, gradient, parameter).
        what: String,
        /// Epoch (1-based).
        epoch: usize,
        /// Step within the epoch (1-based).
        step: usize,
    },
    /// Another process holds the lock of a run or export directory.
    #[error(
        "{dir} is in use by another dgating process (it holds {dir}/.dgating.lock); wait for it to finish or \
         choose another directory"
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// A run directory that cannot be used as asked (holds another run, is not a run, ...).
    #[error("{dir}: {message}")]
    RunDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A checkpoint that cannot be read or does not match the model.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// A data error for `source_name`.
    pub fn data(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Data { source_name: source_name.into(), message: message.into() }
    }
}

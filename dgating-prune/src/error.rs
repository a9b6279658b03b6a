//! The error type of `dgating-prune`.

use std::path::PathBuf;

/// Errors of planning, compaction, export and import. File errors name the file and, where
/// one is involved, the tensor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The core math rejected an input.
    #[error(transparent)]
    Core(#[from] dgating_core::Error),
    /// The model layer failed (loading a run, rebuilding a layer, evaluation).
    #[error(transparent)]
    Nn(#[from] dgating_nn::Error),
    /// A tensor operation failed.
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
    /// A file that is not a valid compacted model (corrupt, truncated, bad JSON, bad config
    /// values, non-finite weights, ...).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor the config requires is absent.
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor {
        /// The safetensors file.
        path: PathBuf,
        /// The tensor name.
        name: String,
    },
    /// A tensor the config does not describe.
    #[error("{path}: unknown tensor `{name}`")]
    UnknownTensor {
        /// The safetensors file.
        path: PathBuf,
        /// The tensor name.
        name: String,
    },
    /// A tensor of another dtype than `F32`.
    #[error("{path}: tensor `{name}` has dtype {dtype}, expected F32")]
    Dtype {
        /// The safetensors file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The dtype found.
        dtype: String,
    },
    /// A tensor whose shape disagrees with the config.
    #[error("{path}: tensor `{name}` has shape {actual:?}, the config needs {expected:?}")]
    ShapeMismatch {
        /// The safetensors file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// Shape from the config.
        expected: Vec<usize>,
        /// Shape in the file.
        actual: Vec<usize>,
    },
    /// A format tag this version cannot read.
    #[error(
        "{path}: unknown format version `{version}` (this build reads `{}` and `{}`)",
        crate::format::COMPACT_FORMAT,
        crate::format::COMPACT_FORMAT_V1
    )]
    UnknownVersion {
        /// The file.
        path: PathBuf,
        /// The tag found.
        version: String,
    },
    /// A threshold outside its domain (negative, NaN, infinite, relative `>= 1`).
    #[error("invalid threshold (absolute {absolute}, relative {relative}): {message}")]
    Threshold {
        /// Absolute part given.
        absolute: f64,
        /// Relative part given.
        relative: f64,
        /// Why it is rejected.
        message: String,
    },
    /// A NaN or infinite value where pruning needs finite ones.
    #[error("non-finite {what}: cannot decide which groups are zero")]
    NonFinite {
        /// Which quantity (e.g. group norms of `layers.0`).
        what: String,
    },
    /// Every group of one dim falls below the threshold. We refuse instead of producing a
    /// constant model: the caller should lower the threshold or λ.
    #[error(
        "all {groups} groups of dim `{dim}` fall below the threshold: the compacted model would be a \
         constant function; lower the threshold or retrain with a smaller lambda"
    )]
    EmptyDim {
        /// The dim whose entries all vanish (`inputs`, `hidden.1`, `stream`, ...).
        dim: String,
        /// How many groups there were.
        groups: usize,
    },
    /// A plan or mask that does not fit the model.
    #[error("pruning plan: {0}")]
    Plan(String),
    /// An input tensor of the wrong shape.
    #[error("{context}: expected input [batch, {expected}], got {actual:?}")]
    Input {
        /// Which forward.
        context: &'static str,
        /// Expected features.
        expected: usize,
        /// Shape given.
        actual: Vec<usize>,
    },
    /// An output directory that must not be written (e.g. it holds the training run).
    #[error("output directory {path}: {message}")]
    OutputDir {
        /// The directory.
        path: PathBuf,
        /// Why it is refused.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A format error for `path`.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Format { path: path.into(), message: message.into() }
    }
}

#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod compact;
pub mod error;
pub mod evaluate;
pub mod export;
pub mod format;
pub mod language;
mod legacy;
pub mod pipeline;
pub mod plan;
pub mod report;
pub mod verify;

pub use compact::{Compacted, compact, cut_tensors};
pub use error::{Error, Result};
pub use evaluate::{
    DirEvaluation, ExportCheck, ModelInputs, Predictions, check_export, evaluate_dir, evaluate_dir_on, predict_dir,
    predict_dir_on,
};
pub use export::{export, import, parse_config, parse_model, read_config};
pub use format::{
    COMPACT_FORMAT, COMPACT_FORMAT_V1, CONFIG_FILE, CompactConfig, GroupsRemoved, HeldOutSource, InputSpec, KeptDim,
    MODEL_FILE, Provenance, TrainingRecord,
};
pub use language::{LmPruneReport, LoadedLm, load_lm, prune_lm_run};
pub use pipeline::{measure_latency, prune_run, prune_run_on};
pub use plan::{DimPlan, PrunePlan, set_norms, threshold};
pub use report::{Cost, Evaluation, Latency, PruneReport};
pub use verify::{Verification, masked_reference, verify};

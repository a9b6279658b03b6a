//! The training engine: one loop for every mode (`dense`, `dgating`, `direct`, `prox`,
//! `magnitude`), JSON-lines metrics, atomic checkpoints and exact resume.

pub mod baselines;
pub mod checkpoint;
pub mod config;
pub mod engine;
pub mod lock;
pub mod metrics;
pub mod run;

pub use config::{DeviceSpec, Mode, TrainConfig};
pub use engine::{EVAL_CHUNK_ROWS, Progress, Scores, Trainer, score};
pub use metrics::EpochMetrics;
pub use run::{DataSpec, PreparedData, ResumeOptions, RunConfig, RunPlan, RunSummary, plan, resume, train};

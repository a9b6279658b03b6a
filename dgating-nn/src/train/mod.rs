//! The training engine: one loop for every mode (`dense`, `dgating`, `direct`, `prox`,
//! `magnitude`), JSON-lines metrics, atomic checkpoints and exact resume.

pub mod checkpoint;
pub mod config;
pub mod engine;
pub mod metrics;
pub mod run;

pub use config::{DeviceSpec, Mode, TrainConfig};
pub use engine::{Progress, Trainer};
pub use metrics::EpochMetrics;
pub use run::{DataSpec, RunConfig, RunSummary, resume, train};

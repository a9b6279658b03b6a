//! Optimizers and learning-rate schedules.

pub mod optimizer;
pub mod schedule;

pub use optimizer::{Optimizer, OptimizerKind};
pub use schedule::{Schedule, Warmup};

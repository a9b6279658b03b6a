#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod error;
pub mod experiments;
pub mod sweep;

pub use error::{Error, Result};
pub use experiments::synthetic_recovery::{RecoveryConfig, RecoveryReport, RecoveryRow};

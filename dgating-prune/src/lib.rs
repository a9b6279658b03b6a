//! # dgating-prune
//!
//! Finds zeroed D-Gating groups, folds the gates into the weights, cuts every removed entry
//! out of every tensor coupled to it and exports/imports the smaller dense model as
//! safetensors + JSON config (`core ← nn ← prune ← bench/cli`). Nothing here knows a model
//! type: a model's [`Structure`](dgating_core::Structure) says which tensor slices go with
//! which dim, its gate sets say which dims have groups, and its tagged
//! [`Architecture`](dgating_nn::Architecture) rebuilds it at the new sizes. The file format,
//! with a numpy reader that needs none of this code, is in `docs/FORMAT.md`.
//!
//! ```text
//! model + ReadOut --PrunePlan::with_read_out--> keep-mask per dim --compact--> Compacted
//!     --export--> dir --import--> Compacted
//! verify(gated, compacted, x): compacted == gated with the removed groups zeroed
//! ```
//!
//! [`prune_run`] does all of it for a run directory of `dgating train`. The default read-out
//! ([`dgating_core::ReadOut::default`]) is the gap rule over a `1e-3` absolute / `3e-2`
//! relative floor; docs/EXPERIMENTS.md ("Read-out threshold") has the measurements behind it.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use dgating_nn::{Architecture, GateInit, Model};
//! use dgating_prune::{PrunePlan, compact, export, import, verify};
//!
//! // The tagged description `config.json` holds: 4 inputs, 8 hidden neurons as groups.
//! let arch: Architecture = serde_json::from_str(
//!     r#"{"type": "mlp", "input_dim": 4, "hidden": [8], "output_dim": 2, "group_inputs": false, "group_hidden": true}"#,
//! )?;
//! let model = arch.build(Some(3), GateInit::Ones, 0, DType::F32, &Device::Cpu)?;
//! // Zero 5 of the 8 hidden neurons.
//! let hidden = &model.gate_sets()[0];
//! hidden.drop_groups(&model.params()?, &[true, false, false, true, false, true, false, false])?;
//! let plan = PrunePlan::new(&model, &dgating_prune::threshold(1e-6, 0.0)?)?;
//! let small = compact(&model, &plan)?;
//! assert_eq!(small.sizes()?["hidden.0"], 3);
//! assert_eq!(small.config.kept("hidden.0"), Some(&[0, 3, 5][..]));
//! let x = Tensor::ones((5, 4), DType::F32, &Device::Cpu)?;
//! assert!(verify(&model, &small, &x)?.max_rel <= 1e-5);
//! let dir = std::env::temp_dir().join(format!("dgating-prune-doc-{}", std::process::id()));
//! export(&small, &dir)?;
//! assert_eq!(import(&dir)?.config, small.config);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod compact;
pub mod error;
pub mod evaluate;
pub mod export;
pub mod format;
mod legacy;
pub mod pipeline;
pub mod plan;
pub mod report;
pub mod verify;

pub use compact::{Compacted, compact};
pub use error::{Error, Result};
pub use evaluate::{DirEvaluation, ExportCheck, ModelInputs, Predictions, check_export, evaluate_dir, predict_dir};
pub use export::{export, import, parse_config, parse_model, read_config};
pub use format::{
    COMPACT_FORMAT, COMPACT_FORMAT_V1, CONFIG_FILE, CompactConfig, GroupsRemoved, HeldOutSource, InputSpec, KeptDim,
    MODEL_FILE, Provenance, TrainingRecord,
};
pub use pipeline::{measure_latency, prune_run};
pub use plan::{DimPlan, PrunePlan, set_norms, threshold};
pub use report::{Cost, Evaluation, Latency, PruneReport};
pub use verify::{Verification, masked_reference, verify};

//! # dgating-prune
//!
//! Finds zeroed D-Gating groups, folds the gates into the weights, collapses layers into
//! smaller dense ones and exports/imports them as safetensors + JSON config
//! (`core ← nn ← prune ← bench/cli`). The file format, with a numpy loader that needs none
//! of this code, is in `docs/FORMAT.md`.
//!
//! ```text
//! Mlp + ReadOut --PrunePlan::with_read_out--> plan --compact--> CompactMlp --export--> dir --import--> CompactMlp
//!                                        verify(gated, compact, x): compacted == masked gated
//! ```
//!
//! [`prune_run`] does all of it for a run directory of `dgating train`. The default read-out
//! ([`dgating_core::ReadOut::default`]) is the gap rule over a `1e-3` absolute / `3e-2`
//! relative floor; docs/EXPERIMENTS.md ("Read-out threshold") has the measurements behind it.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use dgating_nn::{Mlp, MlpConfig};
//! use dgating_prune::{PrunePlan, compact, export, import, verify};
//!
//! // 4 inputs, hidden neurons as groups; zero 5 of the 8 hidden neurons.
//! let cfg = MlpConfig { input_dim: 4, hidden: vec![8], output_dim: 2, group_inputs: false, group_hidden: true };
//! let model = Mlp::new(cfg, Some(3), 0, DType::F32, &Device::Cpu)?;
//! model.layers()[0].drop_groups(&[true, false, false, true, false, true, false, false])?;
//! let plan = PrunePlan::new(&model, &dgating_prune::threshold(1e-6, 0.0)?)?;
//! let small = compact(&model, &plan)?;
//! assert_eq!(small.widths(), &[4, 3, 2]);
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
pub mod pipeline;
pub mod plan;
pub mod report;
pub mod verify;

pub use compact::{
    COMPACT_FORMAT, CompactConfig, CompactMlp, FullInputModel, HeldOutSource, Provenance, ReadOutRecord, compact,
};
pub use error::{Error, Result};
pub use evaluate::{DirEvaluation, ExportCheck, ModelInputs, Predictions, check_export, evaluate_dir, predict_dir};
pub use export::{CONFIG_FILE, MODEL_FILE, export, import, parse_config, parse_model};
pub use pipeline::prune_run;
pub use plan::{PrunePlan, SitePlan, TensorSlice, WidthPlan, site_norms, threshold, width_members};
pub use report::{Cost, Evaluation, GroupsRemoved, Latency, PruneReport};
pub use verify::{Verification, masked_reference, verify};

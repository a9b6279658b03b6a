//! [`evaluate_dir`]: evaluate a training run (gated checkpoint) or a compacted export alike —
//! the library side of `dgating eval`; [`check_export`]: reload an export from disk and hold
//! it against the run it came from.

use std::path::Path;

use candle_core::{DType, Device};
use dgating_nn::data::Dataset;
use dgating_nn::train::engine::{TensorData, evaluate};
use dgating_nn::train::run::load_run_model;

use crate::error::{Error, Result};
use crate::export::import;
use crate::format::MODEL_FILE;
use crate::pipeline::check_on_held_out;
use crate::report::Evaluation;
use crate::verify::Verification;

/// An exported model reloaded from disk and compared with its training run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExportCheck {
    /// Size of every dim of the reloaded model.
    pub sizes: std::collections::BTreeMap<String, usize>,
    /// Parameters of the reloaded model.
    pub params: usize,
    /// Names of the kept input features, when the run had names.
    pub kept_input_names: Option<Vec<String>>,
    /// Reloaded model vs the run's gated model (masked and unmasked) on the held-out split.
    pub verification: Verification,
    /// Held-out loss/accuracy of the gated model.
    pub gated: Evaluation,
    /// Held-out loss/accuracy of the reloaded compacted model.
    pub compacted: Evaluation,
}

/// Imports the compacted model in `compact_dir` (trusting nothing, see [`import`]) and
/// compares it with the gated model of `run_dir` on the run's held-out split: the outputs
/// ([`verify`](crate::verify())) and the held-out loss and accuracy of both. The end-to-end check that what was
/// written is what was trained.
pub fn check_export(run_dir: &Path, compact_dir: &Path) -> Result<ExportCheck> {
    let (cfg, model) = load_run_model(run_dir)?;
    let compact = import(compact_dir)?;
    let held_out = check_on_held_out(run_dir, &cfg, &model, &compact)?;
    Ok(ExportCheck {
        sizes: compact.sizes()?,
        params: compact.num_params()?,
        kept_input_names: compact.config.kept_input_names(),
        verification: held_out.verification,
        gated: held_out.gated,
        compacted: held_out.compacted,
    })
}

/// What was evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct DirEvaluation {
    /// `"gated run"` or `"compacted model"`.
    pub kind: &'static str,
    /// Rows evaluated.
    pub samples: usize,
    /// Loss and accuracy.
    pub evaluation: Evaluation,
}

/// Evaluates the model in `dir` on `data` (a built-in name, CSV path with `target`, or IDX
/// directory; raw features, standardized here with the model's training statistics). Without
/// `data`, a training run is evaluated on its own held-out split; a compacted model needs data.
pub fn evaluate_dir(dir: &Path, data: Option<&str>, target: Option<&str>) -> Result<DirEvaluation> {
    let is_run = dir.join("state.json").exists();
    if !is_run && !dir.join(MODEL_FILE).exists() {
        return Err(Error::format(
            dir,
            "neither a training run (state.json) nor a compacted model (model.safetensors)",
        ));
    }
    if is_run {
        let (cfg, model) = load_run_model(dir)?;
        let set = match data {
            Some(src) => standardized(dgating_nn::data::load(src, target)?, cfg.standardizer.as_ref())?,
            None => cfg.data.prepare(cfg.train.seed)?.1,
        };
        let (loss, accuracy) = evaluate(&model, &TensorData::new(&set, DType::F32, &cfg.train.device.device()?)?)?;
        return Ok(DirEvaluation { kind: "gated run", samples: set.len(), evaluation: Evaluation { loss, accuracy } });
    }
    let compact = import(dir)?;
    let src = data.ok_or_else(|| Error::format(dir, "a compacted model needs --data to evaluate on"))?;
    let set = standardized(dgating_nn::data::load(src, target)?, compact.config.input.standardizer.as_ref())?;
    if set.num_features != compact.config.input.features {
        return Err(Error::Input {
            context: "evaluate_dir",
            expected: compact.config.input.features,
            actual: vec![set.len(), set.num_features],
        });
    }
    let data =
        TensorData::new(&set, DType::F32, &Device::Cpu)?.select_features(&compact.config.kept_input_indices())?;
    let (loss, accuracy) = evaluate(&compact.model, &data)?;
    Ok(DirEvaluation { kind: "compacted model", samples: set.len(), evaluation: Evaluation { loss, accuracy } })
}

fn standardized(mut set: Dataset, s: Option<&dgating_nn::data::Standardizer>) -> Result<Dataset> {
    if let Some(s) = s {
        s.apply(&mut set)?;
    }
    Ok(set)
}

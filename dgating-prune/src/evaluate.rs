//! [`evaluate_dir`]: evaluate a training run (gated checkpoint) or a compacted export alike —
//! the library side of `dgating eval`.

use std::path::Path;

use candle_core::{DType, Device};
use dgating_nn::data::Dataset;
use dgating_nn::train::engine::{TensorData, evaluate};
use dgating_nn::train::run::load_run_model;

use crate::compact::FullInputModel;
use crate::error::{Error, Result};
use crate::export::{MODEL_FILE, import};
use crate::report::Evaluation;

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
        let (loss, accuracy) = evaluate(&model, &TensorData::new(&set, DType::F32, &Device::Cpu)?)?;
        return Ok(DirEvaluation { kind: "gated run", samples: set.len(), evaluation: Evaluation { loss, accuracy } });
    }
    let compact = import(dir)?;
    let src = data.ok_or_else(|| Error::format(dir, "a compacted model needs --data to evaluate on"))?;
    let set = standardized(dgating_nn::data::load(src, target)?, compact.config.standardizer.as_ref())?;
    let (loss, accuracy) = evaluate(&FullInputModel(&compact), &TensorData::new(&set, DType::F32, &Device::Cpu)?)?;
    Ok(DirEvaluation { kind: "compacted model", samples: set.len(), evaluation: Evaluation { loss, accuracy } })
}

fn standardized(mut set: Dataset, s: Option<&dgating_nn::data::Standardizer>) -> Result<Dataset> {
    if let Some(s) = s {
        s.apply(&mut set)?;
    }
    Ok(set)
}

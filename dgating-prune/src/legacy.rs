//! Reading `dgating-compact-v1` files: MLP-only configs (`widths`, `kept_inputs`,
//! `provenance.kept_hidden`) converted to the v2 [`CompactConfig`] on import. The tensors
//! (`layers.{l}.weight`, `layers.{l}.bias`) are the same keys the v2 architecture has.

use dgating_core::{ReadOut, Threshold};
use dgating_nn::Architecture;
use dgating_nn::data::{Standardizer, Task};
use serde::Deserialize;

use crate::format::{COMPACT_FORMAT, CompactConfig, HeldOutSource, InputSpec, KeptDim, Provenance, TrainingRecord};

/// The only activation of v1 files.
const ACTIVATION: &str = "relu";
/// The largest width a v1 file may claim: v1 left "all kept" implicit, and v2 lists the kept
/// indices, so converting materializes one index per entry; a hostile config must not make that
/// allocation unbounded.
const MAX_WIDTH: usize = 1 << 24;

#[derive(Debug, Deserialize)]
struct V1Provenance {
    depth: Option<usize>,
    lambda: Option<f64>,
    mode: Option<String>,
    threshold: Option<Threshold>,
    #[serde(default)]
    read_out: Option<serde_json::Value>,
    original_widths: Vec<usize>,
    kept_hidden: Vec<Vec<usize>>,
    metrics: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct V1Config {
    widths: Vec<usize>,
    activation: String,
    input_dim_full: usize,
    kept_inputs: Option<Vec<usize>>,
    kept_input_names: Option<Vec<String>>,
    standardizer: Option<Standardizer>,
    // Written by v1 exports since the CLI-reliability work; absent in older ones.
    #[serde(default)]
    input_names: Option<Vec<String>>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    task: Option<Task>,
    #[serde(default)]
    class_names: Option<Vec<String>>,
    #[serde(default)]
    held_out: Option<HeldOutSource>,
    provenance: V1Provenance,
}

/// Parses a v1 `config.json` value into the v2 config (checked like any v2 config);
/// `Err(message)`.
pub(crate) fn from_v1(value: serde_json::Value) -> Result<CompactConfig, String> {
    let v1: V1Config = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if v1.activation != ACTIVATION {
        return Err(format!("unknown activation `{}` (only `{ACTIVATION}`)", v1.activation));
    }
    let w = &v1.widths;
    let p = &v1.provenance;
    if w.len() < 2 || p.original_widths.len() != w.len() || p.kept_hidden.len() + 2 != w.len() {
        return Err(format!("widths {w:?}, original widths {:?} and kept_hidden do not fit", p.original_widths));
    }
    if w.iter().chain(&p.original_widths).chain([&v1.input_dim_full]).any(|&n| n > MAX_WIDTH) {
        return Err(format!("widths above {MAX_WIDTH} are not supported"));
    }
    if v1.kept_inputs.is_none() && w[0] != v1.input_dim_full {
        return Err(format!(
            "no kept_inputs but widths[0] = {} differs from input_dim_full = {}",
            w[0], v1.input_dim_full
        ));
    }
    let architecture = Architecture::from_widths(w).map_err(|e| e.to_string())?;
    let all = |n: usize| (0..n).collect::<Vec<_>>();
    let mut dims = vec![KeptDim {
        name: "inputs".into(),
        original: v1.input_dim_full,
        kept: v1.kept_inputs.clone().unwrap_or_else(|| all(v1.input_dim_full)),
    }];
    for (i, kept) in p.kept_hidden.iter().enumerate() {
        dims.push(KeptDim { name: format!("hidden.{i}"), original: p.original_widths[i + 1], kept: kept.clone() });
    }
    let out = w[w.len() - 1];
    dims.push(KeptDim { name: "outputs".into(), original: out, kept: all(out) });
    // Older v1 files stored the names of the kept features only; v2 names every raw feature,
    // so those can only be carried over when every feature was kept.
    let names = v1.input_names.or(v1.kept_input_names.filter(|n| n.len() == v1.input_dim_full));
    let rule = p
        .read_out
        .as_ref()
        .and_then(|r| r.get("rule"))
        .and_then(|r| serde_json::from_value::<ReadOut>(r.clone()).ok())
        .or(p.threshold.map(ReadOut::from));
    let training = p.metrics.as_ref().and_then(|m| {
        Some(TrainingRecord {
            epochs: usize::try_from(m.get("epoch")?.as_u64()?).ok()?,
            val_loss: m.get("val_loss")?.as_f64()?,
            val_accuracy: m.get("val_accuracy").and_then(serde_json::Value::as_f64),
        })
    });
    let config = CompactConfig {
        format: COMPACT_FORMAT.into(),
        architecture,
        input: InputSpec {
            features: v1.input_dim_full,
            names,
            standardizer: v1.standardizer,
            class_names: v1.class_names,
            target: v1.target,
            task: v1.task,
        },
        dims,
        held_out: v1.held_out,
        provenance: Provenance {
            mode: p.mode.clone(),
            depth: p.depth,
            lambda: p.lambda,
            read_out: rule,
            groups: vec![],
            training,
        },
    };
    config.check()?;
    Ok(config)
}

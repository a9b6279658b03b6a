//! [`verify()`]: the compacted model against the masked gated model, on the same inputs.
//!
//! The reference is the gated model with every removed group zeroed
//! ([`masked_reference`]): exactly the function compaction must reproduce. The distance to
//! the *unmasked* gated model is reported too; it measures what the threshold itself cost.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use dgating_nn::train::engine::{TensorData, score};
use dgating_nn::train::run::RunConfig;
use dgating_nn::{GateSite, GatedLinear, Mlp, Model};
use serde::{Deserialize, Serialize};

use crate::compact::{CompactMlp, FullInputModel};
use crate::error::{Error, Result};
use crate::report::Evaluation;

/// Output differences between a gated model and its compacted form.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// Rows compared.
    pub samples: usize,
    /// `max |y_masked − y_compact|` over all outputs.
    pub max_abs: f64,
    /// `max_abs / max |y_masked|`: relative to the output scale (per-element ratios are
    /// meaningless for outputs near 0).
    pub max_rel: f64,
    /// `max |y_gated − y_compact|` against the gated model *without* masking: the effect of
    /// removing groups that were small but not exactly zero.
    pub unmasked_max_abs: f64,
}

/// The keep-mask of every width of `gated`, read from the compacted model's config.
fn width_masks(gated: &Mlp, compact: &CompactMlp) -> Result<Vec<Vec<bool>>> {
    let widths = gated.config().widths();
    let p = &compact.config.provenance;
    if p.original_widths != widths || p.kept_hidden.len() + 2 != widths.len() {
        return Err(Error::Plan(format!(
            "compacted model comes from widths {:?}, the gated model has {widths:?}",
            p.original_widths
        )));
    }
    let mask = |n: usize, kept: &[usize]| -> Result<Vec<bool>> {
        let mut m = vec![false; n];
        for &i in kept {
            *m.get_mut(i).ok_or_else(|| Error::Plan(format!("kept index {i} out of {n}")))? = true;
        }
        Ok(m)
    };
    let mut masks = vec![mask(widths[0], &compact.config.kept_input_indices())?];
    for (kept, &n) in p.kept_hidden.iter().zip(&widths[1..]) {
        masks.push(mask(n, kept)?);
    }
    masks.push(vec![true; widths[widths.len() - 1]]);
    Ok(masks)
}

/// A copy of `gated` with its gates folded and every group the compacted model removed set
/// to zero (via [`GatedLinear::drop_groups`]); `gated` itself is not touched.
pub fn masked_reference(gated: &Mlp, compact: &CompactMlp) -> Result<Mlp> {
    let masks = width_masks(gated, compact)?;
    let layers = gated
        .layers()
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            let (w, b) = layer.effective()?;
            let b = b.map(|b| b.copy()).transpose()?;
            let plain = GatedLinear::from_tensors(layer.prefix(), w.copy()?, b, layer.site(), None)?;
            match layer.site() {
                GateSite::Outputs => plain.drop_groups(&masks[l + 1])?,
                GateSite::Inputs => plain.drop_groups(&masks[l])?,
                GateSite::None => {}
            }
            Ok(plain)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Mlp::from_layers(gated.config().clone(), layers)?)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    let d = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?.abs()?;
    Ok(d.max_all()?.to_scalar::<f64>()?)
}

/// Compares `compact.forward_full(inputs)` with the masked and the unmasked gated model on
/// the full (standardized) `inputs` `[batch, input_dim_full]`.
pub fn verify(gated: &Mlp, compact: &CompactMlp, inputs: &Tensor) -> Result<Verification> {
    let reference = masked_reference(gated, compact)?;
    let dtype = gated.layers()[0].weight_var().dtype();
    let x = inputs.to_dtype(dtype)?;
    let y_ref = reference.forward(&x)?;
    let y_gated = gated.forward(&x)?;
    let y = compact.forward_full(inputs)?;
    let max_abs = max_abs_diff(&y_ref, &y)?;
    let scale = y_ref.to_dtype(DType::F64)?.abs()?.max_all()?.to_scalar::<f64>()?;
    Ok(Verification {
        samples: inputs.dims()[0],
        max_abs,
        max_rel: max_abs / scale.max(f64::MIN_POSITIVE),
        unmasked_max_abs: max_abs_diff(&y_gated, &y)?,
    })
}

/// A gated model and its compacted form on a run's held-out split.
#[derive(Debug, Clone)]
pub(crate) struct HeldOutCheck {
    /// The held-out features `[rows, features]` (standardized, as the models take them).
    pub inputs: Tensor,
    /// Output differences ([`verify`]).
    pub verification: Verification,
    /// Held-out loss/accuracy of the gated model.
    pub gated: Evaluation,
    /// Held-out loss/accuracy of the compacted model.
    pub compacted: Evaluation,
}

/// Verifies `compact` against `gated` and evaluates both on the held-out split of the run in
/// `run_dir` (configuration `cfg`); an empty split is an error naming the run's config.
pub(crate) fn check_on_held_out(
    run_dir: &Path,
    cfg: &RunConfig,
    gated: &Mlp,
    compact: &CompactMlp,
) -> Result<HeldOutCheck> {
    let test = cfg.held_out()?;
    if test.is_empty() {
        return Err(Error::format(
            run_dir.join("config.json"),
            "the run's held-out split is empty: nothing to verify on",
        ));
    }
    let inputs = Tensor::from_slice(&test.features, (test.len(), test.num_features), &Device::Cpu)?;
    let verification = verify(gated, compact, &inputs)?;
    let data = TensorData::new(&test, DType::F32, &Device::Cpu)?;
    let gated_eval = score(gated, &data)?;
    let compacted = score(&FullInputModel(compact), &data)?;
    Ok(HeldOutCheck { inputs, verification, gated: gated_eval, compacted })
}

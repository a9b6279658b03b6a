//! [`verify()`]: the compacted model against the masked gated model, on the same inputs and
//! through the same nn forward.
//!
//! The reference is the gated model with its gates folded and every removed group's slices
//! zeroed ([`masked_reference`]), rebuilt by its architecture at the original sizes: exactly
//! the function compaction must reproduce. The distance to the *unmasked* gated model is
//! reported too; it measures what the threshold itself cost.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use dgating_core::GroupMember;
use dgating_nn::gates::scale_member;
use dgating_nn::train::EVAL_CHUNK_ROWS;
use dgating_nn::{Model, Network, effective_tensors};
use serde::{Deserialize, Serialize};

use crate::compact::Compacted;
use crate::error::{Error, Result};

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

/// The keep-mask of every dim of `gated` that `compact` removed entries from, read from the
/// compacted model's kept indices.
fn removed_masks<M: Model + ?Sized>(gated: &M, compact: &Compacted) -> Result<BTreeMap<String, Vec<bool>>> {
    let sizes = gated.structure()?.sizes();
    let original = compact.config.original_sizes();
    if original != sizes {
        return Err(Error::Plan(format!(
            "compacted model comes from sizes {original:?}, the gated model has {sizes:?}"
        )));
    }
    let mut out = BTreeMap::new();
    for d in &compact.config.dims {
        if d.kept.len() == d.original {
            continue;
        }
        let mut m = vec![false; d.original];
        for &i in &d.kept {
            *m.get_mut(i)
                .ok_or_else(|| Error::Plan(format!("dim `{}`: kept index {i} out of {}", d.name, d.original)))? = true;
        }
        out.insert(d.name.clone(), m);
    }
    Ok(out)
}

/// The function of `gated` with its gates folded and every group the compacted model removed
/// set to zero (its slices in every member of the dim's gate set), as an ungated model of the
/// same architecture; `gated` itself is not touched.
pub fn masked_reference<M: Model + ?Sized>(gated: &M, compact: &Compacted) -> Result<Network> {
    let masks = removed_masks(gated, compact)?;
    let structure = gated.structure()?;
    let mut tensors = effective_tensors(gated)?;
    for (name, keep) in &masks {
        let dim = structure.dim(name).ok_or_else(|| Error::Plan(format!("no dim `{name}`")))?;
        let groups: Vec<_> = dim.slices.iter().filter(|s| s.group).collect();
        if groups.is_empty() {
            return Err(Error::Plan(format!("dim `{name}` lost entries but has no groups")));
        }
        for s in groups {
            let t = tensors.get_mut(&s.tensor).ok_or_else(|| Error::Plan(format!("no tensor `{}`", s.tensor)))?;
            let v: Vec<f32> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
            let mask = Tensor::from_vec(v, keep.len(), t.device())?.to_dtype(t.dtype())?;
            let member = GroupMember::new(s.tensor.clone(), s.shape.clone(), s.axis, s.block);
            *t = scale_member(t, &mask, &member)?;
        }
    }
    Ok(dgating_nn::architecture_of(gated)?.from_tensors(&tensors)?)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    let d = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?.abs()?;
    Ok(d.max_all()?.to_scalar::<f64>()?)
}

/// Compares `compact.forward_full(inputs)` with the masked and the unmasked gated model on
/// the full (standardized) `inputs` `[batch, input.features]`, in chunks of
/// [`EVAL_CHUNK_ROWS`] rows (a forward through variables keeps its whole graph alive while its
/// output lives).
pub fn verify<M: Model + ?Sized>(gated: &M, compact: &Compacted, inputs: &Tensor) -> Result<Verification> {
    let reference = masked_reference(gated, compact)?;
    let dtype = gated.params()?.iter().next().map_or(DType::F32, |p| p.var.dtype());
    let device = dgating_nn::device_of(gated)?;
    let compact_device = compact.device()?;
    let rows = inputs.dims().first().copied().unwrap_or(0);
    let (mut max_abs, mut unmasked_max_abs, mut scale) = (0.0f64, 0.0f64, 0.0f64);
    for start in (0..rows).step_by(EVAL_CHUNK_ROWS) {
        let chunk = inputs.narrow(0, start, EVAL_CHUNK_ROWS.min(rows - start))?;
        let x = chunk.to_dtype(dtype)?.to_device(&device)?;
        let y_ref = reference.forward(&x)?.detach();
        let y_gated = gated.forward(&x)?.detach();
        let y = compact.forward_full(&chunk.to_device(&compact_device)?)?.detach().to_device(&device)?;
        max_abs = max_abs.max(max_abs_diff(&y_ref, &y)?);
        unmasked_max_abs = unmasked_max_abs.max(max_abs_diff(&y_gated, &y)?);
        scale = scale.max(y_ref.to_dtype(DType::F64)?.abs()?.max_all()?.to_scalar::<f64>()?);
    }
    Ok(Verification { samples: rows, max_abs, max_rel: max_abs / scale.max(f64::MIN_POSITIVE), unmasked_max_abs })
}

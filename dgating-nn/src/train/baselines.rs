//! The filter-pruning baselines for conv nets, on gate sets and the model's structure (no
//! model type): **L1-norm filter pruning** (Li et al., "Pruning Filters for Efficient
//! ConvNets", ICLR 2017) and **network slimming** (Liu et al., "Learning Efficient
//! Convolutional Networks through Network Slimming", ICCV 2017). Both train, remove a share of
//! the channels once, and fine-tune with the removed channels held at zero — the schedule of
//! `magnitude` (`epochs`, then `finetune_epochs`).
//!
//! * `l1-filter`: per gate set (per layer, as Li et al.), the channels whose *filters* have the
//!   smallest L1 norm `Σ|W[c, :, :, :]|` — summed over every conv weight the dim owns along its
//!   output axis (all writers of a ResNet stream) — are removed; a dim without conv filters
//!   falls back to the L1 norm of its group slices.
//! * `slimming`: training adds `λ Σ|s_c|` for the *scale* `s_c` of every group — the first
//!   group slice, BN's `γ` when the group is BN's scale and shift — then the channels with the
//!   smallest `|s_c|` are removed by one threshold over all gate sets (Liu et al. prune
//!   globally), keeping at least one channel per dim.
//!
//! Removing a channel zeroes its whole group (BN scale *and* shift), so the pruned model
//! compacts exactly like a D-Gating run.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::tensor_util::to_f64_vec;

/// `Σ |slab j|` along `axis` of a row-major tensor of `shape`, per entry `j` of `n`.
fn slab_l1(values: &[f64], shape: &[usize], axis: usize, n: usize) -> Vec<f64> {
    let inner: usize = shape[axis + 1..].iter().product();
    let len = shape[axis];
    let block = len / n.max(1);
    let mut out = vec![0.0; n];
    for (k, v) in values.iter().enumerate() {
        let j = (k / inner) % len / block.max(1);
        out[j] += v.abs();
    }
    out
}

/// The L1 norm of each channel's filters, per gate set (in `gate_sets` order).
pub fn filter_l1_norms<M: Model + ?Sized>(model: &M) -> Result<Vec<Vec<f64>>> {
    let store = model.params()?;
    let structure = model.structure()?;
    model
        .gate_sets()
        .iter()
        .map(|set| {
            let dim = structure.dim(set.dim()).ok_or_else(|| Error::Model {
                what: format!("gate set `{}`", set.dim()),
                message: "not a dim of the model's structure".into(),
            })?;
            let filters: Vec<_> = dim.slices.iter().filter(|s| s.shape.len() == 4 && s.axis == 0).collect();
            let n = set.num_groups();
            let mut total = vec![0.0; n];
            if filters.is_empty() {
                for (m, w) in set.layout().members().iter().zip(set.effective_buffers(&store)?) {
                    total.iter_mut().zip(slab_l1(&w, &m.shape, m.axis, n)).for_each(|(t, v)| *t += v);
                }
                return Ok(total);
            }
            for s in filters {
                let p = store.get(&s.tensor).ok_or_else(|| Error::Model {
                    what: format!("gate set `{}`", set.dim()),
                    message: format!("no parameter `{}`", s.tensor),
                })?;
                let w = to_f64_vec(p.var.as_tensor())?;
                total.iter_mut().zip(slab_l1(&w, &s.shape, s.axis, n)).for_each(|(t, v)| *t += v);
            }
            Ok(total)
        })
        .collect()
}

/// `|s_c|` (L1 over the channel's slab of the first group slice) per gate set.
pub fn group_scales<M: Model + ?Sized>(model: &M) -> Result<Vec<Vec<f64>>> {
    let store = model.params()?;
    model
        .gate_sets()
        .iter()
        .map(|set| {
            let m = &set.layout().members()[0];
            let w = set.effective_buffers(&store)?.swap_remove(0);
            Ok(slab_l1(&w, &m.shape, m.axis, set.num_groups()))
        })
        .collect()
}

/// Li et al.: per gate set, remove the `fraction` of channels with the smallest filter L1 norms.
pub fn l1_filter_masks<M: Model + ?Sized>(model: &M, fraction: f64) -> Result<Vec<Vec<bool>>> {
    Ok(filter_l1_norms(model)?.iter().map(|n| dgating_core::keep_largest(n, fraction)).collect())
}

/// Liu et al.: remove the `fraction` of all channels with the smallest `|s_c|`, by one
/// threshold over every gate set; each set keeps at least its largest channel.
pub fn slimming_masks<M: Model + ?Sized>(model: &M, fraction: f64) -> Result<Vec<Vec<bool>>> {
    let scales = group_scales(model)?;
    let mut all: Vec<f64> = scales.iter().flatten().copied().collect();
    all.sort_by(f64::total_cmp);
    let remove = ((all.len() as f64 * fraction).floor() as usize).min(all.len());
    let cut = if remove == 0 { f64::NEG_INFINITY } else { all[remove - 1] };
    Ok(scales
        .iter()
        .map(|s| {
            let mut keep: Vec<bool> = s.iter().map(|&v| v > cut).collect();
            if !keep.iter().any(|&k| k)
                && let Some((j, _)) = s.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))
            {
                keep[j] = true;
            }
            keep
        })
        .collect())
}

/// `λ Σ_sets Σ |first group slice|` as a differentiable scalar (the slimming penalty).
pub fn slimming_penalty<M: Model + ?Sized>(model: &M, lambda: f64) -> Result<Option<Tensor>> {
    let store = model.params()?;
    let mut total: Option<Tensor> = None;
    for set in model.gate_sets() {
        let first = set.effective_members(&store)?.swap_remove(0);
        let term = first.abs()?.sum_all()?;
        total = Some(match total {
            Some(t) => (t + term)?,
            None => term,
        });
    }
    total.map(|t| Ok((t * lambda)?)).transpose()
}

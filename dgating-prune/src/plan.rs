//! [`PrunePlan`]: a keep-mask per dim of a model's [`Structure`](dgating_core::Structure), and
//! for each gate set the read-out's decision.
//!
//! Which groups are zero is decided per gate set by a [`ReadOut`] on the composed group norms
//! ([`set_norms`]): by default the gap rule over a threshold floor (`dgating_core::readout`);
//! [`PrunePlan::new`] takes a plain [`Threshold`]. A gate set's groups are the entries of its
//! dim, so the decision is the dim's keep-mask; dims without a gate set keep everything. The
//! model type never matters: a residual stream's channel is one group spanning every layer that
//! writes it, dead only if all of its rows are.
//!
//! Degenerate cases: nothing below the threshold gives an all-keep plan (the compacted model
//! is the folded, unpruned one); a dim with *every* entry below the threshold is refused with
//! [`Error::EmptyDim`] rather than collapsed into a constant model, unless the dim is
//! [emptiable](dgating_core::Dim::emptiable) (a transformer block without heads); masks for a dim that
//! cannot shrink (a model's outputs) or has no groups are refused with [`Error::Plan`].

use std::collections::BTreeMap;

use dgating_core::{Decision, ReadOut, Threshold};
use dgating_nn::Model;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::GroupsRemoved;

/// Builds a [`Threshold`], turning invalid values (negative, NaN, infinite, relative `>= 1`)
/// into [`Error::Threshold`].
pub fn threshold(absolute: f64, relative: f64) -> Result<Threshold> {
    Threshold::new(absolute, relative).map_err(|e| Error::Threshold { absolute, relative, message: e.to_string() })
}

/// `(dim, ||w_j||)` of the composed (effective, `ω ⊙ Πγ`) weights of every gate set, in
/// structure order. Refuses non-finite norms with [`Error::NonFinite`]: no read-out can decide
/// on them.
pub fn set_norms<M: Model + ?Sized>(model: &M) -> Result<Vec<(String, Vec<f64>)>> {
    let store = model.params()?;
    model
        .gate_sets()
        .iter()
        .map(|set| {
            let norms = set.group_norms(&store)?;
            if norms.iter().any(|n| !n.is_finite()) {
                let members: Vec<&str> = set.layout().members().iter().map(|m| m.name.as_str()).collect();
                return Err(Error::NonFinite {
                    what: format!("group norms of `{}` ({})", set.dim(), members.join(", ")),
                });
            }
            Ok((set.dim().to_string(), norms))
        })
        .collect()
}

/// The keep-mask of one dim and, for a dim with a gate set, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimPlan {
    /// Dim name.
    pub dim: String,
    /// Kept entries.
    pub keep: Vec<bool>,
    /// Whether the dim has a gate set (groups); only those are ever pruned.
    pub grouped: bool,
    /// `||w_j||` of the composed weights; empty without a gate set or when built from masks.
    pub norms: Vec<f64>,
    /// The read-out's cut-off, which part set it and the gaps it saw; `None` without a gate
    /// set or when built from given masks.
    pub decision: Option<Decision>,
}

impl DimPlan {
    /// Entries removed.
    pub fn removed(&self) -> usize {
        self.keep.iter().filter(|&&k| !k).count()
    }

    /// Whether anything is removed.
    pub fn prunes(&self) -> bool {
        self.removed() > 0
    }

    /// Indices of the kept entries, ascending.
    pub fn kept(&self) -> Vec<usize> {
        self.keep.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i).collect()
    }
}

/// Which entries of every dim survive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrunePlan {
    /// Every dim of the model's structure, in order.
    pub dims: Vec<DimPlan>,
    /// The read-out that produced the masks; `None` when built from given masks.
    pub read_out: Option<ReadOut>,
}

impl PrunePlan {
    /// Thresholds the composed group norms of every gate set (the threshold alone, no gap
    /// rule).
    pub fn new<M: Model + ?Sized>(model: &M, threshold: &Threshold) -> Result<Self> {
        Self::with_read_out(model, &ReadOut::from(*threshold))
    }

    /// Applies `read_out` to the composed group norms of every gate set, each on its own (the
    /// gap and the relative floor are per set).
    pub fn with_read_out<M: Model + ?Sized>(model: &M, read_out: &ReadOut) -> Result<Self> {
        let norms = set_norms(model)?;
        let mut masks = BTreeMap::new();
        let mut why = BTreeMap::new();
        for (dim, n) in norms {
            let d = read_out.decide(&n);
            masks.insert(dim.clone(), d.keep_mask(&n));
            why.insert(dim, (n, d));
        }
        let mut plan = Self::from_masks(model, masks)?;
        for dp in &mut plan.dims {
            if let Some((n, d)) = why.remove(&dp.dim) {
                dp.norms = n;
                dp.decision = Some(d);
            }
        }
        plan.read_out = Some(*read_out);
        Ok(plan)
    }

    /// A plan from given keep-masks by dim name (e.g. the masks of magnitude pruning); dims
    /// not named keep everything. Only dims with a gate set may lose entries.
    pub fn from_masks<M: Model + ?Sized>(model: &M, mut masks: BTreeMap<String, Vec<bool>>) -> Result<Self> {
        let structure = model.structure()?;
        let sets = model.gate_sets();
        let mut dims = Vec::with_capacity(structure.dims().len());
        for d in structure.dims() {
            let grouped = sets.iter().any(|s| s.dim() == d.name);
            let keep = masks.remove(&d.name).unwrap_or_else(|| vec![true; d.size]);
            if keep.len() != d.size {
                return Err(Error::Plan(format!("dim `{}`: mask of {} for {} entries", d.name, keep.len(), d.size)));
            }
            let plan = DimPlan { dim: d.name.clone(), keep, grouped, norms: vec![], decision: None };
            if plan.prunes() && !(grouped && d.removable) {
                return Err(Error::Plan(format!("dim `{}` has no groups that may be removed", d.name)));
            }
            if plan.removed() == d.size && d.size > 0 && !d.emptiable {
                return Err(Error::EmptyDim { dim: d.name.clone(), groups: d.size });
            }
            dims.push(plan);
        }
        if let Some(name) = masks.keys().next() {
            return Err(Error::Plan(format!("the model has no dim `{name}`")));
        }
        Ok(Self { dims, read_out: None })
    }

    /// A plan from one keep-mask per gate set, in [`Model::gate_sets`] order (the order of
    /// the training metrics and the magnitude masks).
    pub fn from_set_masks<M: Model + ?Sized>(model: &M, masks: Vec<Vec<bool>>) -> Result<Self> {
        let sets = model.gate_sets();
        if sets.len() != masks.len() {
            return Err(Error::Plan(format!("{} masks for {} gate sets", masks.len(), sets.len())));
        }
        Self::from_masks(model, sets.iter().map(|s| s.dim().to_string()).zip(masks).collect())
    }

    /// A plan that removes nothing (the folded, unpruned model).
    pub fn keep_all<M: Model + ?Sized>(model: &M) -> Result<Self> {
        Self::from_masks(model, BTreeMap::new())
    }

    /// The plan of dim `name`.
    pub fn dim(&self, name: &str) -> Option<&DimPlan> {
        self.dims.iter().find(|d| d.dim == name)
    }

    /// Whether the plan removes anything.
    pub fn prunes(&self) -> bool {
        self.dims.iter().any(DimPlan::prunes)
    }

    /// The keep-mask of every dim, by name.
    pub fn keep_masks(&self) -> BTreeMap<String, Vec<bool>> {
        self.dims.iter().map(|d| (d.dim.clone(), d.keep.clone())).collect()
    }

    /// Sizes before compaction, by dim.
    pub fn sizes_before(&self) -> BTreeMap<String, usize> {
        self.dims.iter().map(|d| (d.dim.clone(), d.keep.len())).collect()
    }

    /// Sizes after compaction, by dim.
    pub fn sizes_after(&self) -> BTreeMap<String, usize> {
        self.dims.iter().map(|d| (d.dim.clone(), d.keep.len() - d.removed())).collect()
    }

    /// One entry per gate set: groups before, removed, and the decision.
    pub fn groups_removed(&self) -> Vec<GroupsRemoved> {
        self.dims
            .iter()
            .filter(|d| d.grouped)
            .map(|d| GroupsRemoved {
                dim: d.dim.clone(),
                groups: d.keep.len(),
                removed: d.removed(),
                decision: d.decision,
            })
            .collect()
    }
}

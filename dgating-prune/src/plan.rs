//! [`PrunePlan`]: which groups of an [`Mlp`] are zero, and which slices of which tensors go
//! with them.
//!
//! An MLP with `L` layers has `L + 1` *widths* (dimensions): width `0` are the input features,
//! widths `1..L` the hidden neurons, width `L` the outputs. The coupling is data
//! ([`width_members`]): removing entry `i` of width `d` removes
//!
//! ```text
//! layers.{d-1}.weight  axis 0 (row i)      if d >= 1   (the neuron that produces it)
//! layers.{d-1}.bias    axis 0 (entry i)    if d >= 1
//! layers.{d}.weight    axis 1 (column i)   if d <  L   (the layer that consumes it)
//! ```
//!
//! A gate site maps to one width: `Outputs` of layer `l` to width `l + 1`, `Inputs` of layer
//! `l` to width `l`. A width whose groups come from two sites keeps an entry only if both keep
//! it (a zero row feeding ReLU and a zero column are each enough to make the entry dead).
//!
//! Which groups are zero is decided per gate site by a [`ReadOut`] on the composed group
//! norms ([`site_norms`]): by default the gap rule over a threshold floor
//! (`dgating_core::readout`); [`PrunePlan::new`] takes a plain [`Threshold`].
//!
//! Degenerate cases: nothing below the threshold gives an all-keep plan (the compacted model
//! is the folded, unpruned one); a width with *every* entry below the threshold is refused
//! with [`Error::EmptyLayer`] rather than collapsed into a constant model; output groups
//! (width `L`) are refused with [`Error::Plan`], since removing outputs changes what the model
//! predicts.

use dgating_core::{Decision, ReadOut, Threshold, as_slices};
use dgating_nn::train::metrics::effective_buffers;
use dgating_nn::{GateSite, Mlp};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Builds a [`Threshold`], turning invalid values (negative, NaN, infinite, relative `>= 1`)
/// into [`Error::Threshold`].
pub fn threshold(absolute: f64, relative: f64) -> Result<Threshold> {
    Threshold::new(absolute, relative).map_err(|e| Error::Threshold { absolute, relative, message: e.to_string() })
}

/// `||w_j||` of the composed (effective, `ω ⊙ Πγ`) weights of every layer that has a gate
/// site, in layer order (one `Vec` per site; a hidden-neuron group includes its bias entry).
/// Refuses non-finite norms with [`Error::NonFinite`]: no read-out can decide on them.
pub fn site_norms(model: &Mlp) -> Result<Vec<Vec<f64>>> {
    let mut out = vec![];
    for layer in model.layers().iter().filter(|l| l.site() != GateSite::None) {
        let (layout, bufs) = effective_buffers(layer)?;
        let norms = layout.group_norms(&as_slices(&bufs))?;
        if norms.iter().any(|n| !n.is_finite()) {
            return Err(Error::NonFinite { what: format!("group norms of {}", layer.prefix()) });
        }
        out.push(norms);
    }
    Ok(out)
}

/// One slice that goes with an entry of a width: `tensor` cut along `axis` (block 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSlice {
    /// Layer index.
    pub layer: usize,
    /// Tensor name, e.g. `layers.1.weight`.
    pub tensor: String,
    /// Axis along which entry `i` is slice `i`.
    pub axis: usize,
}

/// Every tensor slice coupled to entries of width `d` in an MLP of `num_layers` layers.
pub fn width_members(num_layers: usize, d: usize) -> Vec<TensorSlice> {
    let mut out = vec![];
    if d >= 1 {
        let l = d - 1;
        out.push(TensorSlice { layer: l, tensor: format!("layers.{l}.weight"), axis: 0 });
        out.push(TensorSlice { layer: l, tensor: format!("layers.{l}.bias"), axis: 0 });
    }
    if d < num_layers {
        out.push(TensorSlice { layer: d, tensor: format!("layers.{d}.weight"), axis: 1 });
    }
    out
}

/// The groups of one gate site and the threshold's verdict on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SitePlan {
    /// Layer index.
    pub layer: usize,
    /// Where the groups are.
    pub site: GateSite,
    /// The width the groups belong to.
    pub width: usize,
    /// `||w_j||` of the composed (effective) weights; empty when built from given masks.
    pub norms: Vec<f64>,
    /// Kept groups.
    pub keep: Vec<bool>,
    /// The read-out's cut-off, which part set it and the gaps it saw; `None` when built from
    /// given masks.
    pub decision: Option<Decision>,
}

impl SitePlan {
    /// Groups removed.
    pub fn removed(&self) -> usize {
        self.keep.iter().filter(|&&k| !k).count()
    }
}

/// The keep-mask of one width and the slices it cuts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WidthPlan {
    /// Width index (`0` = input features).
    pub width: usize,
    /// Kept entries.
    pub keep: Vec<bool>,
    /// The coupled slices ([`width_members`]).
    pub members: Vec<TensorSlice>,
}

impl WidthPlan {
    /// Indices of the kept entries, ascending.
    pub fn kept(&self) -> Vec<usize> {
        self.keep.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i).collect()
    }

    /// Whether anything is removed.
    pub fn prunes(&self) -> bool {
        self.keep.iter().any(|k| !k)
    }
}

/// What to remove from an [`Mlp`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrunePlan {
    /// The gate sites with their masks, in layer order.
    pub sites: Vec<SitePlan>,
    /// One entry per width `[input, hidden.., output]`.
    pub widths: Vec<WidthPlan>,
    /// The read-out that made the masks; `None` when built from given masks.
    pub read_out: Option<ReadOut>,
}

impl PrunePlan {
    /// Thresholds the composed group norms of every layer that has a gate site (the
    /// threshold alone, no gap rule).
    pub fn new(model: &Mlp, threshold: &Threshold) -> Result<Self> {
        Self::with_read_out(model, &ReadOut::from(*threshold))
    }

    /// Applies `read_out` to the composed group norms of every layer that has a gate site,
    /// each layer on its own (the gap and the relative floor are per layer).
    pub fn with_read_out(model: &Mlp, read_out: &ReadOut) -> Result<Self> {
        let norms_all = site_norms(model)?;
        let decisions: Vec<Decision> = norms_all.iter().map(|n| read_out.decide(n)).collect();
        let masks = decisions.iter().zip(&norms_all).map(|(d, n)| d.keep_mask(n)).collect();
        let mut plan = Self::from_site_masks(model, masks)?;
        for ((site, norms), d) in plan.sites.iter_mut().zip(norms_all).zip(decisions) {
            site.norms = norms;
            site.decision = Some(d);
        }
        plan.read_out = Some(*read_out);
        Ok(plan)
    }

    /// A plan from given keep-masks, one per layer with a gate site in layer order (e.g. the
    /// masks of magnitude pruning).
    pub fn from_site_masks(model: &Mlp, masks: Vec<Vec<bool>>) -> Result<Self> {
        let layers = model.layers();
        let n = layers.len();
        let dims = model.config().widths();
        let mut widths: Vec<WidthPlan> = dims
            .iter()
            .enumerate()
            .map(|(d, &w)| WidthPlan { width: d, keep: vec![true; w], members: width_members(n, d) })
            .collect();
        let gated: Vec<_> = layers.iter().enumerate().filter(|(_, l)| l.site() != GateSite::None).collect();
        if gated.len() != masks.len() {
            return Err(Error::Plan(format!("{} masks for {} gate sites", masks.len(), gated.len())));
        }
        let mut sites = vec![];
        for ((l, layer), keep) in gated.into_iter().zip(masks) {
            let width = match layer.site() {
                GateSite::Outputs => l + 1,
                _ => l,
            };
            if width == n {
                return Err(Error::Plan(format!("{}: output groups cannot be removed", layer.prefix())));
            }
            if keep.len() != dims[width] {
                return Err(Error::Plan(format!(
                    "{}: mask of {} for {} groups",
                    layer.prefix(),
                    keep.len(),
                    dims[width]
                )));
            }
            for (w, &k) in widths[width].keep.iter_mut().zip(&keep) {
                *w &= k;
            }
            sites.push(SitePlan { layer: l, site: layer.site(), width, norms: vec![], keep, decision: None });
        }
        for wp in &widths[..n] {
            if !wp.keep.iter().any(|&k| k) {
                let (layer, kind) =
                    if wp.width == 0 { (0, "input features") } else { (wp.width - 1, "hidden neurons") };
                return Err(Error::EmptyLayer { layer, kind, groups: wp.keep.len() });
            }
        }
        Ok(Self { sites, widths, read_out: None })
    }

    /// A plan that removes nothing (the folded, unpruned model).
    pub fn keep_all(model: &Mlp) -> Result<Self> {
        let masks =
            model.layers().iter().filter(|l| l.site() != GateSite::None).map(|l| vec![true; l.num_groups()]).collect();
        Self::from_site_masks(model, masks)
    }

    /// Whether the plan removes anything.
    pub fn prunes(&self) -> bool {
        self.widths.iter().any(WidthPlan::prunes)
    }

    /// The widths after compaction.
    pub fn widths_after(&self) -> Vec<usize> {
        self.widths.iter().map(|w| w.keep.iter().filter(|&&k| k).count()).collect()
    }

    /// The widths before compaction.
    pub fn widths_before(&self) -> Vec<usize> {
        self.widths.iter().map(|w| w.keep.len()).collect()
    }
}

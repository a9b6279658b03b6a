//! [`GateSet`]: the groups of one [`Dim`](dgating_core::Dim) and, when D-gated, their gate
//! factors.
//!
//! A gate set holds the [`GroupLayout`] of its dim's group slices (keyed by the checkpoint
//! names of the `ω` tensors the layers hold) and, for `dgating`, the `[J, D-1]` gate matrix
//! `γ`. The effective weights are `w_j = ω_j · Π_d γ_{j,d}` in every member. Layers hold `ω`
//! and a handle to their gate set (`Clone` shares the variable), so one set can span several
//! layers: the stream channels of a residual MLP are rows of every layer that writes the
//! stream, one gate row per channel.
//!
//! Everything the training engine and pruning do per group — norms, metrics, the direct
//! penalty, prox, magnitude masks, dropping groups — works on a gate set and the model's
//! [`ParamStore`], never on a layer type.

use candle_core::{DType, Device, Tensor, Var};
use dgating_core::{GateMatrix, GroupLayout, GroupMember, as_slices};

use crate::error::{Error, Result};
use crate::ops::gate_product;
use crate::params::{ParamRole, ParamStore};
use crate::tensor_util::{from_f64, to_f64_vec};

/// The groups of one dim and their gate factors (none for dense models and the `direct`,
/// `prox` and `magnitude` baselines).
#[derive(Debug, Clone)]
pub struct GateSet {
    dim: String,
    key: String,
    layout: GroupLayout,
    gates: Option<Var>,
}

impl GateSet {
    /// The groups of dim `dim` over `layout`, without gate factors; `key` is the checkpoint
    /// name the gate matrix gets once factorized.
    pub fn new(dim: impl Into<String>, key: impl Into<String>, layout: GroupLayout) -> Self {
        Self { dim: dim.into(), key: key.into(), layout, gates: None }
    }

    /// Adds `D − 1` gates per group, all 1 (`w = ω`: function-preserving).
    pub fn with_unit_gates(mut self, depth: usize, dtype: DType, device: &Device) -> Result<Self> {
        dgating_core::config::check_depth(depth)?;
        let ones = Tensor::ones((self.num_groups(), depth - 1), dtype, device)?;
        self.gates = Some(Var::from_tensor(&ones)?);
        Ok(self)
    }

    /// The dim whose groups these are.
    pub fn dim(&self) -> &str {
        &self.dim
    }

    /// Checkpoint name of the gate matrix.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The layout of the groups over the `ω` tensors.
    pub fn layout(&self) -> &GroupLayout {
        &self.layout
    }

    /// `J`.
    pub fn num_groups(&self) -> usize {
        self.layout.num_groups()
    }

    /// The `[J, D-1]` gate matrix when factorized.
    pub fn gates_var(&self) -> Option<&Var> {
        self.gates.as_ref()
    }

    /// `D` when factorized.
    pub fn depth(&self) -> Option<usize> {
        self.gates.as_ref().map(|g| g.dims()[1] + 1)
    }

    /// Whether tensor `key` is one of the members.
    pub fn has_member(&self, key: &str) -> bool {
        self.layout.members().iter().any(|m| m.name == key)
    }

    /// The role of member tensor `key` in the optimizer: `ω` when factorized, else ungated.
    pub fn role_of(&self, key: &str) -> ParamRole {
        if self.gates.is_some() && self.has_member(key) { ParamRole::Omega } else { ParamRole::Ungated }
    }

    /// `p_j = Π_d γ_{j,d}` (`[J]`, differentiable) when factorized.
    pub fn product(&self) -> Result<Option<Tensor>> {
        self.gates.as_ref().map(|g| gate_product(g.as_tensor())).transpose()
    }

    /// Registers the gate matrix (if any) under [`GateSet::key`].
    pub fn register(&self, store: &mut ParamStore) -> Result<()> {
        if let Some(g) = &self.gates {
            store.push(self.key.clone(), g.clone(), ParamRole::Gate)?;
        }
        Ok(())
    }

    fn member_var<'a>(&self, store: &'a ParamStore, m: &GroupMember) -> Result<&'a Var> {
        let p = store.get(&m.name).ok_or_else(|| Error::Model {
            what: format!("gate set `{}`", self.dim),
            message: format!("member tensor `{}` is not a parameter of the model", m.name),
        })?;
        if p.var.dims() != m.shape.as_slice() {
            return Err(Error::Model {
                what: format!("gate set `{}`", self.dim),
                message: format!("member `{}` has shape {:?}, the layout says {:?}", m.name, p.var.dims(), m.shape),
            });
        }
        Ok(&p.var)
    }

    /// The effective member tensors `ω ⊙ Πγ` (differentiable), in layout order.
    pub fn effective_members(&self, store: &ParamStore) -> Result<Vec<Tensor>> {
        let prod = self.product()?;
        self.layout
            .members()
            .iter()
            .map(|m| {
                let w = self.member_var(store, m)?.as_tensor();
                match &prod {
                    Some(p) => scale_member(w, p, m),
                    None => Ok(w.clone()),
                }
            })
            .collect()
    }

    /// [`GateSet::effective_members`] as `f64` buffers (for the core math).
    pub fn effective_buffers(&self, store: &ParamStore) -> Result<Vec<Vec<f64>>> {
        self.effective_members(store)?.iter().map(to_f64_vec).collect()
    }

    /// The stored `ω` member tensors as `f64` buffers.
    pub fn omega_buffers(&self, store: &ParamStore) -> Result<Vec<Vec<f64>>> {
        self.layout.members().iter().map(|m| to_f64_vec(self.member_var(store, m)?.as_tensor())).collect()
    }

    /// The gate matrix as core's [`GateMatrix`] when factorized.
    pub fn gate_matrix(&self) -> Result<Option<GateMatrix<f64>>> {
        let Some(g) = &self.gates else { return Ok(None) };
        Ok(Some(GateMatrix::new(self.num_groups(), g.dims()[1], to_f64_vec(g.as_tensor())?)?))
    }

    /// `||w_j||` of the effective weights.
    pub fn group_norms(&self, store: &ParamStore) -> Result<Vec<f64>> {
        Ok(self.layout.group_norms(&as_slices(&self.effective_buffers(store)?))?)
    }

    /// `Σ_members ||w_j||²` per group as a differentiable `[J]` tensor of the effective weights:
    /// the one group-norm op the direct penalty needs, for any layout.
    pub fn group_sq_norms(&self, store: &ParamStore) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for (m, w) in self.layout.members().iter().zip(self.effective_members(store)?) {
            let (outer, inner) = outer_inner(m);
            let sq = w.reshape((outer, self.num_groups(), m.block * inner))?.sqr()?.sum(2)?.sum(0)?;
            total = Some(match total {
                Some(t) => (t + sq)?,
                None => sq,
            });
        }
        total.ok_or_else(|| Error::Model { what: format!("gate set `{}`", self.dim), message: "no members".into() })
    }

    /// Overwrites the stored `ω` members with `bufs` (layout order), e.g. after a prox step.
    pub fn set_omega(&self, store: &ParamStore, bufs: Vec<Vec<f64>>) -> Result<()> {
        for (m, buf) in self.layout.members().iter().zip(bufs) {
            let v = self.member_var(store, m)?;
            v.set(&from_f64(buf, v.dims(), v.dtype(), v.device())?)?;
        }
        Ok(())
    }

    /// Replaces `(ω, γ)` by the balanced factorization of the current effective weights
    /// (function-preserving; `|γ_{j,d}| = ||ω_j||`). Needs gate factors.
    pub fn balance(&self, store: &ParamStore) -> Result<()> {
        let (Some(g), Some(depth)) = (&self.gates, self.depth()) else {
            return Err(Error::Model { what: format!("gate set `{}`", self.dim), message: "has no gates".into() });
        };
        let f = dgating_core::balance(&self.layout, &as_slices(&self.effective_buffers(store)?), depth)?;
        self.set_omega(store, f.omega)?;
        g.set(&from_f64(f.gates.values().to_vec(), g.dims(), g.dtype(), g.device())?)?;
        Ok(())
    }

    /// Zeroes every group whose `keep[j]` is false, in place: its gates when factorized, else
    /// its slices of every member. Kept groups are untouched.
    pub fn drop_groups(&self, store: &ParamStore, keep: &[bool]) -> Result<()> {
        if keep.len() != self.num_groups() {
            return Err(Error::Model {
                what: format!("gate set `{}`", self.dim),
                message: format!("mask of {} for {} groups", keep.len(), self.num_groups()),
            });
        }
        let mask = |t: &Tensor| -> Result<Tensor> {
            let v: Vec<f32> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
            Ok(Tensor::from_vec(v, keep.len(), t.device())?.to_dtype(t.dtype())?)
        };
        if let Some(g) = &self.gates {
            let t = g.as_tensor();
            return Ok(g.set(&t.broadcast_mul(&mask(t)?.unsqueeze(1)?)?)?);
        }
        for m in self.layout.members() {
            let v = self.member_var(store, m)?;
            let t = v.as_tensor();
            v.set(&scale_member(t, &mask(t)?, m)?)?;
        }
        Ok(())
    }
}

/// `(outer, inner)`: products of the dimensions before and after the member's axis.
fn outer_inner(m: &GroupMember) -> (usize, usize) {
    (m.shape[..m.axis].iter().product(), m.shape[m.axis + 1..].iter().product())
}

/// `w` with group `j`'s slab along the member's axis multiplied by `s[j]` (`s`: `[J]`).
pub fn scale_member(w: &Tensor, s: &Tensor, m: &GroupMember) -> Result<Tensor> {
    let (outer, inner) = outer_inner(m);
    let j = s.dims1()?;
    let w3 = w.reshape((outer, j, m.block * inner))?;
    Ok(w3.broadcast_mul(&s.reshape((1, j, 1))?)?.reshape(w.dims())?)
}

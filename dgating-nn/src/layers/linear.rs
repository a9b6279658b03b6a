//! [`GatedLinear`]: `y = x Wᵀ + b` where `W` is either a plain weight or `ω ⊙ Πγ` with one
//! gate row per group.
//!
//! Groups are either output neurons (rows of `W` plus their bias entries) or input features
//! (columns of `W`; the bias is not part of any group). The gates multiply along the group
//! axis: `W = ω ⊙ (Π_d γ_{:,d})` broadcast over the other axis.

use candle_core::{D, DType, Device, Tensor, Var};
use dgating_core::{GroupLayout, GroupMember};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ops::{self, GroupAxis, gate_product, scale_groups};
use crate::params::{ParamRole, ParamStore};

/// Which slices of a linear layer form the groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateSite {
    /// No structured groups.
    None,
    /// Group `i` = row `i` of `W` and `b_i` (output neuron `i`).
    Outputs,
    /// Group `k` = column `k` of `W` (input feature `k`).
    Inputs,
}

/// How the gates of a freshly initialized layer start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateInit {
    /// `ω = W`, `γ = 1`: the weight moves freely; weight decay balances the factors over
    /// time (at rate `4λ/D`, SPEC.md §2). Required for groups of a single weight.
    #[default]
    Ones,
    /// The balanced factorization of `W` (`|γ| = ||ω_j||`): the gated objective equals the
    /// penalized one from the first step.
    Balanced,
}

/// A linear layer whose weight may be D-gated. Holds its variables; the effective weight is
/// formed in every forward pass so gradients reach `ω` and `γ`.
///
/// `Clone` is a handle copy, like candle's `Var`: clones share the variables (training one
/// trains the other). [`GatedLinear::from_tensors`] always takes its own copy of the tensors it
/// is given, so a layer built from another layer's weights never aliases them.
#[derive(Debug, Clone)]
pub struct GatedLinear {
    prefix: String,
    in_dim: usize,
    out_dim: usize,
    site: GateSite,
    weight: Var,
    bias: Option<Var>,
    gates: Option<Var>,
}

impl GatedLinear {
    /// A layer with uniform `U(−1/√in, 1/√in)` weights and biases (PyTorch's default
    /// initialization), drawn from `rng`. `depth = Some(D)` factorizes the weight of
    /// `site`'s groups with `D − 1` gates per group, all 1 (so `W = ω` at the start).
    ///
    /// Gates start at 1, not balanced: on the balanced manifold `|γ| = ||ω_j||`, so a group
    /// of one weight cannot change sign without passing through the saddle at 0, where it
    /// stays. With `γ = 1` the weight moves freely while weight decay balances the factors.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        prefix: impl Into<String>,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        site: GateSite,
        depth: Option<usize>,
        init: GateInit,
        rng: &mut StdRng,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if in_dim == 0 || out_dim == 0 {
            return Err(Error::Config(format!("linear layer needs in, out >= 1, got {in_dim} -> {out_dim}")));
        }
        let bound = 1.0 / (in_dim as f64).sqrt();
        let mut uniform = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
        let w = Tensor::from_vec(uniform(in_dim * out_dim), (out_dim, in_dim), device)?.to_dtype(dtype)?;
        let b = if bias { Some(Tensor::from_vec(uniform(out_dim), out_dim, device)?.to_dtype(dtype)?) } else { None };
        match (depth, init) {
            (Some(depth), GateInit::Ones) => Self::from_tensors(prefix, w, b, site, None)?.with_unit_gates(depth),
            (depth, _) => Self::from_tensors(prefix, w, b, site, depth),
        }
    }

    /// Factorizes the current weight as `ω = W`, `γ = 1` (function-preserving).
    fn with_unit_gates(mut self, depth: usize) -> Result<Self> {
        dgating_core::config::check_depth(depth)?;
        if self.site == GateSite::None {
            return Err(Error::Config(format!("{}: a gated layer needs a gate site", self.prefix)));
        }
        let ones = Tensor::ones((self.num_groups(), depth - 1), self.weight.dtype(), self.weight.device())?;
        self.gates = Some(Var::from_tensor(&ones)?);
        Ok(self)
    }

    /// A layer from a dense weight `[out, in]` and bias. With `depth = Some(D)` the weight is
    /// replaced by its *balanced* factorization (SPEC.md §2), which leaves the layer's
    /// function unchanged.
    pub fn from_tensors(
        prefix: impl Into<String>,
        weight: Tensor,
        bias: Option<Tensor>,
        site: GateSite,
        depth: Option<usize>,
    ) -> Result<Self> {
        let prefix = prefix.into();
        let (out_dim, in_dim) = weight.dims2()?;
        if let Some(b) = &bias
            && b.dims() != [out_dim]
        {
            return Err(Error::Config(format!("{prefix}: bias shape {:?} does not match {out_dim} outputs", b.dims())));
        }
        let mut layer = Self {
            prefix,
            in_dim,
            out_dim,
            site,
            // `Var::from_tensor` shares a tensor that already is a variable: copy first.
            weight: Var::from_tensor(&weight.copy()?)?,
            bias: bias.as_ref().map(|b| Var::from_tensor(&b.copy()?)).transpose()?,
            gates: None,
        };
        if let Some(depth) = depth {
            dgating_core::config::check_depth(depth)?;
            if site == GateSite::None {
                return Err(Error::Config(format!("{}: a gated layer needs a gate site", layer.prefix)));
            }
            layer.balance_from_dense(depth)?;
        }
        Ok(layer)
    }

    /// Replaces `(ω, b, γ)` by the balanced factorization of the current effective weight.
    fn balance_from_dense(&mut self, depth: usize) -> Result<()> {
        let layout = self.layout()?;
        let dtype = self.weight.dtype();
        let device = self.weight.device().clone();
        let (w, b) = self.effective()?;
        let mut bufs = vec![w.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?];
        let with_bias = self.site == GateSite::Outputs && b.is_some();
        if let (true, Some(b)) = (with_bias, &b) {
            bufs.push(b.to_dtype(DType::F64)?.to_vec1::<f64>()?);
        }
        let f = dgating_core::balance(&layout, &dgating_core::as_slices(&bufs), depth)?;
        let omega = Tensor::from_vec(f.omega[0].clone(), (self.out_dim, self.in_dim), &device)?.to_dtype(dtype)?;
        self.weight = Var::from_tensor(&omega)?;
        if with_bias {
            let ob = Tensor::from_vec(f.omega[1].clone(), self.out_dim, &device)?.to_dtype(dtype)?;
            self.bias = Some(Var::from_tensor(&ob)?);
        }
        let g =
            Tensor::from_vec(f.gates.values().to_vec(), (layout.num_groups(), depth - 1), &device)?.to_dtype(dtype)?;
        self.gates = Some(Var::from_tensor(&g)?);
        Ok(())
    }

    /// Checkpoint key prefix, e.g. `layers.0`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Input features.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Where the groups are.
    pub fn site(&self) -> GateSite {
        self.site
    }

    /// `D` when factorized.
    pub fn depth(&self) -> Option<usize> {
        self.gates.as_ref().map(|g| g.dims()[1] + 1)
    }

    /// The stored weight: `ω` when gated, `W` otherwise.
    pub fn weight_var(&self) -> &Var {
        &self.weight
    }

    /// The stored bias (`ω_b` when the bias is part of gated output groups).
    pub fn bias_var(&self) -> Option<&Var> {
        self.bias.as_ref()
    }

    /// The `[J, D-1]` gate matrix when gated.
    pub fn gates_var(&self) -> Option<&Var> {
        self.gates.as_ref()
    }

    /// Number of groups (`0` without a gate site).
    pub fn num_groups(&self) -> usize {
        match self.site {
            GateSite::None => 0,
            GateSite::Outputs => self.out_dim,
            GateSite::Inputs => self.in_dim,
        }
    }

    /// The group layout over this layer's *effective* `weight` (and `bias` for output
    /// groups), with checkpoint names.
    pub fn layout(&self) -> Result<GroupLayout> {
        let w = format!("{}.weight", self.prefix);
        let shape = [self.out_dim, self.in_dim];
        Ok(match self.site {
            GateSite::None => return Err(Error::Config(format!("{}: layer has no gate site", self.prefix))),
            GateSite::Inputs => GroupLayout::new(self.in_dim, vec![GroupMember::new(w, shape, 1, 1)])?,
            GateSite::Outputs => {
                let mut members = vec![GroupMember::new(w, shape, 0, 1)];
                if self.bias.is_some() {
                    members.push(GroupMember::new(format!("{}.bias", self.prefix), [self.out_dim], 0, 1));
                }
                GroupLayout::new(self.out_dim, members)?
            }
        })
    }

    /// The effective weight `[out, in]` and bias: `ω ⊙ Πγ` when gated.
    pub fn effective(&self) -> Result<(Tensor, Option<Tensor>)> {
        let w = self.weight.as_tensor();
        let b = self.bias.as_ref().map(|b| b.as_tensor().clone());
        let Some(gates) = &self.gates else { return Ok((w.clone(), b)) };
        let prod = gate_product(gates.as_tensor())?;
        Ok(match self.site {
            GateSite::Outputs => (scale_groups(w, &prod, GroupAxis::Rows)?, b.map(|b| b.mul(&prod)).transpose()?),
            GateSite::Inputs => (scale_groups(w, &prod, GroupAxis::Cols)?, b),
            GateSite::None => (w.clone(), b),
        })
    }

    /// `x Wᵀ + b` for `x` of shape `[batch, in]`.
    ///
    /// A gated layer never forms `W = ω ⊙ Πγ` here: the gates scale activations instead, which
    /// is the same function — `(x ωᵀ + b_ω) ⊙ p` for output groups and `(x ⊙ p) ωᵀ + b` for
    /// input groups, `p = Πγ` — but keeps `ω` a direct operand of the matmul, so its gradient
    /// comes out of the matmul backward with no weight-sized effective-weight node to
    /// accumulate, copy and rescale (docs/PERFORMANCE.md).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let Some(gates) = &self.gates else {
            return linear_forward(x, self.weight.as_tensor(), self.bias.as_ref().map(Var::as_tensor), &self.prefix);
        };
        let prod = gate_product(gates.as_tensor())?;
        let (w, b) = (self.weight.as_tensor(), self.bias.as_ref().map(Var::as_tensor));
        match self.site {
            GateSite::Outputs => scale_groups(&linear_forward(x, w, b, &self.prefix)?, &prod, GroupAxis::Cols),
            GateSite::Inputs => {
                check_input(x, self.in_dim, &self.prefix)?;
                linear_forward(&scale_groups(x, &prod, GroupAxis::Cols)?, w, b, &self.prefix)
            }
            GateSite::None => linear_forward(x, w, b, &self.prefix),
        }
    }

    /// `relu(x Wᵀ + b)`: [`GatedLinear::forward`] followed by ReLU, with the ReLU fused into the
    /// op before it: the linear op for ungated layers and input groups, the gate scaling for
    /// output groups.
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        let (w, b) = (self.weight.as_tensor(), self.bias.as_ref().map(Var::as_tensor));
        match (&self.gates, self.site) {
            (Some(gates), GateSite::Outputs) => {
                let prod = gate_product(gates.as_tensor())?;
                ops::scale_cols_relu(&linear_forward(x, w, b, &self.prefix)?, &prod)
            }
            (Some(gates), GateSite::Inputs) => {
                check_input(x, self.in_dim, &self.prefix)?;
                let prod = gate_product(gates.as_tensor())?;
                ops::linear_relu(&scale_groups(x, &prod, GroupAxis::Cols)?, w, b, &self.prefix)
            }
            _ => {
                check_input(x, self.in_dim, &self.prefix)?;
                ops::linear_relu(x, w, b, &self.prefix)
            }
        }
    }

    /// Zeroes every group whose `keep[j]` is false, in place: its gates when gated, else its
    /// weight slice (and bias entries for output groups). Kept groups are untouched, so the
    /// result is exactly the masked model that compaction must reproduce.
    pub fn drop_groups(&self, keep: &[bool]) -> Result<()> {
        if keep.len() != self.num_groups() {
            return Err(Error::Config(format!(
                "{}: mask of {} for {} groups",
                self.prefix,
                keep.len(),
                self.num_groups()
            )));
        }
        let mask = |n: usize| -> Result<Tensor> {
            let v: Vec<f32> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
            Ok(Tensor::from_vec(v, n, self.weight.device())?.to_dtype(self.weight.dtype())?)
        };
        let j = self.num_groups();
        if let Some(g) = &self.gates {
            return Ok(g.set(&g.as_tensor().broadcast_mul(&mask(j)?.unsqueeze(1)?)?)?);
        }
        let w = self.weight.as_tensor();
        match self.site {
            GateSite::Outputs => {
                self.weight.set(&w.broadcast_mul(&mask(j)?.unsqueeze(1)?)?)?;
                if let Some(b) = &self.bias {
                    b.set(&b.as_tensor().mul(&mask(j)?)?)?;
                }
            }
            GateSite::Inputs => self.weight.set(&w.broadcast_mul(&mask(j)?.unsqueeze(0)?)?)?,
            GateSite::None => {}
        }
        Ok(())
    }

    /// Registers this layer's variables with their roles.
    pub fn register(&self, store: &mut ParamStore) -> Result<()> {
        let gated = self.gates.is_some();
        let w_role = if gated { ParamRole::Omega } else { ParamRole::Ungated };
        store.push(format!("{}.weight", self.prefix), self.weight.clone(), w_role)?;
        if let Some(b) = &self.bias {
            let role = if gated && self.site == GateSite::Outputs { ParamRole::Omega } else { ParamRole::Ungated };
            store.push(format!("{}.bias", self.prefix), b.clone(), role)?;
        }
        if let Some(g) = &self.gates {
            store.push(format!("{}.gates", self.prefix), g.clone(), ParamRole::Gate)?;
        }
        Ok(())
    }
}

fn check_input(x: &Tensor, in_dim: usize, name: &str) -> Result<()> {
    if x.rank() != 2 || x.dim(D::Minus1)? != in_dim {
        return Err(Error::Config(format!("{name}: expected input [batch, {in_dim}], got {:?}", x.dims())));
    }
    Ok(())
}

/// `x wᵀ + b` with a shape check that names the layer (the fused [`ops::linear`]).
pub(crate) fn linear_forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>, name: &str) -> Result<Tensor> {
    check_input(x, w.dim(1)?, name)?;
    ops::linear(x, w, b, name)
}

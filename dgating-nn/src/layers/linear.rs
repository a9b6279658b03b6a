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
use crate::gates::GateSet;
use crate::ops::{self, GroupAxis, scale_groups};
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
    /// time (at rate `4λ/D`, docs/METHOD.md). Required for groups of a single weight.
    #[default]
    Ones,
    /// The balanced factorization of `W` (`|γ| = ||ω_j||`): the gated objective equals the
    /// penalized one from the first step.
    Balanced,
}

/// A linear layer whose weight may be D-gated. Holds `ω` (and the bias) and, when it has a
/// gate site, a handle to the [`GateSet`] of its groups; the effective weight is formed in
/// every forward pass so gradients reach `ω` and `γ`.
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
    gate: Option<GateSet>,
}

impl GatedLinear {
    /// A layer with uniform `U(−1/√in, 1/√in)` weights and biases (PyTorch's default
    /// initialization), drawn from `rng`, with its own gate set over `site`'s groups (named
    /// `{prefix}`, gate matrix `{prefix}.gates`). `depth = Some(D)` factorizes them with
    /// `D − 1` gates per group: all 1 (`W = ω` at the start) for [`GateInit::Ones`], balanced
    /// for [`GateInit::Balanced`].
    ///
    /// Gates start at 1 by default, not balanced: on the balanced manifold `|γ| = ||ω_j||`, so
    /// a group of one weight cannot change sign without passing through the saddle at 0, where
    /// it stays. With `γ = 1` the weight moves freely while weight decay balances the factors.
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
        let prefix = prefix.into();
        let (w, b) = init_uniform(&prefix, in_dim, out_dim, bias, rng, dtype, device)?;
        match (depth, init) {
            (Some(depth), GateInit::Ones) => {
                let mut layer = Self::from_tensors(prefix, w, b, site, None)?;
                layer.gate = match layer.gate.take() {
                    Some(g) => Some(g.with_unit_gates(depth, dtype, device)?),
                    None => return Err(no_site(&layer.prefix)),
                };
                Ok(layer)
            }
            (depth, _) => Self::from_tensors(prefix, w, b, site, depth),
        }
    }

    /// A layer from a dense weight `[out, in]` and bias, with its own gate set over `site`'s
    /// groups. With `depth = Some(D)` the weight is replaced by its *balanced* factorization
    /// (docs/METHOD.md), which leaves the layer's function unchanged.
    pub fn from_tensors(
        prefix: impl Into<String>,
        weight: Tensor,
        bias: Option<Tensor>,
        site: GateSite,
        depth: Option<usize>,
    ) -> Result<Self> {
        let prefix = prefix.into();
        let (out_dim, in_dim) = weight.dims2()?;
        let layout = own_layout(&prefix, site, in_dim, out_dim, bias.is_some())?;
        let mut gate = layout.map(|l| GateSet::new(prefix.clone(), format!("{prefix}.gates"), l));
        if let Some(depth) = depth {
            gate = match gate {
                Some(g) => Some(g.with_unit_gates(depth, weight.dtype(), weight.device())?),
                None => return Err(no_site(&prefix)),
            };
        }
        let layer = Self::assemble(prefix, weight, bias, site, gate)?;
        if depth.is_some() {
            let mut store = ParamStore::new();
            layer.register(&mut store)?;
            layer.gate.as_ref().map(|g| g.balance(&store)).transpose()?;
        }
        Ok(layer)
    }

    /// A layer whose groups belong to `gate`, a set that may span other layers too (its
    /// layout must list this layer's `site` slices under this layer's keys). The tensors are
    /// copied.
    pub fn with_gate_set(
        prefix: impl Into<String>,
        weight: Tensor,
        bias: Option<Tensor>,
        site: GateSite,
        gate: GateSet,
    ) -> Result<Self> {
        let prefix = prefix.into();
        let (out_dim, in_dim) = weight.dims2()?;
        let own = own_layout(&prefix, site, in_dim, out_dim, bias.is_some())?.ok_or_else(|| no_site(&prefix))?;
        for m in own.members() {
            let found = gate.layout().members().iter().find(|g| g.name == m.name);
            if found != Some(m) {
                return Err(Error::Model {
                    what: prefix.clone(),
                    message: format!("gate set `{}` does not hold `{}` as {m:?}", gate.dim(), m.name),
                });
            }
        }
        Self::assemble(prefix, weight, bias, site, Some(gate))
    }

    fn assemble(
        prefix: String,
        weight: Tensor,
        bias: Option<Tensor>,
        site: GateSite,
        gate: Option<GateSet>,
    ) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        if let Some(b) = &bias
            && b.dims() != [out_dim]
        {
            return Err(Error::Shape {
                op: format!("{prefix}: bias"),
                expected: vec![out_dim],
                actual: b.dims().to_vec(),
            });
        }
        Ok(Self {
            prefix,
            in_dim,
            out_dim,
            site,
            // `Var::from_tensor` shares a tensor that already is a variable: copy first.
            weight: Var::from_tensor(&weight.copy()?)?,
            bias: bias.as_ref().map(|b| Var::from_tensor(&b.copy()?)).transpose()?,
            gate,
        })
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
        self.gate.as_ref().and_then(GateSet::depth)
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
        self.gate.as_ref().and_then(GateSet::gates_var)
    }

    /// The gate set of the layer's groups (`None` without a gate site).
    pub fn gate_set(&self) -> Option<&GateSet> {
        self.gate.as_ref()
    }

    /// Number of groups (`0` without a gate site).
    pub fn num_groups(&self) -> usize {
        self.gate.as_ref().map_or(0, GateSet::num_groups)
    }

    /// The layout of the layer's gate set (which may span other layers too).
    pub fn layout(&self) -> Result<GroupLayout> {
        Ok(self.gate.as_ref().ok_or_else(|| no_site(&self.prefix))?.layout().clone())
    }

    /// The effective weight `[out, in]` and bias: `ω ⊙ Πγ` when gated.
    pub fn effective(&self) -> Result<(Tensor, Option<Tensor>)> {
        let w = self.weight.as_tensor();
        let b = self.bias.as_ref().map(|b| b.as_tensor().clone());
        let Some(prod) = self.gate.as_ref().map(GateSet::product).transpose()?.flatten() else {
            return Ok((w.clone(), b));
        };
        Ok(match self.site {
            GateSite::Outputs => (scale_groups(w, &prod, GroupAxis::Rows)?, b.map(|b| b.mul(&prod)).transpose()?),
            GateSite::Inputs => (scale_groups(w, &prod, GroupAxis::Cols)?, b),
            GateSite::None => (w.clone(), b),
        })
    }

    fn product(&self) -> Result<Option<Tensor>> {
        Ok(self.gate.as_ref().map(GateSet::product).transpose()?.flatten())
    }

    /// `x Wᵀ + b` for `x` of shape `[batch, in]`.
    ///
    /// A gated layer never forms `W = ω ⊙ Πγ` here: the gates scale activations instead, which
    /// is the same function — `(x ωᵀ + b_ω) ⊙ p` for output groups and `(x ⊙ p) ωᵀ + b` for
    /// input groups, `p = Πγ` — but keeps `ω` a direct operand of the matmul, so its gradient
    /// comes out of the matmul backward with no weight-sized effective-weight node to
    /// accumulate, copy and rescale (docs/PERFORMANCE.md).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (w, b) = (self.weight.as_tensor(), self.bias.as_ref().map(Var::as_tensor));
        let Some(prod) = self.product()? else {
            return linear_forward(x, w, b, &self.prefix);
        };
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
        match (self.product()?, self.site) {
            (Some(prod), GateSite::Outputs) => ops::scale_cols_relu(&linear_forward(x, w, b, &self.prefix)?, &prod),
            (Some(prod), GateSite::Inputs) => {
                check_input(x, self.in_dim, &self.prefix)?;
                ops::linear_relu(&scale_groups(x, &prod, GroupAxis::Cols)?, w, b, &self.prefix)
            }
            _ => {
                check_input(x, self.in_dim, &self.prefix)?;
                ops::linear_relu(x, w, b, &self.prefix)
            }
        }
    }

    /// Zeroes every group whose `keep[j]` is false, in place (see [`GateSet::drop_groups`]).
    /// For a gate set that spans other layers without gate factors, use the gate set with the
    /// model's parameters instead.
    pub fn drop_groups(&self, keep: &[bool]) -> Result<()> {
        let gate = self.gate.as_ref().ok_or_else(|| no_site(&self.prefix))?;
        let mut store = ParamStore::new();
        self.register(&mut store)?;
        gate.drop_groups(&store, keep)
    }

    /// Registers this layer's variables with their roles, and its gate set's gate matrix unless
    /// another layer of the set registered it already.
    pub fn register(&self, store: &mut ParamStore) -> Result<()> {
        let role = |key: &str| self.gate.as_ref().map_or(ParamRole::Ungated, |g| g.role_of(key));
        let w_key = format!("{}.weight", self.prefix);
        store.push(w_key.clone(), self.weight.clone(), role(&w_key))?;
        if let Some(b) = &self.bias {
            let b_key = format!("{}.bias", self.prefix);
            store.push(b_key.clone(), b.clone(), role(&b_key))?;
        }
        if let Some(g) = &self.gate
            && store.get(g.key()).is_none()
        {
            g.register(store)?;
        }
        Ok(())
    }
}

/// The layout of a layer's own groups: rows (and bias entries) for output groups, columns for
/// input groups; `None` without a gate site.
pub fn own_layout(
    prefix: &str,
    site: GateSite,
    in_dim: usize,
    out_dim: usize,
    bias: bool,
) -> Result<Option<GroupLayout>> {
    let w = format!("{prefix}.weight");
    let shape = [out_dim, in_dim];
    Ok(match site {
        GateSite::None => None,
        GateSite::Inputs => Some(GroupLayout::new(in_dim, vec![GroupMember::new(w, shape, 1, 1)])?),
        GateSite::Outputs => {
            let mut members = vec![GroupMember::new(w, shape, 0, 1)];
            if bias {
                members.push(GroupMember::new(format!("{prefix}.bias"), [out_dim], 0, 1));
            }
            Some(GroupLayout::new(out_dim, members)?)
        }
    })
}

/// PyTorch's default initialization `U(−1/√in, 1/√in)` of a `[out, in]` weight and its bias.
#[allow(clippy::too_many_arguments)]
pub fn init_uniform(
    prefix: &str,
    in_dim: usize,
    out_dim: usize,
    bias: bool,
    rng: &mut StdRng,
    dtype: DType,
    device: &Device,
) -> Result<(Tensor, Option<Tensor>)> {
    if in_dim == 0 || out_dim == 0 {
        return Err(Error::Model {
            what: prefix.to_string(),
            message: format!("a linear layer needs in, out >= 1, got {in_dim} -> {out_dim}"),
        });
    }
    let bound = 1.0 / (in_dim as f64).sqrt();
    let mut uniform = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
    let w = Tensor::from_vec(uniform(in_dim * out_dim), (out_dim, in_dim), device)?.to_dtype(dtype)?;
    let b = if bias { Some(Tensor::from_vec(uniform(out_dim), out_dim, device)?.to_dtype(dtype)?) } else { None };
    Ok((w, b))
}

fn no_site(prefix: &str) -> Error {
    Error::Model { what: prefix.to_string(), message: "the layer has no gate site".into() }
}

fn check_input(x: &Tensor, in_dim: usize, name: &str) -> Result<()> {
    if x.rank() != 2 || x.dim(D::Minus1)? != in_dim {
        return Err(Error::Input { op: name.to_string(), expected: in_dim, actual: x.dims().to_vec() });
    }
    Ok(())
}

/// `x wᵀ + b` with a shape check that names the layer (the fused [`ops::linear`]).
pub(crate) fn linear_forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>, name: &str) -> Result<Tensor> {
    check_input(x, w.dim(1)?, name)?;
    ops::linear(x, w, b, name)
}

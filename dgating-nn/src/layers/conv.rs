//! [`GatedConv2d`]: a 2-D convolution, optionally followed by batch normalization, whose output
//! channels may be the groups of a [`GateSet`].
//!
//! Where the gates go depends on what sets a channel's output (docs/METHOD.md, "Filters
//! through batch norm"):
//!
//! * **without batch norm** a channel's group is its filter `W[c, :, :, :]` and bias `b[c]`:
//!   `W_eff[c] = ω[c] · p_c`, `b_eff[c] = ω_b[c] · p_c` with `p = Πγ`;
//! * **with batch norm** the filter's scale is irrelevant (BN divides it out) and a zero
//!   filter still outputs `β`, so the group is BN's scale and shift: `γ_bn,eff[c] = ω_γ[c] p_c`,
//!   `β_bn,eff[c] = ω_β[c] p_c`. The filter (no bias: BN's shift replaces it) is ungated and
//!   goes with the channel when it is removed, as do the running statistics. A channel whose
//!   scale and shift are 0 outputs exactly 0 in both modes, so removing it is exact.
//!
//! The gate set may span other layers (a residual stage's stream is written by several
//! convolutions). Batch norm runs in training mode (batch statistics; running averages
//! updated with momentum 0.1 and the unbiased batch variance, as PyTorch) only through
//! [`GatedConv2d::forward`] with `training = true`.

use candle_core::{DType, Device, Tensor, Var};
use dgating_core::GroupMember;
use rand::Rng;
use rand::rngs::StdRng;

use crate::error::{Error, Result};
use crate::gates::GateSet;
use crate::ops::{self, Conv2dParams, GroupAxis};
use crate::params::{ParamRole, ParamStore};

/// `ε` of every batch norm.
pub const BN_EPS: f64 = 1e-5;
/// Weight of the new batch statistics in the running averages.
pub const BN_MOMENTUM: f64 = 0.1;

/// A batch norm's parameters and running statistics.
#[derive(Debug, Clone)]
struct BatchNorm {
    weight: Var,
    bias: Var,
    running_mean: Var,
    running_var: Var,
}

/// A convolution (+ batch norm) whose output channels may be gated; see the module docs.
/// `Clone` shares the variables.
#[derive(Debug, Clone)]
pub struct GatedConv2d {
    prefix: String,
    params: Conv2dParams,
    weight: Var,
    bias: Option<Var>,
    bn: Option<BatchNorm>,
    gate: Option<GateSet>,
}

/// Tensor keys of a [`GatedConv2d`] with prefix `p`: `p.weight`, `p.bias` (without batch
/// norm), `p.bn.{weight,bias,running_mean,running_var}`.
pub fn conv_key(prefix: &str, part: &str) -> String {
    format!("{prefix}.{part}")
}

impl GatedConv2d {
    /// A layer from its tensors (copied): `weight [O, C, k, k]`; either `bias [O]` (no batch
    /// norm) or the four batch-norm vectors `[O]` (`bn = [weight, bias, running_mean,
    /// running_var]`). With `gate`, the set must hold this layer's group slices (filter and
    /// bias, or BN scale and shift) under its keys.
    pub fn from_tensors(
        prefix: impl Into<String>,
        params: Conv2dParams,
        weight: &Tensor,
        bias: Option<&Tensor>,
        bn: Option<[&Tensor; 4]>,
        gate: Option<GateSet>,
    ) -> Result<Self> {
        let prefix = prefix.into();
        let (o, _, kh, kw) = weight.dims4().map_err(|_| Error::Model {
            what: prefix.clone(),
            message: format!("a conv weight is [out, in, kh, kw], got {:?}", weight.dims()),
        })?;
        if kh != kw {
            return Err(Error::Model { what: prefix, message: format!("square kernels only, got {kh}x{kw}") });
        }
        let own = |t: &Tensor| -> Result<Var> { Ok(Var::from_tensor(&t.copy()?)?) };
        let vec_of = |t: &Tensor, what: &str| -> Result<Var> {
            if t.dims() != [o] {
                return Err(Error::Shape { op: conv_key(&prefix, what), expected: vec![o], actual: t.dims().to_vec() });
            }
            own(t)
        };
        if bias.is_some() && bn.is_some() {
            return Err(Error::Model { what: prefix, message: "a conv followed by batch norm has no bias".into() });
        }
        let bias = bias.map(|b| vec_of(b, "bias")).transpose()?;
        let bn = match bn {
            Some([w, b, m, v]) => Some(BatchNorm {
                weight: vec_of(w, "bn.weight")?,
                bias: vec_of(b, "bn.bias")?,
                running_mean: vec_of(m, "bn.running_mean")?,
                running_var: vec_of(v, "bn.running_var")?,
            }),
            None => None,
        };
        let layer = Self { prefix, params, weight: own(weight)?, bias, bn, gate: None };
        match gate {
            Some(g) => layer.with_gate(g),
            None => Ok(layer),
        }
    }

    fn with_gate(mut self, gate: GateSet) -> Result<Self> {
        for m in self.group_members() {
            if !gate.layout().members().contains(&m) {
                return Err(Error::Model {
                    what: self.prefix.clone(),
                    message: format!("gate set `{}` does not hold `{}` as {m:?}", gate.dim(), m.name),
                });
            }
        }
        self.gate = Some(gate);
        Ok(self)
    }

    /// This layer's group slices: the filters and bias without batch norm, BN's scale and
    /// shift with it.
    pub fn group_members(&self) -> Vec<GroupMember> {
        let o = self.out_channels();
        match (&self.bn, &self.bias) {
            (Some(_), _) => ["bn.weight", "bn.bias"]
                .iter()
                .map(|p| GroupMember::new(conv_key(&self.prefix, p), [o], 0, 1))
                .collect(),
            (None, bias) => {
                let mut m = vec![GroupMember::new(conv_key(&self.prefix, "weight"), self.weight.dims(), 0, 1)];
                if bias.is_some() {
                    m.push(GroupMember::new(conv_key(&self.prefix, "bias"), [o], 0, 1));
                }
                m
            }
        }
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Stride and padding.
    pub fn params(&self) -> Conv2dParams {
        self.params
    }

    /// The gate set of the layer's channels, if any.
    pub fn gate_set(&self) -> Option<&GateSet> {
        self.gate.as_ref()
    }

    /// `relu?(bn?(conv(x)))` for `x [batch, C, H, W]`; batch norm in training mode (batch
    /// statistics, running averages updated) when `training`, else with the running
    /// statistics. A training batch with a single value per channel (batch 1 at 1×1) uses the
    /// running statistics, as there is no batch variance to take.
    pub fn forward(&self, x: &Tensor, training: bool, relu: bool) -> Result<Tensor> {
        let prod = self.gate.as_ref().map(GateSet::product).transpose()?.flatten();
        let scale = |t: &Tensor| -> Result<Tensor> {
            match &prod {
                Some(p) => Ok(t.mul(p)?),
                None => Ok(t.clone()),
            }
        };
        let w = self.weight.as_tensor();
        let Some(bn) = &self.bn else {
            let (w, b) = match &prod {
                Some(p) => {
                    let (o, k) = (w.dims()[0], w.elem_count() / w.dims()[0]);
                    let w = ops::scale_groups(&w.reshape((o, k))?, p, GroupAxis::Rows)?.reshape(w.shape())?;
                    (w, self.bias.as_ref().map(|b| scale(b.as_tensor())).transpose()?)
                }
                None => (w.clone(), self.bias.as_ref().map(|b| b.as_tensor().clone())),
            };
            let f = if relu { ops::conv2d_relu } else { ops::conv2d };
            return f(x, &w, b.as_ref(), self.params, &self.prefix);
        };
        let (gamma, beta) = (scale(bn.weight.as_tensor())?, scale(bn.bias.as_tensor())?);
        if !training {
            // Evaluation: the running statistics folded into the filters and a bias —
            // `s = γ/√(var + ε)`, `w' = s·w`, `b' = β − s·mean` — so that the conv, the batch
            // norm and the ReLU are one pass over the activations (the same function up to
            // rounding; a separate batch-norm pass cost a third of a compacted VGG's batch-64
            // inference).
            let var = bn.running_var.as_tensor().to_dtype(gamma.dtype())?;
            let s = gamma.div(&(var + BN_EPS)?.sqrt()?)?;
            let b = beta.sub(&s.mul(&bn.running_mean.as_tensor().to_dtype(gamma.dtype())?)?)?;
            let (o, k) = (w.dims()[0], w.elem_count() / w.dims()[0].max(1));
            let w = ops::scale_groups(&w.reshape((o, k))?, &s, GroupAxis::Rows)?.reshape(w.shape())?;
            let f = if relu { ops::conv2d_relu } else { ops::conv2d };
            return f(x, &w, Some(&b), self.params, &self.prefix);
        }
        let y = ops::conv2d(x, w, None, self.params, &self.prefix)?;
        let per_channel = y.elem_count() / self.out_channels().max(1);
        if training && per_channel >= 2 {
            let (y, stats) = ops::batch_norm_train(&y, &gamma, &beta, crate::layers::conv::BN_EPS, relu, &self.prefix)?;
            let n = stats.count as f64;
            let update = |v: &Var, batch: &[f64], factor: f64| -> Result<()> {
                let old = crate::tensor_util::to_f64_vec(v.as_tensor())?;
                let new: Vec<f64> =
                    old.iter().zip(batch).map(|(o, b)| (1.0 - BN_MOMENTUM) * o + BN_MOMENTUM * b * factor).collect();
                v.set(&crate::tensor_util::from_f64(new, v.dims(), v.dtype(), v.device())?)?;
                Ok(())
            };
            update(&bn.running_mean, &stats.mean, 1.0)?;
            update(&bn.running_var, &stats.var, n / (n - 1.0))?;
            return Ok(y);
        }
        ops::batch_norm_eval(
            &y,
            &gamma,
            &beta,
            bn.running_mean.as_tensor(),
            bn.running_var.as_tensor(),
            BN_EPS,
            relu,
            &self.prefix,
        )
    }

    /// Registers the variables: the group members as `ω` when the gate set is factorized, the
    /// rest (filters after batch norm, running statistics) as ungated — the running statistics
    /// never get a gradient, so the optimizer leaves them alone. Registers the gate matrix
    /// unless another layer of the set did.
    pub fn register(&self, store: &mut ParamStore) -> Result<()> {
        let role = |key: &str| self.gate.as_ref().map_or(ParamRole::Ungated, |g| g.role_of(key));
        let mut push = |part: &str, v: &Var| {
            let key = conv_key(&self.prefix, part);
            store.push(key.clone(), v.clone(), role(&key))
        };
        push("weight", &self.weight)?;
        if let Some(b) = &self.bias {
            push("bias", b)?;
        }
        if let Some(bn) = &self.bn {
            push("bn.weight", &bn.weight)?;
            push("bn.bias", &bn.bias)?;
            push("bn.running_mean", &bn.running_mean)?;
            push("bn.running_var", &bn.running_var)?;
        }
        if let Some(g) = &self.gate
            && store.get(g.key()).is_none()
        {
            g.register(store)?;
        }
        Ok(())
    }
}

/// Seeded fresh tensors of a conv layer: the filters from PyTorch's default
/// `U(−1/√fan_in, 1/√fan_in)` (fan_in = `C·k·k`), the bias likewise (no batch norm), or batch
/// norm at scale 1, shift 0, running mean 0 and variance 1. Returned as `(key, tensor)` pairs.
#[allow(clippy::too_many_arguments)]
pub fn init_conv(
    prefix: &str,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    batch_norm: bool,
    rng: &mut StdRng,
    dtype: DType,
    device: &Device,
) -> Result<Vec<(String, Tensor)>> {
    if in_channels == 0 || out_channels == 0 || kernel == 0 {
        return Err(Error::Model {
            what: prefix.into(),
            message: format!("a conv needs channels and kernel >= 1, got {in_channels} -> {out_channels}, k {kernel}"),
        });
    }
    let fan_in = in_channels * kernel * kernel;
    let bound = 1.0 / (fan_in as f64).sqrt();
    let mut uniform = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
    let w = Tensor::from_vec(uniform(out_channels * fan_in), (out_channels, in_channels, kernel, kernel), device)?
        .to_dtype(dtype)?;
    let mut out = vec![(conv_key(prefix, "weight"), w)];
    let full = |v: f64| Tensor::full(v, out_channels, device).and_then(|t| t.to_dtype(dtype));
    if batch_norm {
        out.push((conv_key(prefix, "bn.weight"), full(1.0)?));
        out.push((conv_key(prefix, "bn.bias"), full(0.0)?));
        out.push((conv_key(prefix, "bn.running_mean"), full(0.0)?));
        out.push((conv_key(prefix, "bn.running_var"), full(1.0)?));
    } else {
        let b = Tensor::from_vec(uniform(out_channels), out_channels, device)?.to_dtype(dtype)?;
        out.push((conv_key(prefix, "bias"), b));
    }
    Ok(out)
}

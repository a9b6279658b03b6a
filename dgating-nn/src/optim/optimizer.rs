//! [`Optimizer`]: SGD with momentum and AdamW, with per-parameter weight decay taken from the
//! parameter registry.
//!
//! # How weight decay enters (and what it means for D-Gating)
//!
//! Gate factors (`ω`, `γ`) get `wd = 2λ/D` ([`dgating_core::GateConfig::weight_decay`]),
//! ungated tensors their own `wd` (default 0).
//!
//! * **SGD** (the reference): *coupled* L2, `g ← g + wd·θ`, then `v ← μ v + g`,
//!   `θ ← θ − η v` (PyTorch's convention). This is gradient descent on the gated objective
//!   (docs/METHOD.md eq. G), so every equivalence holds: its stationary points are those of the
//!   penalized problem, and with `μ = 0` the imbalance obeys `Δ⁺ = (1 − 2ηλ/D)²Δ + O(η²)`.
//!   With momentum the fixed points are the same; the imbalance decays but not by that
//!   exact factor per step.
//! * **AdamW**: *decoupled* decay, `θ ← θ (1 − η·wd)` then the Adam step on the loss
//!   gradient alone. The decay is no longer preconditioned together with the loss, so AdamW
//!   does not minimize eq. G: its fixed points are not those of the `λ Σ||w_j||^(2/D)`
//!   problem and the imbalance law does not hold. Groups still shrink towards 0 where the
//!   loss does not hold them up, which is why it is offered for transformers; use SGD when
//!   the equivalence matters.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ops::fused_update::{adam_step, axpby2, fusable, second_moment};
use crate::params::ParamStore;

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerKind {
    /// SGD with (heavy-ball) momentum `μ ∈ [0, 1)` and coupled L2 weight decay.
    Sgd {
        /// `μ`.
        momentum: f64,
    },
    /// Adam with decoupled weight decay.
    AdamW {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator epsilon.
        eps: f64,
    },
}

impl OptimizerKind {
    /// AdamW with the usual `(0.9, 0.999, 1e-8)`.
    pub fn adamw() -> Self {
        Self::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }

    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        match *self {
            Self::Sgd { momentum } if !(0.0..1.0).contains(&momentum) => {
                bad(format!("SGD momentum must be in [0, 1), got {momentum}"))
            }
            Self::AdamW { beta1, beta2, .. } if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) => {
                bad(format!("AdamW betas must be in [0, 1), got beta1 = {beta1}, beta2 = {beta2}"))
            }
            Self::AdamW { eps, .. } if !(eps > 0.0 && eps.is_finite()) => {
                bad(format!("AdamW epsilon must be finite and > 0, got {eps}"))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug)]
struct Slot {
    name: String,
    var: Var,
    weight_decay: f64,
    first: Option<Tensor>,
    second: Option<Tensor>,
}

/// An optimizer over every variable of a [`ParamStore`].
#[derive(Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    slots: Vec<Slot>,
    steps: usize,
    nonfinite: Option<String>,
}

impl Optimizer {
    /// `gate_weight_decay` applies to gate factors (use `GateConfig::weight_decay`, or 0 for
    /// modes without gates), `ungated_weight_decay` to the rest. Both must be finite, `>= 0`.
    pub fn new(
        kind: OptimizerKind,
        params: &ParamStore,
        gate_weight_decay: f64,
        ungated_weight_decay: f64,
    ) -> Result<Self> {
        kind.check()?;
        for wd in [gate_weight_decay, ungated_weight_decay] {
            if !wd.is_finite() || wd < 0.0 {
                return Err(Error::Config(format!("weight decay must be finite and >= 0, got {wd}")));
            }
        }
        let slots = params
            .iter()
            .map(|p| Slot {
                name: p.name.clone(),
                var: p.var.clone(),
                weight_decay: if p.role.is_gate_factor() { gate_weight_decay } else { ungated_weight_decay },
                first: None,
                second: None,
            })
            .collect();
        Ok(Self { kind, slots, steps: 0, nonfinite: None })
    }

    /// The first parameter that the last step left NaN or infinite, if any (checked in the
    /// update's own pass on the fused path; by a scan on the reference path).
    pub fn nonfinite_param(&self) -> Option<&str> {
        self.nonfinite.as_deref()
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Applies one update with learning rate `lr`. Variables without a gradient are left
    /// untouched (no decay either). On CPU (f32/f64) the update runs in place, one pass per
    /// buffer ([`crate::ops::fused_update`]); elsewhere it falls back to
    /// [`Optimizer::step_reference`], which computes the same update with tensor ops.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        if !self.slots.iter().all(|s| fusable(s.var.as_tensor())) {
            return self.step_reference(grads, lr);
        }
        self.steps += 1;
        self.nonfinite = None;
        let t = self.steps as i32;
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else { continue };
            let theta = slot.var.as_tensor();
            let wd = slot.weight_decay;
            let finite;
            match self.kind {
                OptimizerKind::Sgd { momentum } if momentum > 0.0 => {
                    let v = match &slot.first {
                        Some(v) => v.clone(),
                        None => theta.zeros_like()?,
                    };
                    axpby2(&v, momentum, g, 1.0, theta, wd)?; // v ← μ v + g + wd θ
                    finite = axpby2(theta, 1.0, &v, -lr, &v, 0.0)?; // θ ← θ − lr v
                    slot.first = Some(v);
                }
                OptimizerKind::Sgd { .. } => finite = axpby2(theta, 1.0 - lr * wd, g, -lr, g, 0.0)?,
                OptimizerKind::AdamW { beta1, beta2, eps } => {
                    let m = match &slot.first {
                        Some(m) => m.clone(),
                        None => theta.zeros_like()?,
                    };
                    let v = match &slot.second {
                        Some(v) => v.clone(),
                        None => theta.zeros_like()?,
                    };
                    axpby2(&m, beta1, g, 1.0 - beta1, g, 0.0)?;
                    second_moment(&v, g, beta2)?;
                    finite = adam_step(theta, &m, &v, lr, wd, 1.0 - beta1.powi(t), 1.0 - beta2.powi(t), eps)?;
                    slot.first = Some(m);
                    slot.second = Some(v);
                }
            }
            if !finite && self.nonfinite.is_none() {
                self.nonfinite = Some(slot.name.clone());
            }
        }
        Ok(())
    }

    /// The same update as [`Optimizer::step`] written with tensor ops (allocating): the
    /// reference the fused path is tested against, and the path for other devices.
    pub fn step_reference(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        self.nonfinite = None;
        let t = self.steps as i32;
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else { continue };
            let theta = slot.var.as_tensor();
            match self.kind {
                OptimizerKind::Sgd { momentum } => {
                    let g = if slot.weight_decay > 0.0 { (g + (theta * slot.weight_decay)?)? } else { g.clone() };
                    let v = match (&slot.first, momentum > 0.0) {
                        (Some(v), true) => ((v * momentum)? + g)?,
                        _ => g,
                    };
                    slot.var.set(&(theta - (&v * lr)?)?)?;
                    if momentum > 0.0 {
                        slot.first = Some(v);
                    }
                }
                OptimizerKind::AdamW { beta1, beta2, eps } => {
                    let m = match &slot.first {
                        Some(m) => ((m * beta1)? + (g * (1.0 - beta1))?)?,
                        None => (g * (1.0 - beta1))?,
                    };
                    let v = match &slot.second {
                        Some(v) => ((v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?,
                        None => (g.sqr()? * (1.0 - beta2))?,
                    };
                    let m_hat = (&m / (1.0 - beta1.powi(t)))?;
                    let v_hat = (&v / (1.0 - beta2.powi(t)))?;
                    let update = m_hat.div(&(v_hat.sqrt()? + eps)?)?;
                    let decayed = (theta * (1.0 - lr * slot.weight_decay))?;
                    slot.var.set(&(decayed - (update * lr)?)?)?;
                    slot.first = Some(m);
                    slot.second = Some(v);
                }
            }
            let worst = slot.var.as_tensor().to_dtype(candle_core::DType::F64)?.abs()?.max_all()?;
            if !worst.to_scalar::<f64>()?.is_finite() && self.nonfinite.is_none() {
                self.nonfinite = Some(slot.name.clone());
            }
        }
        Ok(())
    }

    /// The optimizer state as named tensors (`{param}.m`, `{param}.v`) for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![];
        for s in &self.slots {
            if let Some(m) = &s.first {
                out.push((format!("{}.m", s.name), m.clone()));
            }
            if let Some(v) = &s.second {
                out.push((format!("{}.v", s.name), v.clone()));
            }
        }
        out
    }

    /// Number of optimizer-state elements (for memory reports).
    pub fn state_elements(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.first.as_ref().map_or(0, Tensor::elem_count) + s.second.as_ref().map_or(0, Tensor::elem_count))
            .sum()
    }

    /// Restores state written by [`Optimizer::state_tensors`] after `steps` steps; every
    /// tensor must match its parameter's shape, and unknown names are errors.
    pub fn load_state(&mut self, mut tensors: HashMap<String, Tensor>, steps: usize) -> Result<()> {
        for s in &mut self.slots {
            for (suffix, dst) in [("m", &mut s.first), ("v", &mut s.second)] {
                if let Some(t) = tensors.remove(&format!("{}.{suffix}", s.name)) {
                    if t.dims() != s.var.dims() {
                        return Err(Error::Shape {
                            op: format!("optimizer state `{}.{suffix}`", s.name),
                            expected: s.var.dims().to_vec(),
                            actual: t.dims().to_vec(),
                        });
                    }
                    // A private copy: the fused updates write these buffers in place.
                    *dst = Some(t.to_dtype(s.var.dtype())?.copy()?);
                }
            }
        }
        if let Some(name) = tensors.keys().next() {
            return Err(Error::Model { what: "optimizer state".into(), message: format!("unknown tensor `{name}`") });
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamRole;
    use candle_core::{DType, Device, Var};

    /// Fused and tensor-op updates agree over several steps: f64 to 1e-12, f32 to 1e-6
    /// (relative), for SGD with and without momentum and AdamW, with and without decay.
    #[test]
    fn fused_updates_match_reference() {
        for dtype in [DType::F64, DType::F32] {
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-6 };
            for kind in
                [OptimizerKind::Sgd { momentum: 0.0 }, OptimizerKind::Sgd { momentum: 0.9 }, OptimizerKind::adamw()]
            {
                let make = || {
                    let dev = Device::Cpu;
                    let mut store = ParamStore::new();
                    let w: Vec<f64> = (0..12).map(|i| (i as f64 * 0.7).sin()).collect();
                    let b: Vec<f64> = (0..3).map(|i| (i as f64 * 1.3).cos()).collect();
                    let w =
                        Var::from_tensor(&Tensor::from_vec(w, (3, 4), &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
                    let b = Var::from_tensor(&Tensor::from_vec(b, 3, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
                    store.push("w", w.clone(), ParamRole::Omega).unwrap();
                    store.push("b", b.clone(), ParamRole::Ungated).unwrap();
                    (store, w, b)
                };
                let (sa, wa, ba) = make();
                let (sb, wb, bb) = make();
                let mut fused = Optimizer::new(kind, &sa, 0.1, 0.01).unwrap();
                let mut reference = Optimizer::new(kind, &sb, 0.1, 0.01).unwrap();
                let x =
                    Tensor::from_vec(vec![0.5f64, -1.0, 2.0, 0.25], 4, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
                let loss = |w: &Var, b: &Var| {
                    let y = w.as_tensor().matmul(&x.unsqueeze(1).unwrap()).unwrap().squeeze(1).unwrap();
                    (y + b.as_tensor()).unwrap().sqr().unwrap().sum_all().unwrap()
                };
                for _ in 0..5 {
                    fused.step(&loss(&wa, &ba).backward().unwrap(), 0.05).unwrap();
                    reference.step_reference(&loss(&wb, &bb).backward().unwrap(), 0.05).unwrap();
                }
                let flat = |v: &Var| {
                    v.as_tensor().flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
                };
                for (a, b) in flat(&wa).iter().chain(&flat(&ba)).zip(flat(&wb).iter().chain(&flat(&bb))) {
                    assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{kind:?} {dtype:?}: {a} vs {b}");
                }
                assert_eq!(fused.state_elements(), reference.state_elements());
            }
        }
    }
}

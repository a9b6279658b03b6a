//! [`ParamStore`]: every trainable variable of a model, with the role that decides its
//! weight decay, so users never hand-split parameter lists.

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a trainable variable is, which fixes how it is decayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamRole {
    /// A primary factor `ω` of a gate set: weight decay `2λ/D`.
    Omega,
    /// A `[J, D-1]` gate matrix `γ`: weight decay `2λ/D`.
    Gate,
    /// An ungated weight or bias: its own weight decay (default 0).
    Ungated,
}

impl ParamRole {
    /// Whether the variable is a D-Gating factor (`ω` or `γ`).
    pub fn is_gate_factor(self) -> bool {
        matches!(self, Self::Omega | Self::Gate)
    }
}

/// One named trainable variable.
#[derive(Debug, Clone)]
pub struct Param {
    /// Checkpoint key, e.g. `layers.0.weight`.
    pub name: String,
    /// The variable.
    pub var: Var,
    /// Its role.
    pub role: ParamRole,
}

/// The ordered, uniquely named trainable variables of a model.
#[derive(Debug, Clone, Default)]
pub struct ParamStore {
    params: Vec<Param>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a variable; names must be unique.
    pub fn push(&mut self, name: impl Into<String>, var: Var, role: ParamRole) -> Result<()> {
        let name = name.into();
        if self.params.iter().any(|p| p.name == name) {
            return Err(Error::Model { what: "parameters".into(), message: format!("duplicate name `{name}`") });
        }
        self.params.push(Param { name, var, role });
        Ok(())
    }

    /// All parameters in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.params.iter()
    }

    /// Number of parameters (variables, not scalars).
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// `(name, tensor)` pairs, e.g. to save a checkpoint.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.params.iter().map(|p| (p.name.clone(), p.var.as_tensor().clone())).collect()
    }
}

//! [`Task`]: classification or regression, and how it was chosen for a target column.
//!
//! The task decides the loss, the output width and how labels are read, so guessing it wrong
//! trains a model that is silently useless (a 71-class classifier for an `age` column). The
//! rule of `auto` is deliberately narrow and always reported ([`TaskChoice::reason`]); the
//! user can override it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What is predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// One of a fixed set of named classes (cross-entropy loss).
    Classification,
    /// A real number (loss `½·MSE`).
    Regression,
}

/// Names accepted by [`Task::parse`].
pub const TASKS: &[&str] = &["auto", "classification", "regression"];

/// Under `auto`, a column of integers is a classification target only with at most this many
/// distinct values; more distinct integers (ages, counts, years) are a regression target.
pub const MAX_AUTO_CLASSES: usize = 20;

/// Classification targets may have at most this many classes.
pub const MAX_CLASSES: usize = 1000;

impl Task {
    /// Parses `auto` (`None`), `classification` or `regression`.
    pub fn parse(name: &str) -> Result<Option<Self>> {
        match name {
            "auto" => Ok(None),
            "classification" => Ok(Some(Self::Classification)),
            "regression" => Ok(Some(Self::Regression)),
            other => Err(Error::UnknownName { kind: "task", name: other.into(), known: TASKS.join(", ") }),
        }
    }

    /// `classification` / `regression`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Classification => "classification",
            Self::Regression => "regression",
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The task a data set was read as, and why (printed by `dgating train`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskChoice {
    /// The task.
    pub task: Task,
    /// One sentence: what the target column holds and which rule chose the task (or that the
    /// user asked for it).
    pub reason: String,
}

/// `["0", "1", .., "k-1"]`: the class names of integer-coded labels.
pub fn class_names_numbered(k: usize) -> Vec<String> {
    (0..k).map(|i| i.to_string()).collect()
}

/// The canonical name of a numeric label: `3`, `-1`, `2.5` (so `1`, `1.0` and `1e0` are one
/// class).
pub fn number_name(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

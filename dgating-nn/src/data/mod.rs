//! Data sets: the in-memory [`Dataset`], loaders for CSV and IDX files, the built-in data sets,
//! splits, standardization and mini-batch orders.
//!
//! Everything here is plain `Vec<f32>`: turning a batch into a tensor is the trainer's job, so
//! loading and splitting can be tested (and fuzzed) without a device.
//!
//! ```
//! use dgating_nn::data::{self, Standardizer};
//!
//! let wine = data::builtin("wine")?;
//! let (mut train, mut test) = wine.shuffled_split(0.25, 42)?;
//! let scaler = Standardizer::fit(&train)?; // training statistics only
//! scaler.apply(&mut train)?;
//! scaler.apply(&mut test)?;
//! assert_eq!(train.len() + test.len(), 178);
//! # Ok::<(), dgating_nn::Error>(())
//! ```

pub mod align;
pub mod augment;
pub mod batch;
pub mod builtin;
pub mod cifar;
pub mod csv;
pub mod idx;
pub mod source;
pub mod split;
pub mod standardize;
pub mod task;

use std::fmt;

pub use augment::Augment;
pub use batch::{BatchIter, batch_indices};
pub use builtin::{BUILTIN, builtin, synthetic};
pub use csv::{TableOptions, load_csv, load_features, load_table, parse_csv, parse_table, table_delimiter};
pub use idx::{load_idx, parse_idx};
pub use source::{load, load_idx_test, load_with};
pub use standardize::Standardizer;
pub use task::{Task, TaskChoice, class_names_numbered};

use crate::error::{Error, Result};

/// What is predicted for each sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Class ids in `0..num_classes` (classification).
    Classes {
        /// One class id per sample.
        labels: Vec<u32>,
        /// Number of classes; classes need not all occur (a split may miss one).
        num_classes: usize,
        /// The name of each class id (`names[k]` is class `k`): text labels as written, numbers
        /// in canonical form (`"0"`, `"-1"`, `"2.5"`). Models record them, so that another
        /// file's labels are mapped by name, never by position.
        names: Vec<String>,
    },
    /// Real values (regression).
    Values(Vec<f32>),
}

impl Targets {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Self::Classes { labels, .. } => labels.len(),
            Self::Values(v) => v.len(),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of classes, `None` for regression.
    pub fn num_classes(&self) -> Option<usize> {
        match self {
            Self::Classes { num_classes, .. } => Some(*num_classes),
            Self::Values(_) => None,
        }
    }

    /// The class names (`names[k]` is class `k`), `None` for regression.
    pub fn class_names(&self) -> Option<&[String]> {
        match self {
            Self::Classes { names, .. } => Some(names),
            Self::Values(_) => None,
        }
    }

    /// Classification or regression.
    pub fn task(&self) -> Task {
        match self {
            Self::Classes { .. } => Task::Classification,
            Self::Values(_) => Task::Regression,
        }
    }

    /// The class ids, `None` for regression.
    pub fn labels(&self) -> Option<&[u32]> {
        match self {
            Self::Classes { labels, .. } => Some(labels),
            Self::Values(_) => None,
        }
    }

    /// The targets of `indices`, in that order (indices must be `< len`).
    fn select(&self, indices: &[usize]) -> Self {
        match self {
            Self::Classes { labels, num_classes, names } => Self::Classes {
                labels: indices.iter().map(|&i| labels[i]).collect(),
                num_classes: *num_classes,
                names: names.clone(),
            },
            Self::Values(v) => Self::Values(indices.iter().map(|&i| v[i]).collect()),
        }
    }
}

/// `n` samples of `num_features` features with their targets. Built through [`Dataset::new`],
/// which checks shapes and values once so that layers and the trainer can trust them; the
/// fields are public for reading (mutating them can break those invariants).
#[derive(Clone, PartialEq)]
pub struct Dataset {
    /// Built-in name or source path; used in messages and reports.
    pub name: String,
    /// Row-major `[n, num_features]`, all finite.
    pub features: Vec<f32>,
    /// Features per sample (`>= 1`).
    pub num_features: usize,
    /// One name per feature (CSV header, `px0..` for images, `x0..` for synthetic data).
    pub feature_names: Vec<String>,
    /// One target per sample.
    pub targets: Targets,
}

/// A summary: the feature buffer can hold millions of values.
impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("name", &self.name)
            .field("len", &self.len())
            .field("num_features", &self.num_features)
            .field("num_classes", &self.num_classes())
            .finish_non_exhaustive()
    }
}

impl Dataset {
    /// Checks that `features` is `[targets.len(), num_features]`, that there is one name per
    /// feature, that every feature (and regression target) is finite and that every label is
    /// `< num_classes`. Errors are [`Error::Data`] naming `name` and the first bad sample.
    pub fn new(
        name: impl Into<String>,
        features: Vec<f32>,
        num_features: usize,
        feature_names: Vec<String>,
        targets: Targets,
    ) -> Result<Self> {
        let name = name.into();
        let err = |msg: String| Err(Error::data(name.clone(), msg));
        let n = targets.len();
        if num_features == 0 {
            return err("a data set needs at least one feature".into());
        }
        if feature_names.len() != num_features {
            return err(format!("{} feature names for {num_features} features", feature_names.len()));
        }
        if n.checked_mul(num_features) != Some(features.len()) {
            return err(format!(
                "{} feature values do not form [{n} samples, {num_features} features]",
                features.len()
            ));
        }
        if let Some(k) = features.iter().position(|v| !v.is_finite()) {
            let (i, j) = (k / num_features, k % num_features);
            return err(format!("sample {i}, feature `{}`: non-finite value {}", feature_names[j], features[k]));
        }
        match &targets {
            Targets::Classes { labels, num_classes, names } => {
                if *num_classes == 0 {
                    return err("a classification data set needs at least one class".into());
                }
                if names.len() != *num_classes {
                    return err(format!("{} class names for {num_classes} classes", names.len()));
                }
                if let Some(k) = (1..names.len()).find(|&k| names[..k].contains(&names[k])) {
                    return err(format!("class name `{}` appears twice", names[k]));
                }
                if let Some(i) = labels.iter().position(|&l| l as usize >= *num_classes) {
                    return err(format!("sample {i}: label {} is not below num_classes {num_classes}", labels[i]));
                }
            }
            Targets::Values(v) => {
                if let Some(i) = v.iter().position(|t| !t.is_finite()) {
                    return err(format!("sample {i}: non-finite target {}", v[i]));
                }
            }
        }
        Ok(Self { name, features, num_features, feature_names, targets })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The number of classes, `None` for regression.
    pub fn num_classes(&self) -> Option<usize> {
        self.targets.num_classes()
    }

    /// Samples per class (`None` for regression): for reports and stratification checks.
    pub fn class_counts(&self) -> Option<Vec<usize>> {
        let Targets::Classes { labels, num_classes, .. } = &self.targets else { return None };
        let mut counts = vec![0; *num_classes];
        for &l in labels {
            counts[l as usize] += 1;
        }
        Some(counts)
    }

    /// The features of sample `i`.
    ///
    /// # Panics
    /// If `i >= len()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.num_features..(i + 1) * self.num_features]
    }

    /// The samples `indices`, in that order (repeats allowed), with the same name, feature
    /// names and number of classes.
    ///
    /// # Panics
    /// If an index is `>= len()`, like slice indexing: indices come from the caller's own
    /// split or batch logic, not from input data.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(indices.len() * self.num_features);
        for &i in indices {
            features.extend_from_slice(self.row(i));
        }
        Dataset {
            name: self.name.clone(),
            features,
            num_features: self.num_features,
            feature_names: self.feature_names.clone(),
            targets: self.targets.select(indices),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|j| format!("f{j}")).collect()
    }

    fn tiny() -> Dataset {
        let targets = Targets::Classes { labels: vec![0, 1, 2], num_classes: 3, names: class_names_numbered(3) };
        Dataset::new("tiny", vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, names(2), targets).unwrap()
    }

    #[test]
    fn new_accepts_consistent_data_and_rows_index_it() {
        let d = tiny();
        assert_eq!((d.len(), d.num_classes(), d.is_empty()), (3, Some(3), false));
        assert_eq!(d.row(1), &[3.0, 4.0]);
        assert_eq!(d.class_counts(), Some(vec![1, 1, 1]));
        assert!(format!("{d:?}").contains("len: 3"));
    }

    #[test]
    fn new_rejects_inconsistent_data() {
        let cls = |labels: Vec<u32>, k| Targets::Classes { labels, num_classes: k, names: class_names_numbered(k) };
        let bad = [
            Dataset::new("d", vec![1.0; 5], 2, names(2), cls(vec![0, 0, 0], 1)),
            Dataset::new("d", vec![1.0; 6], 2, names(3), cls(vec![0, 0, 0], 1)),
            Dataset::new("d", vec![], 0, names(0), cls(vec![], 1)),
            Dataset::new("d", vec![1.0, f32::NAN], 2, names(2), cls(vec![0], 1)),
            Dataset::new("d", vec![1.0; 2], 2, names(2), cls(vec![3], 3)),
            Dataset::new("d", vec![1.0; 2], 2, names(2), cls(vec![0], 0)),
            Dataset::new("d", vec![1.0; 2], 2, names(2), Targets::Values(vec![f32::INFINITY])),
        ];
        for r in bad {
            assert!(matches!(r, Err(Error::Data { .. })), "{r:?}");
        }
    }

    #[test]
    fn subset_picks_rows_and_targets_in_order() {
        let s = tiny().subset(&[2, 0, 2]);
        assert_eq!(s.features, vec![5.0, 6.0, 1.0, 2.0, 5.0, 6.0]);
        assert_eq!(
            s.targets,
            Targets::Classes { labels: vec![2, 0, 2], num_classes: 3, names: class_names_numbered(3) }
        );
        let empty = tiny().subset(&[]);
        assert!(empty.is_empty());
        assert_eq!(empty.num_classes(), Some(3));
    }
}

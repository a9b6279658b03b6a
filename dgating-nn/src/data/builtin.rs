//! The built-in data sets, compiled into the library so that examples, tests and the CLI work
//! with no files or network at run time (sources and licenses: `dgating-nn/data/README.md`).

use dgating_core::{GroupSparseSpec, Loss};

use super::{Dataset, Targets, parse_csv, parse_idx};
use crate::error::{Error, Result};

/// Names accepted by [`builtin`] (and by [`load`](super::load)).
pub const BUILTIN: &[&str] = &["wine", "breast-cancer", "mnist-10k", "fashion-mnist-10k", "synthetic"];

const WINE_CSV: &[u8] = include_bytes!("../../data/wine.csv");
const BREAST_CANCER_CSV: &[u8] = include_bytes!("../../data/breast_cancer.csv");
const MNIST_IMAGES: &[u8] = include_bytes!("../../data/mnist-10k/images-idx3-ubyte.gz");
const MNIST_LABELS: &[u8] = include_bytes!("../../data/mnist-10k/labels-idx1-ubyte.gz");
const FASHION_IMAGES: &[u8] = include_bytes!("../../data/fashion-mnist-10k/images-idx3-ubyte.gz");
const FASHION_LABELS: &[u8] = include_bytes!("../../data/fashion-mnist-10k/labels-idx1-ubyte.gz");

/// The spec of the built-in `synthetic` regression: 600 samples, 20 single-feature groups of
/// which 5 are active.
pub const SYNTHETIC_SPEC: GroupSparseSpec = GroupSparseSpec {
    samples: 600,
    groups: 20,
    group_size: 1,
    active_groups: 5,
    noise_std: 0.1,
    loss: Loss::Squared,
    seed: 7,
};

/// A built-in data set by name:
///
/// * `wine`: 178 × 13, 3 classes (59/71/48), rows sorted by class: use
///   [`Dataset::shuffled_split`];
/// * `breast-cancer`: 569 × 30, 2 classes (0 = malignant 212, 1 = benign 357);
/// * `mnist-10k`: 10 000 × 784 pixels in `[0, 1]`, 10 classes, interleaved so that
///   [`Dataset::split_at`]`(8000)` is stratified;
/// * `fashion-mnist-10k`: the first 10 000 images of Fashion-MNIST's training set (28×28 grey,
///   pixels in `[0, 1]`, 10 classes), interleaved the same way;
/// * `synthetic`: [`SYNTHETIC_SPEC`] through [`synthetic`], a regression with 5 of 20 features
///   active.
///
/// Any other name is an [`Error::UnknownName`] listing these.
pub fn builtin(name: &str) -> Result<Dataset> {
    match name {
        "wine" => parse_csv("wine", WINE_CSV, "target"),
        "breast-cancer" => parse_csv("breast-cancer", BREAST_CANCER_CSV, "target"),
        "mnist-10k" => parse_idx("mnist-10k", MNIST_IMAGES, MNIST_LABELS),
        "fashion-mnist-10k" => parse_idx("fashion-mnist-10k", FASHION_IMAGES, FASHION_LABELS),
        "synthetic" => synthetic(&SYNTHETIC_SPEC).map(|(d, _)| d),
        _ => Err(Error::UnknownName { kind: "data set", name: name.to_string(), known: BUILTIN.join(", ") }),
    }
}

/// A `dgating-core` group-sparse problem as a [`Dataset`] named `synthetic` (features `x0..`
/// in `f32`), with the true support per feature group (`group_size` consecutive features).
/// Squared loss gives [`Targets::Values`]; logistic loss gives two classes.
pub fn synthetic(spec: &GroupSparseSpec) -> Result<(Dataset, Vec<bool>)> {
    let data = spec.generate()?;
    let problem = &data.problem;
    let p = problem.p();
    let features = problem.x().iter().map(|&v| v as f32).collect();
    let feature_names = (0..p).map(|k| format!("x{k}")).collect();
    let targets = match spec.loss {
        Loss::Squared => Targets::Values(problem.y().iter().map(|&v| v as f32).collect()),
        Loss::Logistic => {
            let labels = problem.y().iter().map(|&v| u32::from(v > 0.5)).collect();
            Targets::Classes { labels, num_classes: 2, names: super::class_names_numbered(2) }
        }
    };
    Ok((Dataset::new("synthetic", features, p, feature_names, targets)?, data.support))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wine_is_178_by_13_with_three_classes() {
        let d = builtin("wine").unwrap();
        assert_eq!((d.len(), d.num_features, d.num_classes()), (178, 13, Some(3)));
        assert_eq!(d.class_counts(), Some(vec![59, 71, 48]));
        assert_eq!(d.feature_names[0], "alcohol");
        assert_eq!(d.row(0)[0], 14.23);
        assert_eq!(d.name, "wine");
    }

    #[test]
    fn breast_cancer_is_569_by_30_with_two_classes() {
        let d = builtin("breast-cancer").unwrap();
        assert_eq!((d.len(), d.num_features, d.num_classes()), (569, 30, Some(2)));
        assert_eq!(d.class_counts(), Some(vec![212, 357]));
        assert_eq!(d.feature_names[29], "worst_fractal_dimension");
    }

    #[test]
    fn mnist_10k_is_10000_by_784_in_unit_range() {
        let d = builtin("mnist-10k").unwrap();
        assert_eq!((d.len(), d.num_features, d.num_classes()), (10_000, 784, Some(10)));
        let (min, max) = d.features.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert_eq!((min, max), (0.0, 1.0));
        assert_eq!(d.class_counts().unwrap(), vec![1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]);
        assert_eq!(&d.targets.labels().unwrap()[..5], &[1, 7, 3, 6, 0]);
        let (_, test) = d.split_at(8000).unwrap();
        assert_eq!(test.class_counts().unwrap(), vec![200, 225, 198, 206, 196, 173, 203, 214, 189, 196]);
    }

    #[test]
    fn synthetic_is_a_regression_with_its_support() {
        let d = builtin("synthetic").unwrap();
        assert_eq!((d.len(), d.num_features, d.num_classes()), (600, 20, None));
        assert_eq!(d.feature_names[19], "x19");
        let (again, support) = synthetic(&SYNTHETIC_SPEC).unwrap();
        assert_eq!(again, d);
        assert_eq!(support.len(), 20);
        assert_eq!(support.iter().filter(|s| **s).count(), 5);
        let logistic = GroupSparseSpec { loss: Loss::Logistic, ..SYNTHETIC_SPEC };
        assert_eq!(synthetic(&logistic).unwrap().0.num_classes(), Some(2));
        let bad = GroupSparseSpec { active_groups: 21, ..SYNTHETIC_SPEC };
        assert!(matches!(synthetic(&bad), Err(Error::Core(_))));
    }

    #[test]
    fn fashion_mnist_10k_is_the_first_10k_training_images_interleaved() {
        let d = builtin("fashion-mnist-10k").unwrap();
        assert_eq!((d.len(), d.num_features, d.num_classes()), (10_000, 784, Some(10)));
        assert_eq!(d.class_counts(), Some(vec![942, 1027, 1016, 1019, 974, 989, 1021, 1022, 990, 1000]));
        assert!(d.features.iter().all(|&p| (0.0..=1.0).contains(&p)));
        let (train, test) = d.split_at(8000).unwrap();
        let share = |c: &[usize], k: usize| c[k] as f64 / 10_000.0;
        let (ct, cv) = (train.class_counts().unwrap(), test.class_counts().unwrap());
        for k in 0..10 {
            assert!((ct[k] as f64 / 8000.0 - share(&d.class_counts().unwrap(), k)).abs() < 0.002, "{k}: {ct:?}");
            assert!(cv[k] > 180, "{cv:?}");
        }
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        match builtin("iris") {
            Err(Error::UnknownName { name, known, .. }) => {
                assert_eq!(name, "iris");
                assert_eq!(known, "wine, breast-cancer, mnist-10k, fashion-mnist-10k, synthetic");
            }
            other => panic!("{other:?}"),
        }
    }
}

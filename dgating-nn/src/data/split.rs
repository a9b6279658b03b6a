//! Train/test splits of a [`Dataset`]: contiguous ([`Dataset::split_at`]) and seeded,
//! stratified ([`Dataset::shuffled_split`]).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::{Dataset, Targets};
use crate::error::{Error, Result};

impl Dataset {
    /// The first `n_first` samples and the rest, in order. For data stored pre-interleaved
    /// (the built-in `mnist-10k`: first 8000 / last 2000 is stratified); sorted files such as
    /// `wine` need [`Dataset::shuffled_split`].
    pub fn split_at(&self, n_first: usize) -> Result<(Dataset, Dataset)> {
        let n = self.len();
        if n_first > n {
            return Err(Error::Config(format!("{}: cannot split off {n_first} of {n} samples", self.name)));
        }
        let first: Vec<usize> = (0..n_first).collect();
        let rest: Vec<usize> = (n_first..n).collect();
        Ok((self.subset(&first), self.subset(&rest)))
    }

    /// A seeded random `(train, test)` split with `round(n · test_fraction)` test samples.
    ///
    /// Classification data is stratified: each class is shuffled and split on its own, and
    /// gets `floor` or `ceil` of `n_c · test_fraction` test samples (largest remainders get
    /// the ceiling, so the total is exact), so class proportions hold to ±1 per class. Both
    /// parts are then shuffled, so a file sorted by class gives mixed parts. The same seed
    /// gives the same split ([`StdRng`]).
    ///
    /// Errors ([`Error::Config`]) if `test_fraction` is not in `(0, 1)` or a part would be
    /// empty.
    pub fn shuffled_split(&self, test_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        let (train, test) = split_indices(&self.name, &self.targets, test_fraction, seed)?;
        Ok((self.subset(&train), self.subset(&test)))
    }
}

/// The `(train, test)` indices of [`Dataset::shuffled_split`].
fn split_indices(name: &str, targets: &Targets, test_fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(Error::Config(format!("{name}: test fraction {test_fraction} is not in (0, 1)")));
    }
    let n = targets.len();
    let mut strata: Vec<Vec<usize>> = match targets {
        Targets::Classes { labels, num_classes, .. } => {
            let mut s = vec![Vec::new(); *num_classes];
            for (i, &l) in labels.iter().enumerate() {
                s[l as usize].push(i);
            }
            s
        }
        Targets::Values(_) => vec![(0..n).collect()],
    };
    let mut rng = StdRng::seed_from_u64(seed);
    for s in &mut strata {
        s.shuffle(&mut rng);
    }
    let counts = stratum_test_counts(&strata.iter().map(Vec::len).collect::<Vec<_>>(), test_fraction);
    let (mut train, mut test) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (s, &k) in strata.iter().zip(&counts) {
        test.extend_from_slice(&s[..k]);
        train.extend_from_slice(&s[k..]);
    }
    if train.is_empty() || test.is_empty() {
        return Err(Error::Config(format!(
            "{name}: a test fraction of {test_fraction} of {n} samples leaves {} train and {} test samples",
            train.len(),
            test.len()
        )));
    }
    train.shuffle(&mut rng);
    test.shuffle(&mut rng);
    Ok((train, test))
}

/// Test samples per stratum: `floor(n_c · f)`, plus one for the strata with the largest
/// fractional parts until the total is `round(n · f)` (largest-remainder apportionment).
fn stratum_test_counts(sizes: &[usize], f: f64) -> Vec<usize> {
    let exact: Vec<f64> = sizes.iter().map(|&s| s as f64 * f).collect();
    let mut counts: Vec<usize> = exact.iter().zip(sizes).map(|(e, &s)| (e.floor() as usize).min(s)).collect();
    let total = (sizes.iter().sum::<usize>() as f64 * f).round() as usize;
    let mut missing = total.saturating_sub(counts.iter().sum());
    let frac = |c: usize| exact[c] - exact[c].floor();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| frac(b).total_cmp(&frac(a)).then(a.cmp(&b)));
    for c in order {
        if missing == 0 {
            break;
        }
        if frac(c) > 0.0 && counts[c] < sizes[c] {
            counts[c] += 1;
            missing -= 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3 classes of 10, 7 and 3 samples, sorted by class (like `wine.csv`); feature = index.
    fn sorted_classes() -> Dataset {
        let labels: Vec<u32> = [(0, 10), (1, 7), (2, 3)].iter().flat_map(|&(c, k)| vec![c; k]).collect();
        let n = labels.len();
        let features = (0..n).map(|i| i as f32).collect();
        Dataset::new(
            "sorted",
            features,
            1,
            vec!["i".into()],
            Targets::Classes { labels, num_classes: 3, names: crate::data::class_names_numbered(3) },
        )
        .unwrap()
    }

    fn ids(d: &Dataset) -> Vec<usize> {
        d.features.iter().map(|&v| v as usize).collect()
    }

    #[test]
    fn split_at_is_contiguous_and_checks_its_bound() {
        let (a, b) = sorted_classes().split_at(15).unwrap();
        assert_eq!(ids(&a), (0..15).collect::<Vec<_>>());
        assert_eq!(ids(&b), (15..20).collect::<Vec<_>>());
        assert!(sorted_classes().split_at(20).is_ok());
        assert!(matches!(sorted_classes().split_at(21), Err(Error::Config(_))));
    }

    #[test]
    fn shuffled_split_is_deterministic_disjoint_and_complete() {
        let d = sorted_classes();
        let (tr, te) = d.shuffled_split(0.3, 9).unwrap();
        let (tr2, te2) = d.shuffled_split(0.3, 9).unwrap();
        assert_eq!((&tr, &te), (&tr2, &te2));
        let (tr3, _) = d.shuffled_split(0.3, 10).unwrap();
        assert_ne!(ids(&tr), ids(&tr3));
        let mut all = [ids(&tr), ids(&te)].concat();
        all.sort_unstable();
        assert_eq!(all, (0..20).collect::<Vec<_>>());
        assert_eq!(te.len(), 6);
        // Rows travel with their labels.
        let labels = tr.targets.labels().unwrap();
        assert!(ids(&tr).iter().zip(labels).all(|(&i, &l)| d.targets.labels().unwrap()[i] == l));
    }

    #[test]
    fn shuffled_split_is_stratified() {
        let d = sorted_classes();
        for (f, seed) in [(0.3, 1), (0.25, 2), (0.5, 3), (0.1, 4)] {
            let (tr, te) = d.shuffled_split(f, seed).unwrap();
            let (ctr, cte) = (tr.class_counts().unwrap(), te.class_counts().unwrap());
            for (c, &n_c) in d.class_counts().unwrap().iter().enumerate() {
                assert_eq!(ctr[c] + cte[c], n_c);
                assert!((cte[c] as f64 - n_c as f64 * f).abs() <= 1.0, "f {f} class {c}: {cte:?}");
            }
            assert_eq!(te.len(), (20.0 * f).round() as usize);
        }
    }

    #[test]
    fn shuffled_split_mixes_a_sorted_file() {
        let (tr, _) = sorted_classes().shuffled_split(0.3, 5).unwrap();
        let labels = tr.targets.labels().unwrap();
        assert!(labels.windows(2).any(|w| w[0] > w[1]), "{labels:?}");
    }

    #[test]
    fn shuffled_split_of_regression_data_keeps_all_rows() {
        let d =
            Dataset::new("r", (0..10).map(|i| i as f32).collect(), 1, vec!["i".into()], Targets::Values(vec![0.5; 10]))
                .unwrap();
        let (tr, te) = d.shuffled_split(0.2, 0).unwrap();
        assert_eq!((tr.len(), te.len()), (8, 2));
        let mut all = [ids(&tr), ids(&te)].concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn shuffled_split_rejects_bad_fractions_and_empty_parts() {
        let d = sorted_classes();
        for f in [0.0, 1.0, -0.1, 1.5, f64::NAN] {
            assert!(matches!(d.shuffled_split(f, 0), Err(Error::Config(_))), "{f}");
        }
        assert!(matches!(d.shuffled_split(0.01, 0), Err(Error::Config(_))));
        assert!(matches!(d.subset(&[]).shuffled_split(0.5, 0), Err(Error::Config(_))));
    }

    #[test]
    fn largest_remainders_make_the_total_exact() {
        assert_eq!(stratum_test_counts(&[10, 7, 3], 0.3), vec![3, 2, 1]);
        assert_eq!(stratum_test_counts(&[1, 1, 1, 1], 0.5), vec![1, 1, 0, 0]);
        assert_eq!(stratum_test_counts(&[0, 5], 0.5), vec![0, 3]);
    }
}

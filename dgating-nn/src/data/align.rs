//! Reading a new file *as the model saw its training data*: columns matched by name, labels
//! mapped by class name. Positions are never trusted — a CSV with the same columns in
//! another order, or labels whose sorted order differs, must give the same answers.

use super::{Dataset, Targets};
use crate::data::csv::short;
use crate::error::{Error, Result};
use crate::model::ImageShape;

/// `n` when `names` are the pixel names `px0..px{n-1}` of an image data set.
fn pixel_count(names: &[String]) -> Option<usize> {
    names
        .iter()
        .enumerate()
        .all(|(i, n)| n.strip_prefix("px").is_some_and(|k| k == i.to_string()))
        .then_some(names.len())
}

impl Dataset {
    /// The features reordered to `names` (the model's input features, in its order).
    ///
    /// A column of this data set that is not in `names` is an error naming it (it is not
    /// silently ignored: a renamed column usually means a different feature). A name missing
    /// from this data set is an error naming it, unless `required` says the model does not
    /// read it (a compacted model that dropped the feature), in which case it is filled with
    /// `0` and never used.
    pub fn align_features(&self, names: &[String], required: Option<&[bool]>) -> Result<Dataset> {
        if let Some(r) = required
            && r.len() != names.len()
        {
            return Err(Error::Config(format!("{} required flags for {} feature names", r.len(), names.len())));
        }
        if self.feature_names == names {
            return Ok(self.clone());
        }
        if let (Some(have), Some(want)) = (pixel_count(&self.feature_names), pixel_count(names))
            && have != want
        {
            let shape = |n: usize| ImageShape::infer(n).map(|s| format!(" ({s})")).unwrap_or_default();
            return Err(Error::data(
                self.name.clone(),
                format!(
                    "images of {have} values{} per sample, but the model reads images of {want} values{}: \
                     wrong image size or channel count",
                    shape(have),
                    shape(want)
                ),
            ));
        }
        let unknown: Vec<String> =
            self.feature_names.iter().filter(|n| !names.contains(n)).map(|n| format!("`{}`", short(n))).collect();
        if !unknown.is_empty() {
            return Err(Error::data(
                self.name.clone(),
                format!(
                    "unknown column{} {}: the model's input features are {}",
                    if unknown.len() > 1 { "s" } else { "" },
                    unknown.join(", "),
                    list(names)
                ),
            ));
        }
        let source: Vec<Option<usize>> = names.iter().map(|n| self.feature_names.iter().position(|m| m == n)).collect();
        let missing: Vec<String> = source
            .iter()
            .zip(names)
            .enumerate()
            .filter(|(j, (s, _))| s.is_none() && required.is_none_or(|r| r[*j]))
            .map(|(_, (_, n))| format!("`{}`", short(n)))
            .collect();
        if !missing.is_empty() {
            return Err(Error::data(
                self.name.clone(),
                format!(
                    "missing column{} {} that the model reads",
                    if missing.len() > 1 { "s" } else { "" },
                    missing.join(", ")
                ),
            ));
        }
        self.gather(&source, names)
    }

    /// The columns `names`, in that order (other columns are dropped); a name this data set
    /// lacks is an error naming it. For a model that reads a subset of the features.
    pub fn select_features(&self, names: &[String]) -> Result<Dataset> {
        let mut cols = Vec::with_capacity(names.len());
        for n in names {
            let k = self.feature_names.iter().position(|m| m == n).ok_or_else(|| {
                Error::data(self.name.clone(), format!("missing column `{}` that the model reads", short(n)))
            })?;
            cols.push(Some(k));
        }
        self.gather(&cols, names)
    }

    /// A data set whose column `j` is named `names[j]` and copied from column `source[j]` of
    /// this one (`None`: filled with 0), with the same targets.
    fn gather(&self, source: &[Option<usize>], names: &[String]) -> Result<Dataset> {
        let mut features = Vec::with_capacity(self.len() * source.len());
        for i in 0..self.len() {
            let row = self.row(i);
            features.extend(source.iter().map(|s| s.map_or(0.0, |k| row[k])));
        }
        Dataset::new(self.name.clone(), features, source.len(), names.to_vec(), self.targets.clone())
    }

    /// The labels renumbered to the model's classes `names` (`names[k]` = class `k`). A label
    /// the model does not know is an error naming it; regression targets are an error that
    /// says the model is a classifier.
    pub fn map_classes(&self, names: &[String]) -> Result<Dataset> {
        let Targets::Classes { labels, names: own, .. } = &self.targets else {
            return Err(Error::data(
                self.name.clone(),
                format!("the target holds numbers to regress, but the model is a classifier of {}", list(names)),
            ));
        };
        let map: Vec<Option<u32>> = own.iter().map(|n| names.iter().position(|m| m == n).map(|k| k as u32)).collect();
        let mut present = vec![false; own.len()];
        labels.iter().for_each(|&l| present[l as usize] = true);
        if let Some(k) = (0..own.len()).find(|&k| map[k].is_none() && present[k]) {
            return Err(Error::data(
                self.name.clone(),
                format!("label `{}` is not a class of the model (its classes: {})", short(&own[k]), list(names)),
            ));
        }
        let labels = labels.iter().map(|&l| map[l as usize].unwrap_or_default()).collect();
        let targets = Targets::Classes { labels, num_classes: names.len(), names: names.to_vec() };
        Dataset::new(self.name.clone(), self.features.clone(), self.num_features, self.feature_names.clone(), targets)
    }
}

/// `a, b, c` (at most 12 names, then `... (N in all)`).
fn list(names: &[String]) -> String {
    let shown: Vec<String> = names.iter().take(12).map(|n| short(n)).collect();
    if names.len() > 12 { format!("{}, ... ({} in all)", shown.join(", "), names.len()) } else { shown.join(", ") }
}

#[cfg(test)]
mod tests {
    use crate::data::parse_csv;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn columns_are_matched_by_name() {
        let d = parse_csv("d", b"b,y,a\n2,no,1\n4,yes,3\n", "y").unwrap();
        let a = d.align_features(&s(&["a", "b"]), None).unwrap();
        assert_eq!(a.features, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(a.feature_names, s(&["a", "b"]));
        let e = d.align_features(&s(&["a", "c"]), None).unwrap_err().to_string();
        assert!(e.contains("unknown column `b`"), "{e}");
        let e = d.align_features(&s(&["a", "b", "c"]), None).unwrap_err().to_string();
        assert!(e.contains("missing column `c`"), "{e}");
        // A feature the model does not read may be absent.
        let a = d.align_features(&s(&["a", "b", "c"]), Some(&[true, true, false])).unwrap();
        assert_eq!(a.features, vec![1.0, 2.0, 0.0, 3.0, 4.0, 0.0]);
    }

    /// Pixel columns of another count are images of another size or channel count, and the
    /// error says so with both shapes (not a list of unknown or missing pixels).
    #[test]
    fn images_of_another_size_are_named_as_such() {
        let names = |n: usize| (0..n).map(|i| format!("px{i}")).collect::<Vec<_>>();
        let d = crate::data::Dataset::new(
            "rgb",
            vec![0.5; 2 * 3072],
            3072,
            names(3072),
            crate::data::Targets::Values(vec![0.0, 1.0]),
        )
        .unwrap();
        let e = d.align_features(&names(784), None).unwrap_err().to_string();
        assert!(e.contains("3072 values (3x32x32)") && e.contains("784 values (1x28x28)"), "{e}");
        assert!(e.contains("wrong image size or channel count") && e.contains("rgb"), "{e}");
        let e = d.align_features(&names(1024), None).unwrap_err().to_string();
        assert!(e.contains("(1x32x32)"), "{e}");
        assert_eq!(d.align_features(&names(3072), None).unwrap().num_features, 3072);
    }

    #[test]
    fn select_features_picks_columns_by_name() {
        let d = parse_csv("d", b"b,y,a\n2,no,1\n4,yes,3\n", "y").unwrap();
        assert_eq!(d.select_features(&s(&["a"])).unwrap().features, vec![1.0, 3.0]);
        assert!(d.select_features(&s(&["c"])).unwrap_err().to_string().contains("`c`"));
    }

    #[test]
    fn labels_are_mapped_by_class_name() {
        let d = parse_csv("d", b"a,y\n1,zzz\n2,yes\n", "y").unwrap();
        let m = d.map_classes(&s(&["no", "yes", "zzz"])).unwrap();
        assert_eq!(m.targets.labels().unwrap(), &[2, 1]);
        assert_eq!(m.num_classes(), Some(3));
        let e = d.map_classes(&s(&["no", "yes"])).unwrap_err().to_string();
        assert!(e.contains("label `zzz` is not a class"), "{e}");
        let r = parse_csv("d", b"a,y\n1,0.5\n2,1.5\n", "y").unwrap();
        assert!(r.map_classes(&s(&["a", "b"])).unwrap_err().to_string().contains("classifier"));
    }
}

//! [`Point`]: one run of a sweep, with a stable id; the grid's points in a fixed order, and
//! deterministic shards of them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sweep::spec::{Method, SweepSpec};

/// One run: a task trained by a method at a depth and strength, with a seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Task name.
    pub task: String,
    /// Method.
    pub method: Method,
    /// `D` (penalized methods).
    pub depth: Option<usize>,
    /// `λ` (penalized methods; slimming: its `λ` on batch-norm scales).
    pub lambda: Option<f64>,
    /// Target sparsity (magnitude, l1-filter, slimming).
    pub sparsity: Option<f64>,
    /// Seed.
    pub seed: u64,
}

impl Point {
    /// A file-name-safe id that is the same on every machine: `wine-dgating-D3-l0.05-s0`.
    pub fn id(&self) -> String {
        let mut id = format!("{}-{}", self.task, self.method.name());
        if let Some(d) = self.depth {
            id.push_str(&format!("-D{d}"));
        }
        if let Some(l) = self.lambda {
            id.push_str(&format!("-l{l:.3e}"));
        }
        if let Some(s) = self.sparsity {
            id.push_str(&format!("-t{s}"));
        }
        id.push_str(&format!("-s{}", self.seed));
        id
    }

    /// The setting without the seed: points that differ only in their seed form one group
    /// for means and spreads.
    pub fn setting(&self) -> String {
        let id = self.id();
        id[..id.rfind("-s").unwrap_or(id.len())].to_string()
    }
}

/// Every point of `spec`, in a fixed order: task, method, depth, strength, seed.
pub fn points(spec: &SweepSpec) -> Result<Vec<Point>> {
    spec.check()?;
    let mut out = vec![];
    for task in &spec.tasks {
        let lambdas = task.lambdas.values()?;
        for &method in &spec.methods {
            let base = Point { task: task.name.clone(), method, depth: None, lambda: None, sparsity: None, seed: 0 };
            let settings: Vec<Point> = match method {
                Method::Dense => vec![base],
                Method::Magnitude | Method::L1Filter => {
                    spec.sparsities.iter().map(|&s| Point { sparsity: Some(s), ..base.clone() }).collect()
                }
                Method::Slimming => spec
                    .sparsities
                    .iter()
                    .map(|&s| Point { lambda: Some(task.slimming_lambda), sparsity: Some(s), ..base.clone() })
                    .collect(),
                _ => spec
                    .depths
                    .iter()
                    .flat_map(|&d| lambdas.iter().map(move |&l| (d, l)))
                    .map(|(d, l)| Point { depth: Some(d), lambda: Some(l), ..base.clone() })
                    .collect(),
            };
            for p in settings {
                out.extend(spec.seeds.iter().map(|&seed| Point { seed, ..p.clone() }));
            }
        }
    }
    Ok(out)
}

/// A shard `I/N` (0-based `I < N`): the points whose position in [`points`] is `I` modulo
/// `N`. Every machine computes the same split, so an array job of `N` tasks covers the grid
/// exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Parses `I/N`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::InvalidConfig(format!("a shard is I/N with 0 <= I < N, got `{text}`"));
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    /// Whether the point at `position` belongs to this shard.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_grid_has_every_combination_once_and_shards_partition_it() {
        let spec = SweepSpec::preset("ci").unwrap();
        let pts = points(&spec).unwrap();
        // dense 2 seeds + 3 penalized methods x 1 D x 2 λ x 2 seeds + magnitude 1 x 2 seeds.
        assert_eq!(pts.len(), 2 + 12 + 2);
        let ids: std::collections::BTreeSet<String> = pts.iter().map(Point::id).collect();
        assert_eq!(ids.len(), pts.len());
        let shards: Vec<Shard> = (0..3).map(|i| Shard::parse(&format!("{i}/3")).unwrap()).collect();
        for pos in 0..pts.len() {
            assert_eq!(shards.iter().filter(|s| s.owns(pos)).count(), 1);
        }
        assert!(Shard::parse("3/3").is_err() && Shard::parse("x").is_err() && Shard::parse("0/0").is_err());
        assert_eq!(pts[2].setting(), "wine-dgating-D3-l5.000e-2");
    }
}

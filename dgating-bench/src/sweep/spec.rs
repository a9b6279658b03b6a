//! [`SweepSpec`]: the grid of a sweep (TOML), and the presets.

use dgating_nn::train::DeviceSpec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The methods a sweep compares are the training modes of `dgating train`: `dense` (pruned
/// with the same read-out as everyone, a weak baseline), `dgating`, `direct`, `prox`,
/// `magnitude` (train dense with the same budget, remove the smallest groups), and for conv
/// nets `l1-filter` (train dense, remove the filters with the smallest L1 norms per layer) and
/// `slimming` (train with `λ Σ|γ|` on batch-norm scales, remove the smallest `|γ|` globally).
pub use dgating_nn::train::Mode as Method;

/// Values of `λ`: a log-spaced grid or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Grid {
    /// `count` values from `min` to `max`, evenly spaced in `log λ`.
    Log {
        /// Smallest value (> 0).
        min: f64,
        /// Largest value (>= min).
        max: f64,
        /// Number of values (>= 1).
        count: usize,
    },
    /// These values.
    List(Vec<f64>),
}

impl Grid {
    /// The values, ascending.
    pub fn values(&self) -> Result<Vec<f64>> {
        let mut v = match *self {
            Grid::Log { min, max, count } => {
                if !(min > 0.0 && max >= min && max.is_finite() && count >= 1) {
                    return Err(Error::InvalidConfig(format!(
                        "a log grid needs 0 < min <= max and count >= 1, got min {min}, max {max}, count {count}"
                    )));
                }
                if count == 1 {
                    vec![min]
                } else {
                    let (a, b) = (min.ln(), max.ln());
                    (0..count).map(|i| (a + (b - a) * i as f64 / (count - 1) as f64).exp()).collect()
                }
            }
            Grid::List(ref v) => v.clone(),
        };
        if v.is_empty() || v.iter().any(|x| !x.is_finite() || *x < 0.0) {
            return Err(Error::InvalidConfig(format!("λ values must be finite and >= 0, got {v:?}")));
        }
        v.sort_by(f64::total_cmp);
        Ok(v)
    }
}

/// One task: data, model and training budget (the same for every method).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Short name used in point ids and reports.
    pub name: String,
    /// `--data` of `dgating train`.
    pub data: String,
    /// Target column of a table.
    #[serde(default)]
    pub target: Option<String>,
    /// Model preset.
    pub model: String,
    /// Training epochs (magnitude: the dense phase). Language tasks count steps instead
    /// ([`LmTaskSpec::steps`]) and leave this out.
    #[serde(default)]
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Base learning rate (SGD momentum 0.9, cosine schedule, 5% warm-up).
    pub lr: f64,
    /// `λ` values for the penalized methods.
    pub lambdas: Grid,
    /// Network slimming's `λ` on the batch-norm scales (Liu et al. 2017 use `1e-4`).
    #[serde(default = "default_slimming_lambda")]
    pub slimming_lambda: f64,
    /// A language task (`model = "gpt"`, `data` = a corpus: `moby-dick` or a UTF-8 file):
    /// the GPT's shape and step budget. `batch_size` is then sequences per step and `lr`
    /// Adam's rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lm: Option<LmTaskSpec>,
}

/// The GPT of a language task (character-level, the last 10% of the corpus held out).
/// Methods: dense, dgating (the collapse recipe of `dgating lm train`) and magnitude (each
/// gate set's smallest groups of the dense model removed); the metric is `neg_val_loss`, the
/// negative mean next-token NLL on the held-out windows (higher is better, like accuracy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmTaskSpec {
    /// Blocks.
    pub n_layer: usize,
    /// Heads per block.
    pub n_head: usize,
    /// Stream width.
    pub n_embd: usize,
    /// Context (tokens per training sequence and per validation window).
    pub block_size: usize,
    /// Training steps (the same for every method).
    pub steps: usize,
    /// Groups: `heads` (only the heads are gated and pruned) or `all` (heads and MLP neurons).
    pub groups: LmGroups,
    /// Fine-tuning steps of every compacted model (at the sweep's fine-tune `lr`, Adam, no
    /// penalty; 0: none).
    pub finetune_steps: usize,
    /// Validation windows scored (the first ones of the held-out text).
    pub eval_windows: usize,
}

/// Which groups of a language task are gated and pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LmGroups {
    /// Attention heads only.
    Heads,
    /// Heads and MLP neurons.
    All,
}

fn default_slimming_lambda() -> f64 {
    1e-4
}

/// The fine-tuning budget every method gets after pruning (reported beside the result
/// without fine-tuning).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FinetuneSpec {
    /// Epochs of fine-tuning the compacted model (0: none).
    pub epochs: usize,
    /// Learning rate of fine-tuning (cosine schedule, no penalty).
    pub lr: f64,
}

/// A sweep: tasks × methods × depths × strengths × seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSpec {
    /// The sweep's name (reports).
    pub name: String,
    /// Tasks.
    pub tasks: Vec<TaskSpec>,
    /// Methods.
    pub methods: Vec<Method>,
    /// Depths `D` of the penalized methods.
    pub depths: Vec<usize>,
    /// Magnitude pruning's target sparsities (fractions of groups removed).
    pub sparsities: Vec<f64>,
    /// Seeds (initialization, split, batch order).
    pub seeds: Vec<u64>,
    /// The common fine-tuning budget.
    pub finetune: FinetuneSpec,
    /// Where every point trains, prunes and is scored (`cpu` when absent).
    #[serde(default, skip_serializing_if = "DeviceSpec::is_cpu")]
    pub device: DeviceSpec,
}

/// Names accepted by [`SweepSpec::preset`].
pub const PRESETS: &[&str] = &["ci", "paper-cpu", "paper-gpu", "vision-cpu", "lm-cpu"];

impl SweepSpec {
    /// Parses TOML and checks it.
    pub fn from_toml(text: &str) -> Result<Self> {
        let spec: Self = toml::from_str(text).map_err(|e| Error::InvalidConfig(format!("sweep spec: {e}")))?;
        spec.check()?;
        Ok(spec)
    }

    /// The spec as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::InvalidConfig(e.to_string()))
    }

    /// Rejects empty axes and values no run can use.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.tasks.is_empty() || self.methods.is_empty() || self.seeds.is_empty() {
            return bad("a sweep needs at least one task, method and seed".into());
        }
        if self.methods.iter().any(|m| m.penalized()) && self.depths.is_empty() {
            return bad("penalized methods need at least one depth".into());
        }
        if let Some(d) = self.depths.iter().find(|&&d| d < 2) {
            return bad(format!("depths must be >= 2, got {d}"));
        }
        if let Some(m) = self.methods.iter().find(|m| m.prunes_then_finetunes())
            && self.sparsities.is_empty()
        {
            return bad(format!("`{}` needs at least one target sparsity", m.name()));
        }
        if let Some(s) = self.sparsities.iter().find(|s| !(0.0..1.0).contains(*s)) {
            return bad(format!("target sparsities must be in [0, 1), got {s}"));
        }
        for t in &self.tasks {
            t.lambdas.values()?;
            if let Some(lm) = &t.lm {
                if t.model != "gpt" || t.epochs != 0 {
                    return bad(format!(
                        "task `{}`: a language task has model = \"gpt\" and no epochs (it counts lm.steps)",
                        t.name
                    ));
                }
                if let Some(m) =
                    self.methods.iter().find(|m| !matches!(m, Method::Dense | Method::Dgating | Method::Magnitude))
                {
                    return bad(format!(
                        "task `{}` is a language task: methods dense, dgating and magnitude only, not `{}`",
                        t.name,
                        m.name()
                    ));
                }
                let sizes = [lm.n_layer, lm.n_head, lm.n_embd, lm.block_size, lm.steps, lm.eval_windows];
                if sizes.contains(&0) || !lm.n_embd.is_multiple_of(lm.n_head) {
                    return bad(format!(
                        "task `{}`: lm sizes, steps and eval_windows must be >= 1, n_embd a multiple of n_head",
                        t.name
                    ));
                }
            } else if t.epochs == 0 {
                return bad(format!("task `{}`: epochs must be > 0", t.name));
            }
            if t.batch_size == 0 || !(t.lr > 0.0 && t.lr.is_finite()) {
                return bad(format!("task `{}`: batch size and lr must be > 0", t.name));
            }
            if !(t.slimming_lambda >= 0.0 && t.slimming_lambda.is_finite()) {
                return bad(format!("task `{}`: slimming_lambda must be finite and >= 0", t.name));
            }
            if t.name.is_empty() || !t.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return bad(format!("task name `{}` must be letters, digits, `-` or `_`", t.name));
            }
        }
        if !(self.finetune.lr > 0.0 && self.finetune.lr.is_finite()) {
            return bad(format!("fine-tuning lr must be > 0, got {}", self.finetune.lr));
        }
        Ok(())
    }

    /// A preset: `ci` (wine only, about a minute), `paper-cpu` (the MLP tasks with 3 seeds,
    /// hours on 2 cores), `paper-gpu` (more λ values, depths and seeds, on CUDA device 0),
    /// `vision-cpu` (LeNet-5 and VGG-11 ×0.25 on the built-in Fashion-MNIST subset: dense,
    /// D-Gating at D ∈ {2, 3, 4}, magnitude, L1-filter and slimming at two target sparsities,
    /// 3 seeds, the same fine-tuning budget for all; many hours on 2 cores), `lm-cpu` (the
    /// heads of a 4 × 8-head character-level GPT on Moby Dick, 1500 steps of 16 × 64 tokens:
    /// dense, D-Gating at three λ, magnitude at 25% and 50% of each block's heads, 3 seeds,
    /// 100 fine-tune steps each; about 5 hours on 2 cores).
    pub fn preset(name: &str) -> Result<Self> {
        let task = |name: &str, data: &str, model: &str, epochs, batch_size, lr, lambdas| TaskSpec {
            name: name.into(),
            data: data.into(),
            target: None,
            model: model.into(),
            epochs,
            batch_size,
            lr,
            lambdas,
            slimming_lambda: default_slimming_lambda(),
            lm: None,
        };
        let all = vec![Method::Dense, Method::Dgating, Method::Direct, Method::Prox, Method::Magnitude];
        let spec = match name {
            "ci" => Self {
                name: "ci".into(),
                tasks: vec![task("wine", "wine", "linear", 10, 16, 0.05, Grid::List(vec![0.05, 0.2]))],
                methods: all,
                depths: vec![3],
                sparsities: vec![0.5],
                seeds: vec![0, 1],
                finetune: FinetuneSpec { epochs: 2, lr: 0.01 },
                device: DeviceSpec::Cpu,
            },
            "paper-cpu" | "paper-gpu" => {
                let gpu = name == "paper-gpu";
                let count = if gpu { 8 } else { 4 };
                Self {
                    name: name.into(),
                    tasks: vec![
                        task(
                            "synthetic",
                            "synthetic",
                            "linear",
                            60,
                            32,
                            0.02,
                            Grid::Log { min: 0.02, max: 0.3, count },
                        ),
                        task("wine", "wine", "linear", 100, 16, 0.05, Grid::Log { min: 0.02, max: 0.5, count }),
                        task(
                            "breast-cancer",
                            "breast-cancer",
                            "mlp",
                            100,
                            32,
                            0.05,
                            Grid::Log { min: 0.005, max: 0.1, count },
                        ),
                        task(
                            "lenet",
                            "mnist-10k",
                            "lenet-300-100",
                            30,
                            128,
                            0.05,
                            Grid::Log { min: 2e-3, max: 8e-3, count },
                        ),
                    ],
                    methods: all,
                    depths: if gpu { vec![2, 3, 4] } else { vec![2, 3] },
                    sparsities: vec![0.25, 0.5, 0.75, 0.9],
                    seeds: if gpu { vec![0, 1, 2, 3, 4] } else { vec![0, 1, 2] },
                    finetune: FinetuneSpec { epochs: 5, lr: 0.01 },
                    device: if gpu { DeviceSpec::Cuda(0) } else { DeviceSpec::Cpu },
                }
            }
            "vision-cpu" => Self {
                name: name.into(),
                tasks: vec![
                    task(
                        "lenet5",
                        "fashion-mnist-10k",
                        "lenet5",
                        10,
                        128,
                        0.05,
                        Grid::Log { min: 5e-3, max: 2e-2, count: 3 },
                    ),
                    task(
                        "vgg11",
                        "fashion-mnist-10k",
                        "vgg11@0.25",
                        5,
                        64,
                        0.05,
                        Grid::Log { min: 5e-3, max: 2e-2, count: 3 },
                    ),
                ],
                methods: vec![Method::Dense, Method::Dgating, Method::Magnitude, Method::L1Filter, Method::Slimming],
                depths: vec![2, 3, 4],
                sparsities: vec![0.5, 0.75],
                seeds: vec![0, 1, 2],
                finetune: FinetuneSpec { epochs: 2, lr: 0.01 },
                device: DeviceSpec::Cpu,
            },
            "lm-cpu" => Self {
                name: name.into(),
                tasks: vec![TaskSpec {
                    lm: Some(LmTaskSpec {
                        n_layer: 4,
                        n_head: 8,
                        n_embd: 256,
                        block_size: 64,
                        steps: 1500,
                        groups: LmGroups::Heads,
                        finetune_steps: 100,
                        eval_windows: 200,
                    }),
                    ..task("moby-heads", "moby-dick", "gpt", 0, 16, 1e-3, Grid::List(vec![1e-3, 3e-3, 1e-2]))
                }],
                methods: vec![Method::Dense, Method::Dgating, Method::Magnitude],
                depths: vec![3],
                sparsities: vec![0.25, 0.5],
                seeds: vec![0, 1, 2],
                finetune: FinetuneSpec { epochs: 0, lr: 3e-4 },
                device: DeviceSpec::Cpu,
            },
            other => {
                return Err(Error::InvalidConfig(format!("unknown preset `{other}` (known: {})", PRESETS.join(", "))));
            }
        };
        spec.check()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_grid_is_log_spaced_and_checked() {
        let v = Grid::Log { min: 0.01, max: 1.0, count: 3 }.values().unwrap();
        assert!((v[0] - 0.01).abs() < 1e-12 && (v[1] - 0.1).abs() < 1e-12 && (v[2] - 1.0).abs() < 1e-12);
        assert!(Grid::Log { min: 0.0, max: 1.0, count: 3 }.values().is_err());
        assert!(Grid::List(vec![]).values().is_err());
    }

    #[test]
    fn presets_round_trip_through_toml() {
        for p in PRESETS {
            let s = SweepSpec::preset(p).unwrap();
            assert_eq!(SweepSpec::from_toml(&s.to_toml().unwrap()).unwrap(), s);
        }
        assert!(SweepSpec::preset("huge").is_err());
        let mut s = SweepSpec::preset("ci").unwrap();
        s.depths = vec![1];
        assert!(s.check().is_err());
    }
}

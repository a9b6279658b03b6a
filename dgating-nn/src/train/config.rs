//! [`TrainConfig`] and [`Mode`]: what to train and how, validated once.

use dgating_core::{GateConfig, Threshold};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layers::GateInit;
use crate::optim::{OptimizerKind, Schedule, Warmup};

/// How the group structure is trained (docs/METHOD.md §2, §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// No penalty: the dense reference.
    Dense,
    /// D-Gating: groups factorized as `ω·Πγ`, weight decay `2λ/D` on the factors.
    Dgating,
    /// Autograd on `λ Σ_j (||w_j||² + ε²)^(1/D)` (the direct (sub)gradient baseline).
    Direct,
    /// An unpenalized optimizer step, then the group prox with `t = lr·λ`.
    Prox,
    /// Train dense, remove the smallest-norm groups to a target sparsity, fine-tune.
    Magnitude,
    /// Li et al. 2017: train dense, remove the channels with the smallest filter L1 norms per
    /// layer to a target sparsity, fine-tune ([`crate::train::baselines`]).
    L1Filter,
    /// Liu et al. 2017: train with `λ Σ|γ_bn|`, remove the channels with the smallest `|γ_bn|`
    /// globally to a target sparsity, fine-tune ([`crate::train::baselines`]).
    Slimming,
}

/// Names accepted by [`Mode::parse`].
pub const MODES: &[&str] = &["dense", "dgating", "direct", "prox", "magnitude", "l1-filter", "slimming"];

impl Mode {
    /// The CLI name (`dense`, `dgating`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Dense => "dense",
            Self::Dgating => "dgating",
            Self::Direct => "direct",
            Self::Prox => "prox",
            Self::Magnitude => "magnitude",
            Self::L1Filter => "l1-filter",
            Self::Slimming => "slimming",
        }
    }

    /// Whether the mode trains, removes groups once, then fine-tunes (`magnitude`, `l1-filter`,
    /// `slimming`).
    pub fn prunes_then_finetunes(self) -> bool {
        matches!(self, Self::Magnitude | Self::L1Filter | Self::Slimming)
    }

    /// Whether the mode has a depth `D` and a strength `λ` (D-Gating and the two penalty
    /// baselines).
    pub fn penalized(self) -> bool {
        matches!(self, Self::Dgating | Self::Direct | Self::Prox)
    }

    /// Parses a CLI name.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "dense" => Self::Dense,
            "dgating" => Self::Dgating,
            "direct" => Self::Direct,
            "prox" => Self::Prox,
            "magnitude" => Self::Magnitude,
            "l1-filter" => Self::L1Filter,
            "slimming" => Self::Slimming,
            _ => return Err(Error::UnknownName { kind: "mode", name: name.into(), known: MODES.join(", ") }),
        })
    }
}

/// Everything about one training run except the model and the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Training mode.
    pub mode: Mode,
    /// `D` and `λ` (`λ` is unused by `dense` and `magnitude`).
    pub gate: GateConfig,
    /// Epochs (for `magnitude`: the dense phase).
    pub epochs: usize,
    /// Mini-batch size (a value `>= n` gives full-batch gradient descent).
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f64,
    /// Update rule.
    pub optimizer: OptimizerKind,
    /// Learning-rate schedule over all steps.
    pub schedule: Schedule,
    /// Weight decay of ungated tensors (coupled for SGD, decoupled for AdamW).
    pub ungated_weight_decay: f64,
    /// Read-out of active groups in the metrics. Default `1e-3` absolute, `3e-2` relative: the
    /// floor of `dgating prune`'s default read-out (`dgating_core::ReadOut`), so the metric
    /// counts what pruning would keep when the layer has no gap (docs/EXPERIMENTS.md,
    /// "Read-out threshold"; `1e-3` relative counted LeNet's collapsed neurons as active).
    pub threshold: Threshold,
    /// `ε` of the `direct` mode's smoothed norm.
    pub direct_epsilon: f64,
    /// `magnitude`: fraction of groups to remove, in `[0, 1)`.
    pub target_sparsity: f64,
    /// `magnitude`: fine-tuning epochs after pruning.
    pub finetune_epochs: usize,
    /// Seed of initialization and batch order.
    pub seed: u64,
    /// How gates start (`dgating` mode).
    #[serde(default)]
    pub gate_init: GateInit,
    /// The warm-up of a cosine schedule as asked for (in steps, epochs or a share of the run);
    /// [`crate::train::plan`] resolves it into `schedule` once the data size is known.
    #[serde(default)]
    pub warmup: Option<Warmup>,
    /// Where the model and the data live (CPU unless configured; CUDA needs the `cuda`
    /// feature).
    #[serde(default)]
    pub device: DeviceSpec,
    /// Augmentation of training images (conv nets only).
    #[serde(default)]
    pub augment: Option<crate::data::Augment>,
}

/// The device a run computes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceSpec {
    /// The CPU.
    #[default]
    Cpu,
    /// CUDA device `n` (needs the `cuda` feature).
    Cuda(usize),
}

impl DeviceSpec {
    /// Parses `cpu`, `cuda` (device 0), `cuda:N` or `auto` (the first CUDA device when this
    /// build has CUDA support and a GPU is present, else the CPU).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::UnknownName { kind: "device", name: text.into(), known: "cpu, cuda, cuda:N, auto".into() };
        Ok(match text {
            "cpu" => Self::Cpu,
            "cuda" => Self::Cuda(0),
            "auto" => {
                if candle_core::utils::cuda_is_available() && candle_core::Device::new_cuda(0).is_ok() {
                    Self::Cuda(0)
                } else {
                    Self::Cpu
                }
            }
            other => match other.strip_prefix("cuda:") {
                Some(n) => Self::Cuda(n.parse().map_err(|_| bad())?),
                None => return Err(bad()),
            },
        })
    }

    /// Whether this is the CPU.
    pub fn is_cpu(&self) -> bool {
        *self == Self::Cpu
    }

    /// The candle device. Asking for CUDA in a build without the `cuda` feature, or for a GPU
    /// that is not there, is an error that says which.
    pub fn device(self) -> Result<candle_core::Device> {
        Ok(match self {
            Self::Cpu => candle_core::Device::Cpu,
            Self::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(Error::Config(
                        "this build has no CUDA support: rebuild with `--features cuda` (README, \"Building for CUDA\"), \
                         or use --device cpu"
                            .into(),
                    ));
                }
                candle_core::Device::new_cuda(n).map_err(|e| {
                    Error::Config(format!("CUDA device {n} is not available ({e}); use --device cpu or auto"))
                })?
            }
        })
    }
}

impl TrainConfig {
    /// Sensible defaults for `mode`: SGD with momentum 0.9, lr 0.05, cosine schedule with
    /// 100 warm-up steps, batch 128, 20 epochs, threshold `1e-3` absolute
    /// and `3e-2` relative.
    pub fn new(mode: Mode, gate: GateConfig) -> Self {
        Self {
            mode,
            gate,
            epochs: 20,
            batch_size: 128,
            lr: 0.05,
            optimizer: OptimizerKind::Sgd { momentum: 0.9 },
            schedule: Schedule::Cosine { warmup: 100 },
            ungated_weight_decay: 0.0,
            threshold: Threshold::new(1e-3, 3e-2).expect("constant threshold is valid"),
            direct_epsilon: 1e-6,
            target_sparsity: 0.5,
            finetune_epochs: 5,
            seed: 0,
            gate_init: GateInit::Ones,
            device: DeviceSpec::Cpu,
            warmup: None,
            augment: None,
        }
    }

    /// Rejects values no run can use.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.epochs == 0 {
            return bad("epochs must be >= 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch size must be >= 1".into());
        }
        if !self.lr.is_finite() || self.lr <= 0.0 {
            return bad(format!("learning rate must be finite and > 0, got {}", self.lr));
        }
        if !self.ungated_weight_decay.is_finite() || self.ungated_weight_decay < 0.0 {
            return bad(format!("weight decay must be finite and >= 0, got {}", self.ungated_weight_decay));
        }
        if !self.direct_epsilon.is_finite() || self.direct_epsilon < 0.0 {
            return bad(format!("direct epsilon must be finite and >= 0, got {}", self.direct_epsilon));
        }
        self.schedule.check().map_err(Error::Config)?;
        if !(0.0..1.0).contains(&self.target_sparsity) {
            return bad(format!("target sparsity must be in [0, 1), got {}", self.target_sparsity));
        }
        Ok(())
    }

    /// Total epochs including magnitude fine-tuning.
    pub fn total_epochs(&self) -> usize {
        self.epochs + if self.mode.prunes_then_finetunes() { self.finetune_epochs } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_cuda_without_support_is_a_clear_error() {
        assert_eq!(DeviceSpec::parse("cpu").unwrap(), DeviceSpec::Cpu);
        assert_eq!(DeviceSpec::parse("cuda").unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(DeviceSpec::parse("cuda:3").unwrap(), DeviceSpec::Cuda(3));
        for bad in ["gpu", "cuda:x", "cuda:-1", ""] {
            assert!(matches!(DeviceSpec::parse(bad), Err(Error::UnknownName { .. })), "{bad}");
        }
        let auto = DeviceSpec::parse("auto").unwrap();
        assert!(auto.device().is_ok(), "auto always gives a usable device");
        if !candle_core::utils::cuda_is_available() {
            assert_eq!(auto, DeviceSpec::Cpu);
            let e = DeviceSpec::Cuda(0).device().unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}

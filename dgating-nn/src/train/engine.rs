//! [`Trainer`]: the one training loop behind every mode.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use dgating_core::{Threshold, prox_groups};

use crate::data::{Dataset, Targets, batch_indices};
use crate::error::{Error, Result};
use crate::loss::{correct, cross_entropy, half_mse, one_hot};
use crate::model::Model;
use crate::optim::Optimizer;
use crate::tensor_util::to_f64_vec;
use crate::train::config::{Mode, TrainConfig};
use crate::train::metrics::{EpochMetrics, group_stats};

/// A data set as tensors on the training device.
#[derive(Debug, Clone)]
pub struct TensorData {
    x: Tensor,
    labels: Option<(Vec<u32>, usize)>,
    values: Option<Tensor>,
}

impl TensorData {
    /// Moves a [`Dataset`] to `device` in `dtype`.
    pub fn new(data: &Dataset, dtype: DType, device: &Device) -> Result<Self> {
        let x = Tensor::from_slice(&data.features, (data.len(), data.num_features), device)?.to_dtype(dtype)?;
        Ok(match &data.targets {
            Targets::Classes { labels, num_classes, .. } => {
                Self { x, labels: Some((labels.clone(), *num_classes)), values: None }
            }
            Targets::Values(v) => {
                Self { x, labels: None, values: Some(Tensor::from_slice(v, v.len(), device)?.to_dtype(dtype)?) }
            }
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.x.dims()[0]
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The loss (and correct count for classification) of `out` on rows `idx`.
    fn loss(&self, out: &Tensor, idx: &[usize]) -> Result<(Tensor, Option<usize>)> {
        if let Some((labels, classes)) = &self.labels {
            let ys: Vec<u32> = idx.iter().map(|&i| labels[i]).collect();
            if out.dim(1)? != *classes {
                return Err(Error::Shape {
                    op: "loss: model outputs vs data classes".into(),
                    expected: vec![idx.len(), *classes],
                    actual: out.dims().to_vec(),
                });
            }
            let oh = one_hot(&ys, *classes, out.dtype(), out.device())?;
            Ok((cross_entropy(out, &oh)?, Some(correct(out, &ys)?)))
        } else if let Some(v) = &self.values {
            if out.dim(1)? != 1 {
                return Err(Error::Config(format!(
                    "the model is a classifier with {} outputs, but the data has a real-valued (regression) target",
                    out.dim(1)?
                )));
            }
            let ids = Tensor::from_vec(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), idx.len(), v.device())?;
            Ok((half_mse(out, &v.index_select(&ids, 0)?)?, None))
        } else {
            Err(Error::data("evaluation data", "the data set has no targets"))
        }
    }

    /// The same rows with only the feature columns `features` (ascending original indices), e.g.
    /// the inputs a compacted model kept.
    pub fn select_features(&self, features: &[usize]) -> Result<Self> {
        let ids =
            Tensor::from_vec(features.iter().map(|&i| i as u32).collect::<Vec<_>>(), features.len(), self.x.device())?;
        Ok(Self { x: self.x.index_select(&ids, 1)?, labels: self.labels.clone(), values: self.values.clone() })
    }

    fn rows(&self, idx: &[usize]) -> Result<Tensor> {
        let ids = Tensor::from_vec(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), idx.len(), self.x.device())?;
        Ok(self.x.index_select(&ids, 0)?)
    }
}

/// Where training is, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based step within the epoch.
    pub step: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Epochs of the whole run (including magnitude fine-tuning).
    pub total_epochs: usize,
    /// Loss of this step.
    pub loss: f64,
}

/// Runs epochs of one mode over a model's parameters.
#[derive(Debug)]
pub struct Trainer<'m, M: Model> {
    model: &'m M,
    config: TrainConfig,
    optimizer: Optimizer,
    masks: Option<Vec<Vec<bool>>>,
    epochs_done: usize,
}

impl<'m, M: Model> Trainer<'m, M> {
    /// A trainer at epoch 0. The model must be gated iff the mode is `dgating`.
    pub fn new(model: &'m M, config: TrainConfig) -> Result<Self> {
        config.check()?;
        let sets = model.gate_sets();
        let gated = sets.iter().any(|s| s.depth().is_some());
        if (config.mode == Mode::Dgating) != gated {
            return Err(Error::Config(format!(
                "mode `{}` needs a {} model",
                config.mode.name(),
                if gated { "plain" } else { "gated" }
            )));
        }
        if config.mode != Mode::Dense && sets.is_empty() {
            return Err(Error::Config(format!("mode `{}` needs a model with groups (gate sets)", config.mode.name())));
        }
        let gate_wd = if config.mode == Mode::Dgating { config.gate.weight_decay() } else { 0.0 };
        let optimizer = Optimizer::new(config.optimizer, &model.params()?, gate_wd, config.ungated_weight_decay)?;
        Ok(Self { model, config, optimizer, masks: None, epochs_done: 0 })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Epochs completed.
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    /// The optimizer (for checkpoints).
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    /// The magnitude-pruning masks once pruning happened.
    pub fn masks(&self) -> Option<&Vec<Vec<bool>>> {
        self.masks.as_ref()
    }

    /// Restores the position of a checkpoint: epochs done, the optimizer's state tensors after
    /// `steps` steps, and the magnitude masks.
    pub fn restore(
        &mut self,
        epochs_done: usize,
        optimizer_state: HashMap<String, Tensor>,
        steps: usize,
        masks: Option<Vec<Vec<bool>>>,
    ) -> Result<()> {
        self.optimizer.load_state(optimizer_state, steps)?;
        self.epochs_done = epochs_done;
        self.masks = masks;
        Ok(())
    }

    /// Whether all epochs are done.
    pub fn finished(&self) -> bool {
        self.epochs_done >= self.config.total_epochs()
    }

    /// Trains one epoch and evaluates on `val`.
    pub fn run_epoch(
        &mut self,
        train: &TensorData,
        val: &TensorData,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<EpochMetrics> {
        let (train_loss, lr) = self.train_epoch(train, progress)?;
        self.evaluate(self.epochs_done, train_loss, val, lr)
    }

    /// Trains one epoch without evaluating; returns the mean training loss and the last
    /// learning rate.
    pub fn train_epoch(&mut self, train: &TensorData, progress: &mut dyn FnMut(Progress)) -> Result<(f64, f64)> {
        let epoch = self.epochs_done + 1;
        let cfg = &self.config;
        if cfg.mode.prunes_then_finetunes() && epoch == cfg.epochs + 1 && self.masks.is_none() {
            self.masks = Some(self.magnitude_masks()?);
            self.apply_masks()?;
        }
        let batches = batch_indices(train.len(), cfg.batch_size, Some(cfg.seed.wrapping_add(epoch as u64)));
        let total_steps = cfg.total_epochs() * batches.len();
        let mut loss_sum = 0.0;
        let mut lr = cfg.lr;
        for (s, idx) in batches.iter().enumerate() {
            let step = self.optimizer.steps();
            lr = cfg.schedule.rate(cfg.lr, step, total_steps);
            let mut x = train.rows(idx)?;
            if let Some(a) = cfg.augment.filter(|a| !a.is_identity()) {
                let shape =
                    self.model.architecture().and_then(|a| a.image_shape()).ok_or_else(|| {
                        Error::Config("augmentation needs a conv net (a model that reads images)".into())
                    })?;
                x = a.apply(&x, shape, cfg.seed ^ ((step as u64) << 16) ^ 0x5eed)?;
            }
            let out = self.model.forward_train(&x)?;
            let (data_loss, _) = train.loss(&out, idx)?;
            let loss = match cfg.mode {
                Mode::Direct => (&data_loss + self.direct_penalty()?)?,
                Mode::Slimming if epoch <= cfg.epochs => {
                    match crate::train::baselines::slimming_penalty(self.model, cfg.gate.lambda())? {
                        Some(p) => (&data_loss + p)?,
                        None => data_loss.clone(),
                    }
                }
                _ => data_loss.clone(),
            };
            let value = data_loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let total = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !value.is_finite() || !total.is_finite() {
                return Err(Error::NonFinite { what: "loss".into(), epoch, step: s + 1 });
            }
            let grads = loss.backward()?;
            self.optimizer.step(&grads, lr)?;
            if let Some(name) = self.optimizer.nonfinite_param() {
                return Err(Error::NonFinite {
                    what: format!("parameter `{name}` after the update"),
                    epoch,
                    step: s + 1,
                });
            }
            match cfg.mode {
                Mode::Prox => self.apply_prox(lr)?,
                m if m.prunes_then_finetunes() && self.masks.is_some() => self.apply_masks()?,
                _ => {}
            }
            loss_sum += value;
            progress(Progress {
                epoch,
                step: s + 1,
                steps_per_epoch: batches.len(),
                total_epochs: cfg.total_epochs(),
                loss: value,
            });
        }
        self.check_params_finite(epoch, batches.len())?;
        self.epochs_done = epoch;
        Ok((loss_sum / batches.len() as f64, lr))
    }

    fn check_params_finite(&self, epoch: usize, step: usize) -> Result<()> {
        for p in self.model.params()?.iter() {
            let bad = p.var.as_tensor().to_dtype(DType::F64)?.abs()?.max_all()?.to_scalar::<f64>()?;
            if !bad.is_finite() {
                return Err(Error::NonFinite { what: format!("parameter `{}`", p.name), epoch, step });
            }
        }
        Ok(())
    }

    /// `λ Σ_j (||w_j||² + ε²)^(1/D)` over all gate sets, as a differentiable tensor.
    fn direct_penalty(&self) -> Result<Tensor> {
        let cfg = &self.config;
        let eps2 = cfg.direct_epsilon * cfg.direct_epsilon;
        let store = self.model.params()?;
        let mut total: Option<Tensor> = None;
        for set in self.model.gate_sets() {
            let term = (set.group_sq_norms(&store)? + eps2)?.powf(1.0 / cfg.gate.depth() as f64)?.sum_all()?;
            total = Some(match total {
                Some(t) => (t + term)?,
                None => term,
            });
        }
        let total = total.ok_or_else(|| Error::Config("direct mode needs a model with groups".into()))?;
        Ok((total * cfg.gate.lambda())?)
    }

    /// The group prox with `t = lr·λ` on every gate set (dgating-core's `prox_groups`).
    fn apply_prox(&self, lr: f64) -> Result<()> {
        let t = lr * self.config.gate.lambda();
        let store = self.model.params()?;
        for set in self.model.gate_sets() {
            let bufs = set.effective_buffers(&store)?;
            let shrunk = prox_groups(set.layout(), &dgating_core::as_slices(&bufs), t, self.config.gate.depth())?;
            set.set_omega(&store, shrunk)?;
        }
        Ok(())
    }

    /// Keeps the largest `(1 − target_sparsity)` fraction of groups of each gate set.
    fn magnitude_masks(&self) -> Result<Vec<Vec<bool>>> {
        let fraction = self.config.target_sparsity;
        match self.config.mode {
            Mode::L1Filter => return crate::train::baselines::l1_filter_masks(self.model, fraction),
            Mode::Slimming => return crate::train::baselines::slimming_masks(self.model, fraction),
            _ => {}
        }
        let store = self.model.params()?;
        self.model
            .gate_sets()
            .iter()
            .map(|set| Ok(dgating_core::keep_largest(&set.group_norms(&store)?, self.config.target_sparsity)))
            .collect()
    }

    fn apply_masks(&self) -> Result<()> {
        if let Some(masks) = &self.masks {
            let store = self.model.params()?;
            for (set, mask) in self.model.gate_sets().iter().zip(masks) {
                set.drop_groups(&store, mask)?;
            }
        }
        Ok(())
    }

    /// Validation loss/accuracy and group statistics.
    pub fn evaluate(&self, epoch: usize, train_loss: f64, val: &TensorData, lr: f64) -> Result<EpochMetrics> {
        let scores = score(self.model, val)?;
        let (val_loss, accuracy) = (scores.loss, scores.accuracy);
        let threshold: Threshold = self.config.threshold;
        let stats = group_stats(&self.model.gate_sets(), &self.model.params()?, &threshold, self.config.gate.depth())?;
        let active_per_layer: Vec<usize> = stats.masks.iter().map(|m| m.iter().filter(|&&k| k).count()).collect();
        Ok(EpochMetrics {
            epoch,
            steps: self.optimizer.steps(),
            train_loss,
            val_accuracy: accuracy,
            val_loss,
            active_groups: active_per_layer.iter().sum(),
            total_groups: stats.masks.iter().map(Vec::len).sum(),
            active_per_layer,
            max_imbalance: stats.imbalance.map(|i| i.0),
            mean_imbalance: stats.imbalance.map(|i| i.1),
            factor_penalty: stats.factor_penalty,
            group_penalty: stats.group_penalty,
            lr,
            val_rmse: scores.rmse,
            val_mae: scores.mae,
            val_r2: scores.r2,
        })
    }
}

/// Rows per forward when a whole data set is scored or compared. A forward through a model
/// whose parameters are variables records the graph for a backward pass, so every activation
/// of the chunk stays alive until its output is dropped: a gated ResNet-20 ×0.5 at 28×28 keeps
/// about 0.5 MB per row, so a chunk of 256 rows holds ~150 MB (a single 10,000-row forward held
/// 16 GB). Above a few hundred rows the chunk size no longer changes the speed.
pub const EVAL_CHUNK_ROWS: usize = 256;

/// Mean loss and (for classification) accuracy of `model` on `data`, in chunks of
/// [`EVAL_CHUNK_ROWS`] rows ([`Model::infer`]).
pub fn evaluate<M: Model + ?Sized>(model: &M, data: &TensorData) -> Result<(f64, Option<f64>)> {
    let s = score(model, data)?;
    Ok((s.loss, s.accuracy))
}

/// What a model scores on a data set.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Scores {
    /// Mean loss: cross-entropy for classification, `½·MSE` (half the mean squared error)
    /// for regression.
    pub loss: f64,
    /// Fraction of rows classified correctly (classification).
    pub accuracy: Option<f64>,
    /// Root mean squared error (regression).
    pub rmse: Option<f64>,
    /// Mean absolute error (regression).
    pub mae: Option<f64>,
    /// Coefficient of determination `1 − SSE/SST` (regression; `None` when the targets are
    /// constant).
    pub r2: Option<f64>,
}

/// [`Scores`] of `model` on `data`, in chunks of [`EVAL_CHUNK_ROWS`] rows ([`Model::infer`]).
pub fn score<M: Model + ?Sized>(model: &M, data: &TensorData) -> Result<Scores> {
    let n = data.len();
    if n == 0 {
        return Err(Error::data("evaluation data", "the evaluation set is empty"));
    }
    let (mut loss, mut correct_total) = (0.0, 0usize);
    let mut preds: Vec<f64> = Vec::new();
    for start in (0..n).step_by(EVAL_CHUNK_ROWS) {
        let idx: Vec<usize> = (start..(start + EVAL_CHUNK_ROWS).min(n)).collect();
        let out = model.infer(&data.rows(&idx)?)?;
        let (l, c) = data.loss(&out, &idx)?;
        loss += to_f64_vec(&l)?[0] * idx.len() as f64;
        match c {
            Some(c) => correct_total += c,
            None => preds.extend(to_f64_vec(&out)?),
        }
    }
    let mut scores = Scores { loss: loss / n as f64, ..Scores::default() };
    match &data.values {
        None => scores.accuracy = Some(correct_total as f64 / n as f64),
        Some(v) => {
            let ys = to_f64_vec(v)?;
            let mean = ys.iter().sum::<f64>() / n as f64;
            let sse: f64 = preds.iter().zip(&ys).map(|(p, y)| (p - y).powi(2)).sum();
            let sst: f64 = ys.iter().map(|y| (y - mean).powi(2)).sum();
            scores.rmse = Some((sse / n as f64).sqrt());
            scores.mae = Some(preds.iter().zip(&ys).map(|(p, y)| (p - y).abs()).sum::<f64>() / n as f64);
            scores.r2 = (sst > 0.0).then(|| 1.0 - sse / sst);
        }
    }
    Ok(scores)
}

//! [`compact()`]: the pruned model as the same architecture at smaller sizes, gates folded into
//! the weights.
//!
//! The gates are multiplied into `ω` ([`dgating_nn::effective_tensors`]), then every coupled
//! slice of every dim that loses entries is cut with `index_select` (block-wise: a head's
//! `head_dim` rows go together), and the architecture is rebuilt at the new sizes from those
//! tensors. No step knows the model type: the [`Structure`](dgating_core::Structure) says which
//! slices go with which dim, the [`Architecture`] rebuilds the model.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use dgating_nn::data::Standardizer;
use dgating_nn::model::INPUTS;
use dgating_nn::{Architecture, Model, Network, effective_tensors};

use crate::error::{Error, Result};
use crate::format::{COMPACT_FORMAT, CompactConfig, InputSpec, KeptDim, Provenance};
use crate::plan::PrunePlan;

/// A compacted model: the architecture at its new sizes, ungated, `f32` on the CPU, with the
/// config that says which original entries it kept.
#[derive(Debug, Clone)]
pub struct Compacted {
    /// Architecture, input section, kept indices and provenance (`config.json`).
    pub config: CompactConfig,
    /// The dense model (no gate factors), run through the same nn forward as the gated one.
    pub model: Network,
}

/// Every tensor of `model` with the gates folded in (`ω ⊙ Πγ`) and every slice that `plan`
/// removes cut out: the weights of the smaller dense model, by key, `f32` on the CPU. Needs
/// only the model's structure and gate sets, so it works for a model of your own; rebuild your
/// model from these tensors at the new sizes ([`PrunePlan::sizes_after`]). [`compact`] does the
/// same and rebuilds a built-in architecture.
pub fn cut_tensors<M: Model + ?Sized>(model: &M, plan: &PrunePlan) -> Result<BTreeMap<String, Tensor>> {
    let structure = model.structure()?;
    let before = structure.sizes();
    if plan.sizes_before() != before {
        return Err(Error::Plan(format!("plan for sizes {:?}, the model has {before:?}", plan.sizes_before())));
    }
    let mut tensors = BTreeMap::new();
    for (key, t) in effective_tensors(model)? {
        tensors.insert(key, t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?);
    }
    for d in structure.dims() {
        let Some(dp) = plan.dim(&d.name).filter(|p| p.prunes()) else { continue };
        let kept = dp.kept();
        for s in &d.slices {
            let ids: Vec<u32> = s.kept_indices(&kept).iter().map(|&i| i as u32).collect();
            let ids = Tensor::from_vec(ids.clone(), ids.len(), &Device::Cpu)?;
            let t = tensors.get_mut(&s.tensor).ok_or_else(|| Error::Plan(format!("no tensor `{}`", s.tensor)))?;
            *t = t.index_select(&ids, s.axis)?.contiguous()?;
        }
    }
    Ok(tensors)
}

/// Folds the gates of `model` and removes what `plan` removes. The result computes the same
/// function as `model` with the removed groups zeroed (see [`crate::verify()`]). Needs a
/// model with a built-in [`Architecture`]; for your own model use [`cut_tensors`].
pub fn compact<M: Model + ?Sized>(model: &M, plan: &PrunePlan) -> Result<Compacted> {
    let tensors = cut_tensors(model, plan)?;
    let before = model.structure()?.sizes();
    let architecture = dgating_nn::architecture_of(model)?.resized(&plan.sizes_after())?;
    let compacted = architecture.from_tensors(&tensors)?;
    let dims =
        plan.dims.iter().map(|d| KeptDim { name: d.dim.clone(), original: d.keep.len(), kept: d.kept() }).collect();
    let config = CompactConfig {
        format: COMPACT_FORMAT.into(),
        architecture,
        input: InputSpec {
            features: before[INPUTS],
            names: None,
            standardizer: None,
            class_names: None,
            target: None,
            task: None,
        },
        dims,
        held_out: None,
        provenance: Provenance {
            depth: model.gate_sets().iter().find_map(|s| s.depth()),
            read_out: plan.read_out,
            groups: plan.groups_removed(),
            ..Provenance::default()
        },
    };
    config.check().map_err(Error::Plan)?;
    Ok(Compacted { config, model: compacted })
}

impl Compacted {
    /// The architecture at the compacted sizes.
    pub fn architecture(&self) -> &Architecture {
        &self.config.architecture
    }

    /// The device the model computes on ([`import`](crate::import()) and [`compact`] build it on
    /// the CPU; [`to_device`](Self::to_device) moves it).
    pub fn device(&self) -> Result<Device> {
        Ok(dgating_nn::device_of(&self.model)?)
    }

    /// The same model on `device` (its tensors copied there).
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        let tensors = self
            .tensors()?
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(device)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(Self { config: self.config.clone(), model: self.config.architecture.from_tensors(&tensors)? })
    }

    /// Sizes of every dim, by name.
    pub fn sizes(&self) -> Result<BTreeMap<String, usize>> {
        Ok(self.config.architecture.structure()?.sizes())
    }

    /// Runs the model on already selected (and standardized) inputs `[batch, kept inputs]`.
    pub fn forward_reduced(&self, x: &Tensor) -> Result<Tensor> {
        check_input(x, self.config.architecture.input_dim(), "forward_reduced")?;
        Ok(self.model.infer(&x.to_dtype(DType::F32)?.contiguous()?)?)
    }

    /// Selects the kept features of standardized full inputs `[batch, input.features]`, then
    /// runs the model (the same inputs the gated model takes).
    pub fn forward_full(&self, x: &Tensor) -> Result<Tensor> {
        check_input(x, self.config.input.features, "forward_full")?;
        let kept = self.config.kept_input_indices();
        if kept.len() == self.config.input.features {
            // All kept (ascending, so in order): no copy of the batch.
            return self.forward_reduced(x);
        }
        let ids = Tensor::from_vec(kept.iter().map(|&i| i as u32).collect::<Vec<_>>(), kept.len(), x.device())?;
        self.forward_reduced(&x.index_select(&ids, 1)?)
    }

    /// Standardizes raw inputs `[batch, input.features]` with the stored training statistics
    /// (if any), then [`forward_full`](Self::forward_full).
    pub fn forward_raw(&self, x: &Tensor) -> Result<Tensor> {
        check_input(x, self.config.input.features, "forward_raw")?;
        let Some(s) = &self.config.input.standardizer else { return self.forward_full(x) };
        self.forward_full(&standardize(s, x)?)
    }

    /// Parameters (every tensor's elements).
    pub fn num_params(&self) -> Result<usize> {
        Ok(self.config.architecture.structure()?.tensors().values().map(|s| s.iter().product::<usize>()).sum())
    }

    /// The model's tensors by key (what `model.safetensors` holds).
    pub fn tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        Ok(effective_tensors(&self.model)?)
    }
}

fn standardize(s: &Standardizer, x: &Tensor) -> Result<Tensor> {
    let mut rows = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    s.apply_rows(&mut rows)?;
    Ok(Tensor::from_vec(rows, x.dims(), x.device())?)
}

fn check_input(x: &Tensor, expected: usize, context: &'static str) -> Result<()> {
    if x.rank() != 2 || x.dims()[1] != expected {
        return Err(Error::Input { context, expected, actual: x.dims().to_vec() });
    }
    Ok(())
}

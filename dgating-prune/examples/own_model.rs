//! D-Gating for a model of your own: a two-branch network written with candle outside the
//! workspace's presets — `y = c(relu(a x)) + s x`, a hidden branch and a linear skip branch —
//! whose input features are one group set shared by both branches (removing a feature cuts a
//! column of `a` *and* of `s`). It is trained with the shared engine, pruned with the default
//! read-out, cut into a smaller dense model, saved, reloaded and checked against the gated
//! model with the removed features zeroed.
//!
//! What you write beyond the forward pass: the [`Structure`] (which tensor slices go with which
//! dimension, 3 `Dim`s), building the layers around one `GateSet`, `params`/`gate_sets`, and
//! rebuilding the model from tensors — about 45 lines here. Run with
//! `cargo run --release -p dgating-prune --example own_model` (CI runs it as a test).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use dgating_core::{Dim, GateConfig, ReadOut, Slice, Structure};
use dgating_nn::train::engine::{TensorData, Trainer, score};
use dgating_nn::train::{DataSpec, Mode, TrainConfig};
use dgating_nn::{GateSet, GateSite, GatedLinear, Model, ParamStore};
use dgating_prune::{PrunePlan, cut_tensors};

/// The user's model.
struct TwoBranch {
    a: GatedLinear,
    c: GatedLinear,
    s: GatedLinear,
    inputs: Option<GateSet>,
}

/// Input features are groups over the columns of `a` and `s`; the hidden width and the outputs
/// have no groups.
fn structure(inp: usize, hid: usize, out: usize) -> dgating_core::Result<Structure> {
    Structure::new(vec![
        Dim::new(
            "inputs",
            inp,
            true,
            vec![Slice::new("a.weight", [hid, inp], 1, true), Slice::new("s.weight", [out, inp], 1, true)],
        ),
        Dim::new(
            "hidden",
            hid,
            false,
            vec![
                Slice::new("a.weight", [hid, inp], 0, false),
                Slice::new("a.bias", [hid], 0, false),
                Slice::new("c.weight", [out, hid], 1, false),
            ],
        ),
        Dim::new(
            "outputs",
            out,
            false,
            vec![
                Slice::new("c.weight", [out, hid], 0, false),
                Slice::new("c.bias", [out], 0, false),
                Slice::new("s.weight", [out, inp], 0, false),
                Slice::new("s.bias", [out], 0, false),
            ],
        ),
    ])
}

impl TwoBranch {
    /// The model from its tensors; `depth = Some(D)` gates the input features (gates 1).
    fn from_tensors(t: &BTreeMap<String, Tensor>, depth: Option<usize>) -> dgating_nn::Result<Self> {
        let (hid, inp) = t["a.weight"].dims2()?;
        let out = t["c.weight"].dims2()?.0;
        let layout = structure(inp, hid, out)?.dim("inputs").and_then(|d| d.group_layout().transpose()).transpose()?;
        let inputs = match (depth, layout) {
            (Some(d), Some(l)) => {
                Some(GateSet::new("inputs", "inputs.gates", l).with_unit_gates(d, DType::F32, &Device::Cpu)?)
            }
            _ => None,
        };
        let layer = |p: &str, site| match (&inputs, site) {
            (Some(g), GateSite::Inputs) => GatedLinear::with_gate_set(
                p,
                t[&format!("{p}.weight")].clone(),
                Some(t[&format!("{p}.bias")].clone()),
                site,
                g.clone(),
            ),
            _ => GatedLinear::from_tensors(
                p,
                t[&format!("{p}.weight")].clone(),
                Some(t[&format!("{p}.bias")].clone()),
                GateSite::None,
                None,
            ),
        };
        Ok(Self {
            a: layer("a", GateSite::Inputs)?,
            c: layer("c", GateSite::None)?,
            s: layer("s", GateSite::Inputs)?,
            inputs,
        })
    }
}

impl Model for TwoBranch {
    fn forward(&self, x: &Tensor) -> dgating_nn::Result<Tensor> {
        Ok((self.c.forward(&self.a.forward_relu(x)?)? + self.s.forward(x)?)?)
    }
    fn params(&self) -> dgating_nn::Result<ParamStore> {
        let mut store = ParamStore::new();
        for l in [&self.a, &self.c, &self.s] {
            l.register(&mut store)?;
        }
        Ok(store)
    }
    fn gate_sets(&self) -> Vec<GateSet> {
        self.inputs.iter().cloned().collect()
    }
    fn structure(&self) -> dgating_nn::Result<Structure> {
        Ok(structure(self.a.in_dim(), self.a.out_dim(), self.c.out_dim())?)
    }
}

fn uniform(rows: usize, cols: usize, seed: u64) -> candle_core::Result<Tensor> {
    let bound = 1.0 / (cols as f32).sqrt();
    let v: Vec<f32> = (0..rows * cols)
        .map(|i| {
            let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(seed).rotate_left(17);
            bound * (2.0 * (h % 10_000) as f32 / 10_000.0 - 1.0)
        })
        .collect();
    Tensor::from_vec(v, (rows, cols), &Device::Cpu)
}

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Wine (13 features, 3 classes), split and standardized as `dgating train` does.
    let data = DataSpec::new("wine", None).load(0)?;
    let (train, test) = (
        TensorData::new(&data.train, DType::F32, &Device::Cpu)?,
        TensorData::new(&data.test, DType::F32, &Device::Cpu)?,
    );
    let (inp, hid, out) = (13, 16, 3);
    let init: BTreeMap<String, Tensor> = [
        ("a.weight", uniform(hid, inp, 1)?),
        ("a.bias", Tensor::zeros(hid, DType::F32, &Device::Cpu)?),
        ("c.weight", uniform(out, hid, 2)?),
        ("c.bias", Tensor::zeros(out, DType::F32, &Device::Cpu)?),
        ("s.weight", uniform(out, inp, 3)?),
        ("s.bias", Tensor::zeros(out, DType::F32, &Device::Cpu)?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let model = TwoBranch::from_tensors(&init, Some(3))?;

    // The shared training engine: D-Gating with D = 3.
    let mut cfg = TrainConfig::new(Mode::Dgating, GateConfig::new(3, 0.2)?);
    (cfg.epochs, cfg.batch_size, cfg.lr) = (100, 16, 0.05);
    let mut trainer = Trainer::new(&model, cfg)?;
    while !trainer.finished() {
        trainer.run_epoch(&train, &test, &mut |_| {})?;
    }
    let gated = score(&model, &test)?;

    // Prune: the default read-out on the input-feature groups, then cut every coupled slice.
    let plan = PrunePlan::with_read_out(&model, &ReadOut::default())?;
    let kept = plan.sizes_after()["inputs"];
    let small = TwoBranch::from_tensors(&cut_tensors(&model, &plan)?, None)?;

    // Save and reload the smaller model (plain safetensors).
    let dir = std::env::temp_dir().join(format!("dgating-own-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("model.safetensors");
    candle_core::safetensors::save(
        &small.params()?.tensors().into_iter().collect::<std::collections::HashMap<_, _>>(),
        &path,
    )?;
    let loaded: BTreeMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)?.into_iter().collect();
    let reloaded = TwoBranch::from_tensors(&loaded, None)?;
    std::fs::remove_dir_all(&dir).ok();

    // The check: the reloaded small model computes the gated model with the removed features
    // zeroed (its inputs are the kept columns).
    let keep = &plan.dim("inputs").ok_or("no input plan")?.keep;
    model.gate_sets()[0].drop_groups(&model.params()?, keep)?;
    let x = Tensor::from_slice(&data.test.features, (data.test.len(), inp), &Device::Cpu)?;
    let cols: Vec<u32> = keep.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i as u32).collect();
    let x_small = x.index_select(&Tensor::new(cols.as_slice(), &Device::Cpu)?, 1)?;
    let diff = (model.forward(&x)? - reloaded.forward(&x_small)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
    println!(
        "two-branch model: kept {kept} of {inp} input features (in both branches); held-out accuracy {:.2}% gated; \
         reloaded small model vs masked gated model: max abs diff {diff:.2e}",
        100.0 * gated.accuracy.unwrap_or(0.0)
    );
    if diff > 1e-5 || kept >= inp || kept == 0 {
        return Err(format!("check failed: kept {kept}, diff {diff}").into());
    }
    Ok(())
}

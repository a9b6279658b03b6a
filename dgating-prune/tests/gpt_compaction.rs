//! A GPT pruned through the generic path (plan per dim → `cut_tensors` → architecture rebuilt
//! at the new sizes): blocks end with different head counts and MLP widths, one block with no
//! heads at all; the compacted logits equal the masked gated logits, greedy generation gives
//! the same tokens, and the export reloads to the same function.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use dgating_core::ReadOut;
use dgating_nn::lm::{Sampling, generate};
use dgating_nn::model::{Gpt, GptConfig, HeadGroup};
use dgating_nn::{Architecture, GateInit, Model};
use dgating_prune::{PrunePlan, compact, export, import};

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

#[test]
fn compacted_gpt_equals_the_masked_gated_gpt() {
    compacted_equals_masked_gated(HeadGroup::Whole);
}

/// Heads gated on their output only: a removed head's q and k rows are not zero (they carry no
/// gate), yet the head writes nothing, so cutting them changes nothing either.
#[test]
fn compacted_gpt_with_output_gated_heads_equals_the_masked_gated_gpt() {
    compacted_equals_masked_gated(HeadGroup::Output);
}

fn compacted_equals_masked_gated(head_group: HeadGroup) {
    let config = GptConfig { head_group, ..GptConfig::nano(11, 8, 2, 4, 16).unwrap() };
    let model = Gpt::new(config, Some(3), GateInit::Balanced, 5, DType::F32, &Device::Cpu).unwrap();
    let masks = BTreeMap::from([
        ("blocks.0.heads".to_string(), vec![true, false, true, false]),
        ("blocks.1.heads".to_string(), vec![false; 4]),
        ("blocks.0.mlp".to_string(), (0..64).map(|i| i % 3 != 0).collect()),
    ]);
    // The masked gated model: the removed groups' gates set to 0.
    let store = model.params().unwrap();
    for set in model.gate_sets() {
        if let Some(m) = masks.get(set.dim()) {
            set.drop_groups(&store, m).unwrap();
        }
    }
    // The read-out finds exactly the zeroed groups; the plan from the masks is the same.
    let plan = PrunePlan::with_read_out(&model, &ReadOut::default()).unwrap();
    assert_eq!(plan.keep_masks(), PrunePlan::from_masks(&model, masks.clone()).unwrap().keep_masks());
    let small = compact(&model, &plan).unwrap();
    let Architecture::Gpt(c) = small.architecture() else { panic!("not a GPT") };
    assert_eq!((c.heads.clone(), c.mlp.clone(), c.head_size, c.head_group), (vec![2, 0], vec![42, 64], 4, head_group));
    if head_group == HeadGroup::Output {
        // The removed heads' queries are still there in the gated model: only the output path is zero.
        let q = values(&model.effective().unwrap()["blocks.0.attn.q.weight"]);
        assert!(q[4 * 16..8 * 16].iter().any(|&v| v != 0.0), "head 1's q rows should be untouched");
    }

    let ids = Tensor::from_vec((0..16u32).map(|i| i * 7 % 11).collect::<Vec<_>>(), (2, 8), &Device::Cpu).unwrap();
    let gated = values(&model.forward(&ids).unwrap());
    let compacted = values(&small.model.forward(&ids).unwrap());
    assert!(max_rel(&compacted, &gated) <= 1e-4, "{}", max_rel(&compacted, &gated));

    let Architecture::Gpt(full) = model.architecture().unwrap() else { panic!() };
    let w_gated: BTreeMap<String, Tensor> =
        model.effective().unwrap().into_iter().map(|(k, t)| (k, t.detach())).collect();
    let w_small = small.tensors().unwrap();
    let greedy = Sampling::greedy();
    let a = generate(&full, &w_gated, &[3, 1, 4], 12, &greedy).unwrap();
    let b = generate(c, &w_small, &[3, 1, 4], 12, &greedy).unwrap();
    assert_eq!(a, b);

    // Export (zero-length head tensors included) and reload.
    let dir = tempfile::tempdir().unwrap();
    export(&small, dir.path()).unwrap();
    let back = import(dir.path()).unwrap();
    assert_eq!(back.architecture(), small.architecture());
    assert_eq!(values(&back.model.forward(&ids).unwrap()), compacted);
    assert!(
        small.num_params().unwrap()
            < compact(&model, &PrunePlan::keep_all(&model).unwrap()).unwrap().num_params().unwrap()
    );
}

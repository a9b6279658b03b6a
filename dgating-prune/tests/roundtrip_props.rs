//! Property: for random architectures of both kinds (an MLP with input or hidden groups; a
//! residual MLP whose stream channels are one gate set over several layers) and random
//! keep-masks per gate set (none pruned, random, one group left), the compacted model equals
//! the masked gated model, and survives export/import bit for bit — through the generic path,
//! with no per-model code in dgating-prune.

mod common;

use std::collections::BTreeMap;

use common::{bits, inputs};
use dgating_core::Threshold;
use dgating_nn::layers::GateInit;
use dgating_nn::{Architecture, MlpConfig, Model, ResidualMlpConfig};
use dgating_prune::{PrunePlan, compact, export, import, verify};
use proptest::prelude::*;

/// `mode` 0: keep all; 1: random with >= 1 kept; 2: exactly one kept.
fn mask(n: usize, mode: u8, seed: u64) -> Vec<bool> {
    let mut s = seed | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    match mode {
        0 => vec![true; n],
        2 => {
            let k = (next() % n as u64) as usize;
            (0..n).map(|i| i == k).collect()
        }
        _ => {
            let mut m: Vec<bool> = (0..n).map(|_| next() % 2 == 0).collect();
            if !m.iter().any(|&k| k) {
                m[(next() % n as u64) as usize] = true;
            }
            m
        }
    }
}

fn architecture() -> impl Strategy<Value = Architecture> {
    let mlp = (1usize..8, proptest::collection::vec(1usize..9, 0..3), 1usize..4, any::<bool>()).prop_map(
        |(input, hidden, output, group_inputs)| {
            let group_inputs = group_inputs || hidden.is_empty();
            Architecture::Mlp(MlpConfig {
                input_dim: input,
                hidden,
                output_dim: output,
                group_inputs,
                group_hidden: !group_inputs,
            })
        },
    );
    let residual = (1usize..6, 1usize..9, proptest::collection::vec(1usize..7, 0..3), 1usize..4, any::<bool>())
        .prop_map(|(input, width, blocks, output, group_hidden)| {
            Architecture::ResidualMlp(ResidualMlpConfig {
                input_dim: input,
                width,
                blocks,
                output_dim: output,
                group_stream: true,
                group_hidden,
            })
        });
    prop_oneof![mlp, residual]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn compacted_equals_masked_and_round_trips(
        arch in architecture(),
        depth in 2usize..5,
        modes in proptest::collection::vec(0u8..3, 4),
        seed in any::<u64>(),
    ) {
        let model = arch.build(Some(depth), GateInit::Balanced, seed, candle_core::DType::F32,
            &candle_core::Device::Cpu).unwrap();
        let store = model.params().unwrap();
        let mut expected: BTreeMap<String, usize> = model.structure().unwrap().sizes();
        for (i, set) in model.gate_sets().iter().enumerate() {
            let m = mask(set.num_groups(), modes[i % 4], seed.wrapping_add(i as u64));
            set.drop_groups(&store, &m).unwrap();
            expected.insert(set.dim().to_string(), m.iter().filter(|&&k| k).count());
        }
        let plan = PrunePlan::new(&model, &Threshold::absolute(0.0).unwrap()).unwrap();
        prop_assert_eq!(plan.sizes_after(), expected.clone());
        let c = compact(&model, &plan).unwrap();
        prop_assert_eq!(c.sizes().unwrap(), expected);
        let x = inputs(16, arch.input_dim(), seed);
        let v = verify(&model, &c, &x).unwrap();
        prop_assert!(v.max_rel <= 1e-5, "{:?}", v);

        let dir = tempfile::tempdir().unwrap();
        export(&c, dir.path()).unwrap();
        let back = import(dir.path()).unwrap();
        prop_assert_eq!(&back.config, &c.config);
        let (a, b) = (c.tensors().unwrap(), back.tensors().unwrap());
        prop_assert_eq!(a.len(), b.len());
        for (k, t) in &a {
            prop_assert_eq!(bits(t), bits(&b[k]));
        }
        prop_assert_eq!(bits(&back.forward_full(&x).unwrap()), bits(&c.forward_full(&x).unwrap()));
    }
}
